"""Every error path answers in Plivo's shape, and the SDK raises the exception it maps it to.

Refused actions (400) must leave the conference exactly as it was: the node's instances view is
compared before and after. The lenient parts of the API (trailing slashes, bodies as curl and
the SDKs send them, SIP URIs in paths, unknown query params) are checked here too, and a
fuzz-ish loop makes sure nothing answers 5xx.
"""

from __future__ import annotations

import base64
import json
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, get_args

import httpx
import plivo
import pytest
from e2ekit import (
    AUTH_ID,
    AUTH_TOKEN,
    Api,
    Phlo,
    ServerProcess,
    add_account,
    assert_action_ok,
    assert_plivo_error,
    guarded_client,
    iter_routes,
    number,
    sdk_client,
    sdk_mpc,
    wait_until,
)
from openapi_spec_validator import validate

from bridgeline.adapters.http.schemas import MemberAction


@dataclass
class Live:
    """A PHLO whose node has one live conference: agent and customer connected."""

    api: Api
    phlo: Phlo
    agent: str
    customer: str
    mpc_uuid: str
    extra: dict[str, str] = field(default_factory=dict)  # addresses a refusal's setup brought in

    @property
    def http(self) -> httpx.Client:
        return self.api.http


@pytest.fixture
def live(api: Api) -> Live:
    phlo = api.create_phlo(customer_hold_music="tone:523")
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    return Live(api, phlo, agent, customer, phlo.conference()["mpc_uuid"])


# =========================================================================== 400: refused, nothing changes
@dataclass(frozen=True)
class Refusal:
    id: str
    request: Callable[[Live], httpx.Response]
    message: str  # a regular expression the error text must match
    setup: Callable[[Live], None] | None = None
    sdk: Callable[[Live, Any], Any] | None = None  # the same request through the SDK


def _pending_warm_transfer(lv: Live) -> None:
    target = number()
    lv.api.phone(target, "no_answer")
    assert_action_ok(lv.phlo.action(action="warm_transfer", to=target, trigger_source=lv.agent))
    lv.phlo.wait_member(target, status="dialing", ringing=True)


def _pending_cold_transfer(lv: Live) -> None:
    target = number()
    lv.api.phone(target, "no_answer")
    assert_action_ok(lv.phlo.action(action="cold_transfer", to=target, trigger_source=lv.agent))
    lv.phlo.wait_member(target, status="dialing", ringing=True)


def _hold_customer(lv: Live) -> None:
    assert_action_ok(lv.phlo.member_action(lv.customer, "hold"))
    lv.phlo.wait_member(lv.customer, status="on_hold")


def _mute_customer(lv: Live) -> None:
    assert_action_ok(lv.phlo.member_action(lv.customer, "mute"))
    lv.phlo.wait_member(lv.customer, mute=True)


def _second_conference(lv: Live) -> None:
    other_agent, other_customer = number(), number()
    lv.phlo.connect(other_agent, other_customer)
    lv.extra["other"] = other_customer


def _ringing_member(lv: Live) -> None:
    ringing = number()
    lv.api.phone(ringing, "no_answer")
    assert_action_ok(lv.phlo.action(action="call", to=ringing, trigger_source=lv.agent))
    lv.phlo.wait_member(ringing, status="dialing", ringing=True)
    lv.extra["ringing"] = ringing


