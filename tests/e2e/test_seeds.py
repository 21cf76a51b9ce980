"""The two seed requests, sent byte for byte as `curl -u id:token -d '<json>' URL` sends them.

curl -d labels the JSON body `application/x-www-form-urlencoded`; Bridgeline must read it as JSON.
"""

from __future__ import annotations

import httpx
from e2ekit import AUTH_ID, AUTH_TOKEN, Api, Phlo, number

TRIGGER_SOURCE = "+14152223333"
TO = "+14152225555"

CALL_SEED = """{
"action": "call",
"to": "+14152225555",
"role": "agent",
"trigger_source": "+14152223333"
}"""

WARM_TRANSFER_SEED = """{
"action": "warm_transfer",
"to": "+14152225555",
"role": "agent",
"trigger_source": "+14152223333"
}"""


def curl_post(phlo: Phlo, body: str) -> httpx.Response:
    """What `curl -X POST -u id:token -d body URL` puts on the wire."""
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        return client.post(
            f"{phlo.api.url}{phlo.node_path}",
            content=body.encode(),
            auth=(AUTH_ID, AUTH_TOKEN),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "*/*",
                "User-Agent": "curl/8.5.0",
            },
        )


def assert_seed_answer(response: httpx.Response) -> None:
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"api_id", "error"}
    assert body["error"] == ""
    assert isinstance(body["api_id"], str) and body["api_id"]


def test_call_seed_adds_an_agent(api: Api) -> None:
    phlo = api.create_phlo()
    customer = number()
    run = phlo.connect(TRIGGER_SOURCE, customer)

    assert_seed_answer(curl_post(phlo, CALL_SEED))

    added = phlo.wait_member(TO, status="connected", hears=[TRIGGER_SOURCE, customer])
    assert added["role"] == "agent"
    assert added["room"] == "main"
    assert added["mpc_uuid"] == phlo.conference()["mpc_uuid"]
    phlo.wait_member(TRIGGER_SOURCE, hears=[customer, TO], music=None)
    phlo.wait_member(customer, hears=[TRIGGER_SOURCE, TO], music=None)
    assert phlo.conference()["phlo_run_id"] == run["phlo_run_id"]
    for address in (TRIGGER_SOURCE, customer, TO):
        assert phlo.member_action(address, "hangup").status_code == 201


def test_warm_transfer_seed_starts_a_private_consultation(api: Api) -> None:
    phlo = api.create_phlo(customer_hold_music="tone:523")
    customer = number()
    phlo.connect(TRIGGER_SOURCE, customer)

    assert_seed_answer(curl_post(phlo, WARM_TRANSFER_SEED))

    target = phlo.wait_member(TO, status="connected", hears=[TRIGGER_SOURCE], music=None)
    assert target["role"] == "agent"
    initiator = phlo.wait_member(TRIGGER_SOURCE, hears=[TO], music=None)
    assert initiator["room"] == target["room"] != "main"
    assert initiator["transfer"]["transfer_state"] == "consulting"
    assert initiator["transfer"]["target"] == TO
    waiting = phlo.wait_member(customer, status="connected", hears=[], music="customer_hold")
    assert waiting["room"] == "main"
    for address in (TRIGGER_SOURCE, customer, TO):
        assert phlo.member_action(address, "hangup").status_code == 201
