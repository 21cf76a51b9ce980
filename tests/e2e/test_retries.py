"""Safe retries with Idempotency-Key against the real server (docs/semantics.md, "Retries and
Idempotency-Key"). The Plivo SDK cannot set the header, so keyed requests go through httpx; the SDK's
own requests, which carry no key, behave as before.

Two server processes on one PostgreSQL database are in test_retries_postgres.py."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from contextlib import closing
from typing import Any

import httpx
from e2ekit import (
    Api,
    Phlo,
    ServerProcess,
    add_account,
    assert_plivo_error,
    number,
    sdk_client,
    sdk_mpc,
    wait_until,
)
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

KEY = "Idempotency-Key"
REPLAYED = "idempotent-replayed"


def new_key() -> str:
    return str(uuid.uuid4())


def keyed(http: httpx.Client, path: str, body: Any, key: str, header: str = KEY) -> httpx.Response:
    return http.post(path, json=body, headers={header: key})


def run_path(phlo: Phlo) -> str:
    return f"/v1/account/{phlo.api.auth_id}/phlo/{phlo.phlo_id}"


def events_of(phlo: Phlo, mpc_uuid: str, event: str, address: str) -> list[dict[str, Any]]:
    response = phlo.http.get(f"/v1/console/conferences/{mpc_uuid}")
    assert response.status_code == 200, response.text
    return [
        e
        for e in response.json()["events"]
        if e["event"] == event and e["data"].get("member_address") == address
    ]


def assert_replayed(first: httpx.Response, retry: httpx.Response) -> None:
    """The retry got the first answer byte for byte, marked as replayed."""
    assert (retry.status_code, retry.content) == (first.status_code, first.content)
    assert retry.headers["content-type"] == first.headers["content-type"]
    assert retry.headers[REPLAYED] == "true" and REPLAYED not in first.headers


def test_a_retried_call_dials_once_and_gets_the_first_answer(api: Api) -> None:
    phlo = api.create_phlo()
    agent, customer, third = number(), number(), number()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    call = {"action": "call", "to": third, "trigger_source": agent}
    key = new_key()
    first = keyed(phlo.http, phlo.node_path, call, key)
    assert first.status_code == 201, first.text
    phlo.wait_member(third, status="connected")
    retry = keyed(phlo.http, phlo.node_path, call, key)
    assert_replayed(first, retry)
    assert len(events_of(phlo, mpc_uuid, "member_dialing", third)) == 1
    assert len(api.phone_calls(third)) == 1


def test_a_retried_run_starts_one_conference(api: Api) -> None:
    phlo = api.create_phlo()
    agent, customer = number(), number()
    payload = {"agent": agent, "customer": customer}
    key = new_key()
    first = keyed(phlo.http, run_path(phlo), payload, key)
    assert first.status_code == 201, first.text
    retries = [keyed(phlo.http, run_path(phlo), payload, key) for _ in range(3)]
    for retry in retries:
        assert_replayed(first, retry)
    phlo.wait_member(customer, status="connected")
    assert len(phlo.instances()) == 1
    assert len(api.phone_calls(agent)) == 1 and len(api.phone_calls(customer)) == 1


def test_the_header_is_read_in_any_case_and_another_request_with_the_key_is_a_422(api: Api) -> None:
    phlo = api.create_phlo()
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    key = new_key()
    hold = keyed(phlo.http, phlo.member_path(customer), {"action": "hold"}, key, header="idempotency-key")
    assert hold.status_code == 201, hold.text
    assert_replayed(hold, keyed(phlo.http, phlo.member_path(customer), {"action": "hold"}, key))
    assert len(events_of(phlo, mpc_uuid, "member_held", customer)) == 1
    for path, body in [
        (phlo.member_path(customer), {"action": "unhold"}),  # same path, other body
        (phlo.member_path(agent), {"action": "hold"}),  # same body, other path
    ]:
        error = assert_plivo_error(keyed(phlo.http, path, body, key), 422)
        assert KEY in error["error"]
    assert phlo.member(customer)["status"] == "on_hold" and phlo.member(agent)["status"] == "connected"


def test_keys_belong_to_their_account(api: Api, server: ServerProcess) -> None:
    other = Api(server, auth=add_account(server))
    mine, theirs = api.create_phlo(), other.create_phlo()
    key = new_key()
    payload = {"agent": number(), "customer": number()}
    first = keyed(mine.http, run_path(mine), payload, key)
    assert first.status_code == 201, first.text
    # The other account's identical key is its own: its request runs and gets its own answer.
    their_run = keyed(theirs.http, run_path(theirs), payload, key)
    assert their_run.status_code == 201 and REPLAYED not in their_run.headers
    assert their_run.json()["phlo_run_id"] != first.json()["phlo_run_id"]
    # My request sent under their account with my key is theirs to answer: no PHLO of mine, no answer of mine.
    other_key, other_payload = new_key(), {"agent": number(), "customer": number()}
    assert keyed(mine.http, run_path(mine), other_payload, other_key).status_code == 201
    assert_plivo_error(keyed(other.http, run_path(mine), other_payload, other_key), 404)
    assert_replayed(first, keyed(mine.http, run_path(mine), payload, key))


def test_the_sdk_sends_no_key_and_is_unaffected(api: Api) -> None:
    """Next to keyed retries, the SDK's requests run each time, as before."""
    phlo = api.create_phlo()
    agent, customer, third = number(), number(), number()
    sdk = sdk_client(api.url)
    sdk_phlo = sdk.phlo.get(phlo.phlo_id)
    first_run = sdk_phlo.run(agent=agent, customer=customer)
    phlo.wait_member(customer, status="connected", hears=[agent])
    call = {"action": "call", "to": third, "trigger_source": agent}
    key = new_key()
    first = keyed(phlo.http, phlo.node_path, call, key)
    assert first.status_code == 201, first.text
    assert_replayed(first, keyed(phlo.http, phlo.node_path, call, key))
    mpc = sdk_mpc(sdk, phlo)
    assert mpc.member(customer).hold().error == ""
    phlo.wait_member(customer, status="on_hold")
    assert mpc.member(customer).unhold().error == ""
    phlo.wait_member(customer, status="connected")
    again = sdk_phlo.run(agent=number(), customer=number())
    assert again.phlo_run_id != first_run.phlo_run_id  # no key: a second run, as before
    assert len(phlo.instances()) == 2