REFUSALS = [
    Refusal(
        "missing action",
        lambda lv: lv.phlo.action(to=number(), trigger_source=lv.agent),
        r"^action is a mandatory param\.$",
    ),
    Refusal(
        "empty action",
        lambda lv: lv.phlo.action(action="", to=number(), trigger_source=lv.agent),
        r"^action is a mandatory param\.$",
    ),
    Refusal(
        "missing to",
        lambda lv: lv.phlo.action(action="call", trigger_source=lv.agent),
        r"^to is a mandatory param\.$",
    ),
    Refusal(
        "missing trigger_source",
        lambda lv: lv.phlo.action(action="call", to=number()),
        r"^trigger_source is a mandatory param\.$",
    ),
    Refusal(
        "invalid action",
        lambda lv: lv.phlo.action(action="dance", to=number(), trigger_source=lv.agent),
        r"^Invalid value provided for action\.",
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).update("dance", lv.agent, number(), "agent"),
    ),
    Refusal(
        "member action on the node",
        lambda lv: lv.phlo.action(action="hold", to=number(), trigger_source=lv.agent),
        r"^Invalid value provided for action\..*acts on one member: POST it to …/members/\{member_address\}",
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).update("hold", lv.agent, None, None),
    ),
    Refusal(
        "node action on a member without to",
        lambda lv: lv.phlo.member_action(lv.customer, "call"),
        r"^to is a mandatory param\.$",
    ),
    Refusal(
        "resume_call on the node without trigger_source",
        lambda lv: lv.phlo.action(action="resume_call"),
        r"^trigger_source is a mandatory param\.$",
    ),
    Refusal(
        "resume_call on the node with a to",
        lambda lv: lv.phlo.action(action="resume_call", to=number(), trigger_source=lv.agent),
        r"^Invalid value provided for to\. resume_call dials nobody",
        setup=_pending_warm_transfer,
    ),
    Refusal(
        "warm_transfer on a member with another trigger_source",
        lambda lv: lv.http.post(
            lv.phlo.member_path(lv.agent),
            json={"action": "warm_transfer", "to": number(), "trigger_source": lv.customer},
        ),
        r"^Invalid value provided for trigger_source\..*not the member in the path",
    ),
    Refusal(
        "a member action with a to",
        lambda lv: lv.http.post(lv.phlo.member_path(lv.customer), json={"action": "mute", "to": number()}),
        r"^Invalid value provided for to\. mute dials nobody",
    ),
    Refusal(
        "an MPC-only action on the legacy conference_bridge URI",
        lambda lv: lv.http.post(
            f"/v1/phlo/{lv.phlo.phlo_id}/conference_bridge/{lv.phlo.node_id}/members/{lv.customer}/",
            json={"action": "hold"},
        ),
        r"^Invalid value provided for action\. conference_bridge takes hangup, mute, unmute; hold is a "
        r"multi_party_call action: POST it to /v1/phlo/.*/multi_party_call/",
        sdk=lambda lv, sdk: sdk.phlo.member(lv.phlo.phlo_id, lv.phlo.node_id, lv.customer, "hold"),
    ),
    Refusal(
        "action that is not a string",
        lambda lv: lv.phlo.action(action=["call"], to=number(), trigger_source=lv.agent),
        r"^Invalid value provided for action\.",
    ),
    Refusal(
        "invalid role",
        lambda lv: lv.phlo.action(action="call", to=number(), role="supervisor", trigger_source=lv.agent),
        r"^Invalid value provided for role\.",
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).call(lv.agent, number(), "supervisor"),
    ),
    Refusal(
        "mute a muted member",
        lambda lv: lv.phlo.member_action(lv.customer, "mute"),
        r"already muted",
        setup=_mute_customer,
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).member(lv.customer).mute(),
    ),
    Refusal(
        "unmute a member that is not muted",
        lambda lv: lv.phlo.member_action(lv.customer, "unmute"),
        r"is not muted",
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).member(lv.customer).unmute(),
    ),
    Refusal(
        "mute a member still ringing",
        lambda lv: lv.phlo.member_action(lv.extra["ringing"], "mute"),
        r"has not answered yet",
        setup=_ringing_member,
    ),
    Refusal(
        "hold a held member",
        lambda lv: lv.phlo.member_action(lv.customer, "hold"),
        r"already on hold",
        setup=_hold_customer,
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).member(lv.customer).hold(),
    ),
    Refusal(
        "unhold a connected member",
        lambda lv: lv.phlo.member_action(lv.customer, "unhold"),
        r"not on hold",
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).member(lv.customer).unhold(),
    ),
    Refusal(
        "abort with no transfer",
        lambda lv: lv.phlo.member_action(lv.agent, "abort_transfer"),
        r"no transfer in progress",
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).member(lv.agent).abort_transfer(),
    ),
    Refusal(
        "second warm transfer while one is pending",
        lambda lv: lv.phlo.action(action="warm_transfer", to=number(), trigger_source=lv.agent),
        r"already has a transfer in progress|private consultation",
        setup=_pending_warm_transfer,
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).warm_transfer(lv.agent, number()),
    ),
    Refusal(
        "cold transfer while a cold transfer is pending",
        lambda lv: lv.phlo.action(action="cold_transfer", to=number(), trigger_source=lv.agent),
        r"already has a transfer in progress",
        setup=_pending_cold_transfer,
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).cold_transfer(lv.agent, number()),
    ),
    Refusal(
        "resume_call without a warm transfer",
        lambda lv: lv.phlo.member_action(lv.agent, "resume_call"),
        r"no warm transfer in progress",
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).member(lv.agent).resume_call(),
    ),
    Refusal(
        "resume_call during a cold transfer",
        lambda lv: lv.phlo.member_action(lv.agent, "resume_call"),
        r"warm transfer",
        setup=_pending_cold_transfer,
    ),
    Refusal(
        "voicemail_drop without a voicemail_message",
        lambda lv: lv.phlo.member_action(lv.customer, "voicemail_drop"),
        r"voicemail_message",
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).member(lv.customer).voicemail_drop(),
    ),
    Refusal(
        "trigger_source not in a live conference",
        lambda lv: lv.phlo.action(action="call", to=number(), trigger_source=number()),
        r"trigger_source .* not in a live conference",
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).call(number(), number(), "agent"),
    ),
    Refusal(
        "trigger_source still ringing",
        lambda lv: lv.phlo.action(action="call", to=number(), trigger_source=lv.extra["ringing"]),
        r"has not answered yet",
        setup=_ringing_member,
    ),
    Refusal(
        "hold a member still ringing",
        lambda lv: lv.phlo.member_action(lv.extra["ringing"], "hold"),
        r"has not answered yet",
        setup=_ringing_member,
    ),
    Refusal(
        "warm transfer by a member on hold",
        lambda lv: lv.phlo.action(action="warm_transfer", to=number(), trigger_source=lv.customer),
        r"must be connected",
        setup=_hold_customer,
    ),
    Refusal(
        "to already in this conference",
        lambda lv: lv.phlo.action(action="call", to=lv.customer, trigger_source=lv.agent),
        r"already a member",
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).cold_transfer(lv.agent, lv.customer),
    ),
    Refusal(
        "to is the trigger_source",
        lambda lv: lv.phlo.action(action="warm_transfer", to=lv.agent, trigger_source=lv.agent),
        r"already a member",
    ),
    Refusal(
        "to in another live conference of the node",
        lambda lv: lv.phlo.action(action="call", to=lv.extra["other"], trigger_source=lv.agent),
        r"already in another live conference",
        setup=_second_conference,
    ),
    Refusal(
        "invalid to",
        lambda lv: lv.phlo.action(action="call", to="call me maybe", trigger_source=lv.agent),
        r"^Invalid value provided for to\.",
        sdk=lambda lv, sdk: sdk_mpc(sdk, lv.phlo).call(lv.agent, "call me maybe", "agent"),
    ),
    Refusal(
        "invalid trigger_source",
        lambda lv: lv.phlo.action(action="call", to=number(), trigger_source="+0000"),
        r"^Invalid value provided for trigger_source\.",
    ),
    Refusal(
        "to too long",
        lambda lv: lv.phlo.action(
            action="call", to="sip:" + "a" * 300 + "@example.com", trigger_source=lv.agent
        ),
        r"^Invalid value provided for to\.",
    ),
    Refusal(
        "invalid member address in the path",
        lambda lv: lv.http.post(lv.phlo.member_path("not a phone"), json={"action": "hold"}),
        r"^Invalid value provided for member_address\.",
    ),
    Refusal(
        "invalid JSON body",
        lambda lv: lv.http.post(
            lv.phlo.node_path,
            content=b'{"action": "call", "to": ',
            headers={"Content-Type": "application/json"},
        ),
        r"not valid JSON",
    ),
    Refusal(
        "JSON array body",
        lambda lv: lv.phlo.action([{"action": "call", "to": number(), "trigger_source": lv.agent}]),
        r"JSON object",
    ),
    Refusal(
        "JSON number body",
        lambda lv: lv.http.post(
            lv.phlo.node_path, content=b"42", headers={"Content-Type": "application/json"}
        ),
        r"JSON object",
    ),
    Refusal(
        "body that is not UTF-8",
        lambda lv: lv.http.post(lv.phlo.node_path, content=b"\xff\xfe\x00action=call"),
        r"UTF-8",
    ),
    Refusal(
        "run payload missing a template key",
        lambda lv: lv.phlo.post_run({"agent": number()}),
        r"customer",
    ),
    Refusal(
        "run payload with an invalid address",
        lambda lv: lv.phlo.post_run({"agent": number(), "customer": "nobody home"}),
        r"nobody home",
    ),
    Refusal(
        "run payload value that is an object",
        lambda lv: lv.phlo.post_run({"agent": {"number": number()}, "customer": number()}),
        r"agent",
    ),
    Refusal(
        "run dialing an address that is in a live conference of the node",
        lambda lv: lv.phlo.post_run({"agent": number(), "customer": lv.customer}),
        r"already in a live conference",
    ),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c.id for c in REFUSALS])
def test_refused_request_changes_nothing(live: Live, sdk: Any, case: Refusal) -> None:
    if case.setup is not None:
        case.setup(live)
    before = live.phlo.instances()

    body = assert_plivo_error(case.request(live), 400)
    assert re.search(case.message, body["error"]), body["error"]
    assert live.phlo.instances() == before

    if case.sdk is not None:
        with pytest.raises(plivo.exceptions.ValidationError) as raised:
            case.sdk(live, sdk)
        assert str(raised.value)
        assert live.phlo.instances() == before


def test_refusals_leave_the_phones_alone(live: Live) -> None:
    """A refused dial never reaches a phone."""
    target = number()
    assert_plivo_error(
        live.phlo.action(action="call", to=target, role="boss", trigger_source=live.agent), 400
    )
    assert_plivo_error(live.phlo.action(action="call", to=target, trigger_source=number()), 400)
    assert live.api.phone_calls(target) == []


def test_body_too_large(live: Live) -> None:
    before = live.phlo.instances()
    big = {"action": "call", "to": number(), "trigger_source": live.agent, "pad": "x" * 1_100_000}
    assert_plivo_error(live.phlo.action(big), 413)
    assert live.phlo.instances() == before


def test_phlo_definition_errors(api: Api) -> None:
    bad = [
        {},
        {"name": "x"},
        {"name": "x", "nodes": []},
        {"name": "x", "nodes": [{"type": "conference_bridge"}]},
        {"name": "x", "nodes": [{"ring_timeout": 0}]},
        {"name": "x", "nodes": [{"max_participants": 1}]},
        {"name": "x", "nodes": [{"max_duration": 5}]},
        {"name": "x", "nodes": [{"surprise": True}]},
        {"name": "x", "nodes": [{}], "run": {"dial": []}},
        {"name": "x", "nodes": [{}], "run": {"dial": [{"to": "not an address"}]}},
        {"name": "x", "nodes": [{}], "run": {"node": "nope", "dial": [{"to": "+14155550100"}]}},
        {"name": "x", "nodes": [{"name": "a"}, {"name": "a"}]},
    ]
    for definition in bad:
        assert_plivo_error(api.http.post("/v1/phlo", json=definition), 400)
    phlo = api.create_phlo()
    duplicate = {"name": "again", "phlo_id": phlo.phlo_id, "nodes": [{}]}
    assert_plivo_error(api.http.post("/v1/phlo", json=duplicate), 409)