def test_key_length_and_retention_are_settings(server_factory: Callable[..., ServerProcess]) -> None:
    env = {
        "BRIDGELINE_IDEMPOTENCY_KEY_MAX_LENGTH": "8",
        "BRIDGELINE_IDEMPOTENCY_TTL_S": "1",
        "BRIDGELINE_PRUNE_INTERVAL": "0.2",
    }
    server = server_factory(env=env)
    api = Api(server)
    phlo = api.create_phlo()
    payload = {"agent": number(), "customer": number()}
    assert_plivo_error(keyed(phlo.http, run_path(phlo), payload, "k" * 9), 400)
    assert phlo.instances() == []
    first = keyed(phlo.http, run_path(phlo), payload, "k" * 8)
    assert first.status_code == 201, first.text
    assert_replayed(first, keyed(phlo.http, run_path(phlo), payload, "k" * 8))

    def stored_keys() -> int:
        with closing(sqlite3.connect(server.data_dir / "bridgeline.db")) as db:
            return int(db.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0])

    assert stored_keys() == 1
    wait_until(lambda: stored_keys() == 0, timeout=10, what="the key pruned by the retention loop")
    later = keyed(phlo.http, run_path(phlo), {"agent": number(), "customer": number()}, "k" * 8)
    assert later.status_code == 201 and REPLAYED not in later.headers  # a new request under the old key
    assert later.json()["phlo_run_id"] != first.json()["phlo_run_id"]


def test_the_openapi_document_names_the_header_on_every_post(api: Api) -> None:
    document = api.http.get("/openapi.json").json()
    validate(document)
    posts = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            headers = [p for p in operation["parameters"] if p["in"] == "header"]
            if method == "post":
                posts += 1
                assert [h["name"] for h in headers] == [KEY], path
                assert not headers[0]["required"]
                success = next(iter(operation["responses"].values()))
                assert "Idempotent-Replayed" in success["headers"], path
            else:
                assert headers == [], (method, path)
    # run, create PHLO, MPC action, member action, conference recording, member recording, sim phone
    # hangup: a new POST must be counted here on purpose
    assert posts == 7


def test_keyed_requests_are_counted_by_outcome(api: Api) -> None:
    def counts() -> dict[str, float]:
        text = api.http.get("/metrics").text
        return {
            sample.labels["outcome"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "bridgeline_idempotency_requests_total"
        }

    before = counts()
    phlo = api.create_phlo()
    payload, key = {"agent": number(), "customer": number()}, new_key()
    assert keyed(phlo.http, run_path(phlo), payload, key).status_code == 201
    assert keyed(phlo.http, run_path(phlo), payload, key).status_code == 201
    assert_plivo_error(keyed(phlo.http, run_path(phlo), {}, key), 422)
    after = counts()
    for outcome, more in {"ran": 1, "replayed": 1, "mismatched": 1}.items():
        assert after[outcome] >= before.get(outcome, 0) + more, outcome