def test_delete_phlo(api: Api) -> None:
    phlo = api.create_phlo()
    phlo.connect(number(), number())
    # a PHLO with a live conference cannot be deleted
    assert_plivo_error(api.http.delete(f"/v1/phlo/{phlo.phlo_id}"), 400)
    for member in phlo.conference()["members"]:
        assert_action_ok(phlo.member_action(member["member_address"], "hangup"))
    wait_until(lambda: phlo.instances()[0]["status"] == "ended", what="conference end")
    deleted = api.http.delete(f"/v1/phlo/{phlo.phlo_id}")
    assert deleted.status_code == 200, deleted.text
    assert_plivo_error(api.http.get(f"/v1/phlo/{phlo.phlo_id}"), 404)
    assert_plivo_error(api.http.delete(f"/v1/phlo/{phlo.phlo_id}"), 404)
    # The id may be reused for another definition: nothing of the deleted PHLO is served any more.
    again = {"name": "again", "phlo_id": phlo.phlo_id, "nodes": [{"name": "Other node", "node_id": "n2"}]}
    assert api.http.post("/v1/phlo", json=again).status_code == 201
    assert_plivo_error(api.http.get(f"/v1/phlo/{phlo.phlo_id}/multi_party_call/{phlo.node_id}"), 404)
    node = api.http.get(f"/v1/phlo/{phlo.phlo_id}/multi_party_call/n2")
    assert node.status_code == 200 and node.json()["name"] == "Other node", node.text


def test_virtual_phone_refusals(api: Api) -> None:
    phone = number()
    for body in (
        {"answer": "maybe"},
        {"answer": 3},
        {"answer_delay_ms": -1},
        {"answer_delay_ms": 600_001},
        {"answer_delay_ms": True},
        {"answer_delay_ms": "10"},
    ):
        assert_plivo_error(api.http.put(f"/v1/sim/phones/{phone}", json=body), 400)
    assert_plivo_error(api.http.get(f"/v1/sim/phones/{phone}"), 404)  # the refusals configured nothing
    assert_plivo_error(api.http.get("/v1/sim/phones/not a phone"), 400)
    assert_plivo_error(api.http.put("/v1/sim/phones/not a phone", json={}), 400)
    assert api.http.put(f"/v1/sim/phones/{phone}", json={}).json()["answer"] == "answer"
    assert api.http.put(f"/v1/sim/phones/{phone}", data={"answer": "busy"}).json()["answer"] == "busy"


# =========================================================================== 401
def test_missing_auth(api: Api) -> None:
    with guarded_client(api.url, auth=None) as anonymous:
        for method, path in iter_routes(api.create_phlo(), number()):
            if path in ("/health", "/openapi.json"):
                continue
            response = anonymous.request(method, path, json={})
            assert_plivo_error(response, 401)
            assert response.headers["www-authenticate"].lower().startswith("basic")


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no colon at all").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic",
        "Bearer " + AUTH_TOKEN,
        "Digest username=" + AUTH_ID,
        "Basic " + base64.b64encode(f"{AUTH_ID}:wrong".encode()).decode(),
        "Basic " + base64.b64encode(f"{AUTH_ID}:".encode()).decode(),
        "Basic " + base64.b64encode(f"{AUTH_ID.lower()}:{AUTH_TOKEN}".encode()).decode(),
        "Basic " + base64.b64encode(f"user:{AUTH_TOKEN}".encode()).decode(),
        "Basic " + base64.b64encode(f"XA{AUTH_ID[2:]}:{AUTH_TOKEN}".encode()).decode(),
        "Basic " + base64.b64encode(f"{AUTH_ID}X:{AUTH_TOKEN}".encode()).decode(),
        "Basic " + base64.b64encode(f"MA{'0' * 18}:{AUTH_TOKEN}".encode()).decode(),
    ],
)
def test_bad_credentials(api: Api, authorization: str) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        response = client.get("/v1/phlo", headers={"Authorization": authorization})
        assert_plivo_error(response, 401)
        response = client.post(
            f"/v1/account/{AUTH_ID}/phlo/anything", headers={"Authorization": authorization}, json={}
        )
        assert_plivo_error(response, 401)


def test_wrong_token_through_the_sdk(api: Api) -> None:
    phlo = api.create_phlo(with_run=False)
    client = sdk_client(api.url, auth_token="not-the-token")
    with pytest.raises(plivo.exceptions.AuthenticationError, match="Authentication failed"):
        client.phlo.get(phlo.phlo_id)
    with pytest.raises(plivo.exceptions.AuthenticationError):
        client.phlo.multi_party_call(
            phlo.phlo_id, phlo.node_id, "call", trigger_source="+14155550100", to="+14155550101", role="agent"
        )


# =========================================================================== 404
def test_unknown_phlo_node_member_and_run(live: Live, sdk: Any) -> None:
    phlo = live.phlo
    with pytest.raises(plivo.exceptions.ResourceNotFoundError):
        sdk.phlo.get("no-such-phlo")
    assert_plivo_error(live.http.get("/v1/phlo/no-such-phlo"), 404)
    assert_plivo_error(live.http.post(f"/v1/account/{AUTH_ID}/phlo/no-such-phlo", json={}), 404)

    sdk_phlo = sdk.phlo.get(phlo.phlo_id)
    with pytest.raises(plivo.exceptions.ResourceNotFoundError):
        sdk_phlo.multi_party_call("no-such-node")
    assert_plivo_error(live.http.post(f"/v1/phlo/{phlo.phlo_id}/multi_party_call/no-such-node", json={}), 404)

    # the legacy conference bridge node type, which Python's interface helper still defaults to: only
    # its member URI is served (for MPC nodes, test_mute.py); the node itself is no conference bridge
    with pytest.raises(plivo.exceptions.ResourceNotFoundError):
        sdk_phlo.node("conference_bridge", phlo.node_id)
    bridge = f"/v1/phlo/{phlo.phlo_id}/conference_bridge/{phlo.node_id}"
    assert_plivo_error(live.http.post(bridge, json={"action": "call"}), 404)
    with pytest.raises(plivo.exceptions.ResourceNotFoundError):
        sdk.phlo.member(phlo.phlo_id, phlo.node_id, number(), "mute")
    assert_plivo_error(live.http.post(f"{bridge}/members/{number()}", json={"action": "hangup"}), 404)

    before = phlo.instances()
    mpc = sdk_phlo.multi_party_call(phlo.node_id)
    stranger = number()
    for action in get_args(MemberAction):  # every member action the SDK's Member has
        with pytest.raises(plivo.exceptions.ResourceNotFoundError):
            getattr(mpc.member(stranger), action)()
        assert_plivo_error(phlo.member_action(stranger, action), 404)
    assert_plivo_error(live.http.get(phlo.member_path(stranger)), 404)
    assert phlo.instances() == before

    assert_plivo_error(live.http.get(f"/v1/phlo/{phlo.phlo_id}/runs/no-such-run"), 404)
    # a run is found only under its own PHLO
    run_id = before[0]["phlo_run_id"]
    assert live.http.get(f"/v1/phlo/{phlo.phlo_id}/runs/{run_id}").status_code == 200
    other = live.api.create_phlo(with_run=False)
    assert_plivo_error(live.http.get(f"/v1/phlo/{other.phlo_id}/runs/{run_id}"), 404)
    assert_plivo_error(live.http.get("/v1/no/such/route"), 404)
    assert_plivo_error(live.http.get("/"), 404)
    assert_plivo_error(live.http.get(f"{phlo.node_path}/members"), 404)


def test_mismatched_auth_id_in_the_run_path(live: Live) -> None:
    other = "MA" + "Z" * 18
    response = live.http.post(f"/v1/account/{other}/phlo/{live.phlo.phlo_id}", json={})
    assert_plivo_error(response, 404)
    response = live.http.post(f"/v1/account/not-an-auth-id/phlo/{live.phlo.phlo_id}", json={})
    assert_plivo_error(response, 404)


def test_another_accounts_phlo_is_not_found(server: ServerProcess, live: Live) -> None:
    other_id, other_token = add_account(server)
    phlo = live.phlo
    before = phlo.instances()
    with guarded_client(server.url, auth=(other_id, other_token)) as other:
        assert other.get("/v1/phlo").status_code == 200
        assert phlo.phlo_id not in {p["phlo_id"] for p in other.get("/v1/phlo").json()["objects"]}
        requests = [
            ("GET", f"/v1/phlo/{phlo.phlo_id}", None),
            ("DELETE", f"/v1/phlo/{phlo.phlo_id}", None),
            (
                "POST",
                f"/v1/account/{other_id}/phlo/{phlo.phlo_id}",
                {"agent": number(), "customer": number()},
            ),
            ("POST", f"/v1/account/{AUTH_ID}/phlo/{phlo.phlo_id}", {"agent": number(), "customer": number()}),
            ("GET", phlo.node_path, None),
            ("POST", phlo.node_path, {"action": "call", "to": number(), "trigger_source": live.agent}),
            ("GET", f"{phlo.node_path}/instances", None),
            ("GET", phlo.member_path(live.customer), None),
            ("POST", phlo.member_path(live.customer), {"action": "hangup"}),
            ("GET", f"/v1/phlo/{phlo.phlo_id}/runs/{before[0]['phlo_run_id']}", None),
        ]
        for method, path, body in requests:
            assert_plivo_error(other.request(method, path, json=body), 404)

        # the other account works with PHLOs of its own
        created = other.post("/v1/phlo", json={"name": "theirs", "nodes": [{}]})
        assert created.status_code == 201, created.text
        theirs = created.json()["phlo_id"]
        assert other.get(f"/v1/phlo/{theirs}").status_code == 200
        assert_plivo_error(live.http.get(f"/v1/phlo/{theirs}"), 404)

    other_sdk = sdk_client(server.url, other_id, other_token)
    with pytest.raises(plivo.exceptions.ResourceNotFoundError):
        other_sdk.phlo.get(phlo.phlo_id)
    assert phlo.instances() == before


# =========================================================================== 405
def test_wrong_method(live: Live, sdk: Any) -> None:
    phlo = live.phlo
    cases = [
        ("DELETE", phlo.node_path, {"GET", "POST"}),
        ("PUT", phlo.node_path, {"GET", "POST"}),
        ("PATCH", phlo.member_path(live.customer), {"GET", "POST"}),
        ("PUT", "/v1/phlo", {"GET", "POST"}),
        ("POST", f"/v1/phlo/{phlo.phlo_id}", {"GET", "DELETE"}),
        ("GET", f"/v1/account/{AUTH_ID}/phlo/{phlo.phlo_id}", {"POST"}),
        ("POST", f"{phlo.node_path}/instances", {"GET"}),
        ("DELETE", f"/v1/sim/phones/{live.customer}", {"GET", "PUT"}),
    ]
    for method, path, allowed in cases:
        for variant in (path, path + "/"):
            response = live.http.request(method, variant)
            assert_plivo_error(response, 405)
            assert {m.strip() for m in response.headers["allow"].split(",")} == allowed, variant
    with pytest.raises(plivo.exceptions.InvalidRequestError):
        sdk.request("DELETE", ("phlo", phlo.phlo_id, "multi_party_call", phlo.node_id))


# =========================================================================== leniency
def test_trailing_slash_is_optional_everywhere(api: Api, live: Live) -> None:
    no_run = api.create_phlo(with_run=False)
    live.api.phone(live.customer)  # a phone record to read
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/v1/phlo"): {"name": "x"},
        ("POST", live.phlo.node_path): {"action": "dance"},
        ("POST", live.phlo.member_path(live.customer)): {"action": "dance"},
        ("PUT", f"/v1/sim/phones/{live.customer}"): {"answer": "answer"},
    }
    seen: dict[tuple[str, str], int] = {}
    for method, path in iter_routes(live.phlo, live.customer):
        if path == f"/v1/account/{AUTH_ID}/phlo/{live.phlo.phlo_id}":
            path = f"/v1/account/{AUTH_ID}/phlo/{no_run.phlo_id}"
        if path == f"/v1/sim/phones/{live.customer}/hangup":
            path = f"/v1/sim/phones/{number()}/hangup"  # no call: 404 both times
        body = bodies.get((method, path))
        statuses = []
        for variant in (path, path + "/"):
            response = api.http.request(method, variant, json=body if method in ("POST", "PUT") else None)
            assert not 300 <= response.status_code < 400, (method, variant, response.status_code)
            statuses.append(response.status_code)
        assert statuses[0] == statuses[1], (method, path, statuses)
        seen[(method, path)] = statuses[0]
    assert seen[("DELETE", f"/v1/phlo/{live.phlo.phlo_id}")] == 400  # live conference: refused both times
    assert seen[("GET", live.phlo.member_path(live.customer))] == 200


def test_unknown_query_params_are_ignored(live: Live) -> None:
    phlo = live.phlo
    got = live.http.get(f"/v1/phlo/{phlo.phlo_id}/", params={"phlo_id": "something-else", "foo": "bar"})
    assert got.status_code == 200
    assert got.json()["phlo_id"] == phlo.phlo_id
    node = live.http.get(phlo.node_path, params={"node_type": "x", "limit": "1"})
    assert node.status_code == 200 and node.json()["node_id"] == phlo.node_id
    target = number()
    response = live.http.post(
        phlo.node_path,
        params={"trigger_source": "+1999", "foo": "1"},
        json={"action": "call", "to": target, "trigger_source": live.agent},
    )
    assert_action_ok(response)
    phlo.wait_member(target, status="connected")
    assert_action_ok(
        live.http.post(phlo.member_path(target), params={"action": "hold"}, json={"action": "hangup"})
    )
    phlo.wait_member(target, status="left", leave_reason="hangup")


def test_body_encodings(live: Live) -> None:
    phlo = live.phlo
    url = phlo.node_path
    # JSON with no content type at all
    json_target = number()
    body = json.dumps({"action": "call", "to": json_target, "trigger_source": live.agent}).encode()
    request = live.http.build_request("POST", url, content=body)
    assert "content-type" not in request.headers
    assert_action_ok(live.http.send(request))
    # JSON labelled as text/plain
    text_target = number()
    body = json.dumps({"action": "call", "to": text_target, "trigger_source": live.agent}).encode()
    assert_action_ok(live.http.post(url, content=body, headers={"Content-Type": "text/plain"}))
    # form-encoded fields (httpx encodes the plus signs as %2B)
    form_target = number()
    assert_action_ok(
        live.http.post(
            url, data={"action": "call", "to": form_target, "trigger_source": live.agent, "role": "customer"}
        )
    )
    # numbers as numbers
    number_target = number()
    assert_action_ok(
        live.http.post(
            url, json={"action": "call", "to": int(number_target[1:]), "trigger_source": live.agent}
        )
    )
    for target, role in ((json_target, "agent"), (text_target, "agent"), (form_target, "customer")):
        assert phlo.wait_member(target, status="connected")["role"] == role
    assert phlo.wait_member(number_target[1:], status="connected")["member_address"] == number_target[1:]
    # member action, form-encoded
    assert_action_ok(live.http.post(phlo.member_path(form_target), data={"action": "hold"}))
    phlo.wait_member(form_target, status="on_hold")
    # an empty member-action body is a missing action
    assert_plivo_error(live.http.post(phlo.member_path(form_target), content=b""), 400)
    assert_plivo_error(live.http.post(phlo.member_path(form_target), json={}), 400)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"", None),
        (b"", "application/json"),
        (b"{}", "application/json"),
        (b"{}", None),
        (b'""', "application/json"),
        (b'""', "application/x-www-form-urlencoded"),
        (b"null", "application/json"),
        (b"  \n", None),
    ],
    ids=["empty", "empty-json", "{}", "{}-no-type", '""', '""-form', "null", "whitespace"],
)
def test_run_bodies_without_parameters(api: Api, content: bytes, content_type: str | None) -> None:
    """Python sends {}, Node the JSON string "", Ruby and Go no body at all."""
    agent, customer = number(), number()
    phlo = api.create_phlo(dial=[(agent, "agent"), (customer, "customer")])
    headers = {"Content-Type": content_type} if content_type else {}
    request = api.http.build_request(
        "POST", f"/v1/account/{AUTH_ID}/phlo/{phlo.phlo_id}", content=content, headers=headers
    )
    if content_type is None:
        request.headers.pop("Content-Type", None)
    response = api.http.send(request)
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["api_id"] == run["phlo_run_id"]
    assert run["phlo_id"] == phlo.phlo_id
    phlo.wait_member(agent, status="connected", hears=[customer])
    assert phlo.get_run(run["phlo_run_id"])["payload"] == {}


def test_run_without_run_steps(api: Api, sdk: Any) -> None:
    phlo = api.create_phlo(with_run=False)
    run = sdk.phlo.get(phlo.phlo_id).run()
    assert run.phlo_id == phlo.phlo_id
    assert run.message.startswith("stopped.")
    assert phlo.instances() == []


def test_run_payload_templates(api: Api) -> None:
    phlo = api.create_phlo(
        dial=[("{{Start.http.params.agent}}", "agent"), ("{{ customer.number }}", "customer")]
    )
    agent, customer = number(), number()
    run = phlo.run(agent=agent, customer={"number": int(customer[1:])})
    phlo.wait_member(agent, status="connected", hears=[customer[1:]])
    assert phlo.member(customer[1:])["role"] == "customer"
    assert phlo.conference()["phlo_run_id"] == run["phlo_run_id"]


def test_sip_uris_and_endpoints_as_members(api: Api, sdk: Any) -> None:
    phlo = api.create_phlo()
    agent = "sip:alice@example.com"
    customer = number()
    endpoint = "bob_1"
    phlo.connect(agent, customer)

    # the address is written unescaped in the path, as the SDKs send it
    view = phlo.member(agent)
    assert view["member_address"] == agent
    raw = api.http.get(f"{phlo.node_path}/members/sip:alice@example.com/")
    assert raw.status_code == 200 and raw.json()["member_address"] == agent
    assert raw.request.url.raw_path.endswith(b"/members/sip:alice@example.com/")
    escaped = api.http.get(f"{phlo.node_path}/members/sip%3Aalice%40example.com")
    assert escaped.status_code == 200 and escaped.json()["member_address"] == agent

    mpc = sdk.phlo.get(phlo.phlo_id).multi_party_call(phlo.node_id)
    assert mpc.call(agent, endpoint, "agent").error == ""
    phlo.wait_member(endpoint, status="connected", hears=[agent, customer])
    assert mpc.member(agent).hold().error == ""
    phlo.wait_member(agent, status="on_hold", music="agent_hold")
    assert mpc.member(agent).unhold().error == ""
    assert mpc.warm_transfer(agent, "sip:carol@example.org;transport=tcp", "agent").error == ""
    phlo.wait_member("sip:carol@example.org;transport=tcp", status="connected", hears=[agent])
    assert mpc.member(agent).hangup().error == ""
    phlo.wait_member("sip:carol@example.org;transport=tcp", hears=[customer, endpoint])


@pytest.mark.parametrize("role", [None, "", "AGENT", " agent "], ids=["missing", "empty", "upper", "spaced"])
def test_role_defaults_to_agent(live: Live, role: str | None) -> None:
    target = number()
    body = {"action": "call", "to": target, "trigger_source": live.agent}
    if role is not None:
        body["role"] = role
    assert_action_ok(live.phlo.action(body))
    assert live.phlo.wait_member(target, status="connected")["role"] == "agent"


def test_action_names_as_other_sdks_write_them(live: Live) -> None:
    target = number()
    live.api.phone(target, "no_answer")
    assert_action_ok(live.phlo.action(action="cold-transfer", to=target, trigger_source=live.agent))
    assert live.phlo.wait_member(target, status="dialing")["transfer"]["transfer_type"] == "cold"
    assert_action_ok(live.phlo.member_action(live.agent, "ABORT_TRANSFER"))
    live.phlo.wait_member(target, status="left", leave_reason="transfer_aborted")


def test_openapi_document(api: Api) -> None:
    for path in ("/openapi.json", "/openapi.json/"):
        response = api.http.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        document = response.json()
        assert document["openapi"].startswith("3.")
        paths = document["paths"]
        assert "post" in paths["/v1/account/{auth_id}/phlo/{phlo_id}"]
        assert "get" in paths["/v1/phlo/{phlo_id}"]
        assert {"get", "post"} <= set(paths["/v1/phlo/{phlo_id}/{node_type}/{node_id}"])
        assert "post" in paths["/v1/phlo/{phlo_id}/{node_type}/{node_id}/members/{member_address}"]
        validate(document)  # OpenAPI 3.1, as tools read it
        for ref in _refs(document):
            assert ref.startswith("#/"), ref
            target: Any = document
            for part in ref[2:].split("/"):
                assert part in target, f"{ref} does not resolve"
                target = target[part]


def test_each_body_route_validates_with_its_documented_model(live: Live) -> None:
    """ApiRequest.parse refuses (500) a model other than the one the route table documents, so a
    handler whose body drifted from its OpenAPI schema fails here; `{}` reaches every validation."""
    document = live.http.get("/openapi.json").json()
    with_body = {m for item in document["paths"].values() for m, op in item.items() if "requestBody" in op}
    assert with_body == {"post", "put"}
    address = number()
    for method, path in iter_routes(live.phlo, address):
        if method in ("POST", "PUT"):
            response = live.http.request(method, path, json={})
            assert response.status_code < 500, (method, path, response.text)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_success_shapes(live: Live, sdk: Any) -> None:
    """GETs answer 200 with api_id and the ids the SDKs build their next URLs from."""
    phlo = live.phlo
    got = live.http.get(f"/v1/phlo/{phlo.phlo_id}")
    assert got.status_code == 200
    assert set(got.json()) >= {"api_id", "phlo_id", "name", "created_on"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00", got.json()["created_on"])
    node = live.http.get(phlo.node_path)
    assert node.status_code == 200
    assert {k: node.json()[k] for k in ("phlo_id", "node_id", "node_type")} == {
        "phlo_id": phlo.phlo_id,
        "node_id": phlo.node_id,
        "node_type": "multi_party_call",
    }
    for response in (got, node):
        assert response.headers["content-type"].startswith("application/json")


# =========================================================================== fuzz
FUZZ_ACTIONS: list[Any] = [
    "call", "warm_transfer", "cold_transfer", "hold", "unhold", "hangup", "resume_call",
    "voicemail_drop", "abort_transfer", "mute", "", None, 7, [], {}, "CALL", "cold-transfer",
]  # fmt: skip
FUZZ_VALUES: list[Any] = [
    None, "", 0, -1, 1.5, True, [], {}, "x" * 1000, "+14155550100", "sip:a@b", "\u0000", "agent",
    "customer", {"a": [1]},
]  # fmt: skip
FUZZ_RAW = [
    b"[]", b"[1,2]", b'"x"', b"1e999", b"{" * 2000, b'{"a":' * 300, b"null", b"true",
    b"action=hold&action=hangup", b"=&&=", b"%zz", b"\xef\xbb\xbf{}",
]  # fmt: skip
FUZZ_FIELDS = [
    "to",
    "role",
    "trigger_source",
    "answer",
    "answer_delay_ms",
    "agent",
    "customer",
    "name",
    "nodes",
]
FUZZ_CONTENT_TYPES = [
    "application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data", "json",
]  # fmt: skip


def fuzz_path(rng: random.Random, phlo: Phlo, addresses: list[str]) -> str:
    ids = [phlo.phlo_id, "x", "%20", "..", "a" * 300, "%ff", "{}"]
    phlo_id, address = rng.choice(ids), rng.choice(addresses)
    node_type, node_id = rng.choice(["multi_party_call", "x", "runs"]), rng.choice([phlo.node_id, "y"])
    path = rng.choice(
        [
            f"/v1/phlo/{phlo_id}",
            f"/v1/phlo/{phlo_id}/{node_type}/{node_id}",
            f"{phlo.node_path}/members/{address}",
            f"{phlo.node_path}/instances",
            f"/v1/account/{rng.choice([AUTH_ID, 'x'])}/phlo/{phlo_id}",
            f"/v1/phlo/{phlo_id}/runs/{rng.choice(ids)}",
            f"/v1/sim/phones/{address}",
            f"/v1/sim/phones/{address}/hangup",
            "/v1/phlo",
            "/v1/" + "/".join(rng.choice(ids) for _ in range(rng.randint(0, 6))),
        ]
    )
    return path + rng.choice(["", "/", "?x=1", "//"])


def fuzz_body(rng: random.Random, agent: str) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:  # an action with random fields
        fields = {k: rng.choice(FUZZ_VALUES) for k in rng.sample(FUZZ_FIELDS, rng.randint(0, 4))}
        return json.dumps({**fields, "action": rng.choice(FUZZ_ACTIONS)}).encode()
    if kind == 1:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
    if kind == 2:  # odd JSON and form bodies
        return rng.choice(FUZZ_RAW)
    if kind == 3:  # a well-formed MPC action
        return json.dumps(
            {"action": rng.choice(FUZZ_ACTIONS), "to": number(), "trigger_source": agent}
        ).encode()
    if kind == 4:  # a PHLO definition with random settings
        keys = rng.sample(["ring_timeout", "max_participants", "name", "node_id", "callback_url", "type"], 2)
        node = {k: rng.choice(FUZZ_VALUES) for k in keys}
        run = rng.choice([None, {"dial": [{"to": rng.choice(FUZZ_VALUES)}]}])
        return json.dumps({"name": "fuzz", "nodes": [node], "run": run}).encode()
    return b""


def test_fuzz_never_answers_5xx(api: Api) -> None:
    rng = random.Random(20240611)
    phlo = api.create_phlo(ring_timeout=1)
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    addresses = [
        agent,
        customer,
        "+19991111111",
        "sip:x@y",
        "a",
        "%2B1",
        "..",
        "sip:",
        "+",
        "ü",
        "%00",
        "a/b",
    ]
    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    for i in range(220):
        method, path, body = rng.choice(methods), fuzz_path(rng, phlo, addresses), fuzz_body(rng, agent)
        headers = {"Content-Type": rng.choice(FUZZ_CONTENT_TYPES)} if rng.random() < 0.5 else {}
        response = api.http.request(method, path, content=body, headers=headers)
        assert response.status_code < 500, (i, method, path, body[:200], response.text)
        assert not 300 <= response.status_code < 400, (i, method, path, response.status_code)
        if response.status_code >= 400 and method != "HEAD":
            assert_plivo_error(response, response.status_code)
    assert api.http.get("/health").status_code == 200
