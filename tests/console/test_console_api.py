"""The console's HTTP side against a real server: page, assets, state, event stream, origin guard."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from e2ekit import Api, CallbackReceiver, ServerProcess, add_account, assert_plivo_error, number, wait_until
from livekit import AUTH_ID, AUTH_TOKEN, EventStream


def test_the_page_needs_the_api_credentials_and_is_locked_down(api: Api) -> None:
    with httpx.Client(base_url=api.url) as anonymous:
        refused = anonymous.get("/console")
    assert_plivo_error(refused, 401)
    assert refused.headers["www-authenticate"].startswith("Basic")  # so the browser prompts

    page = api.http.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<main id="phlos">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("name", "kind"),
    [("console.js", "text/javascript"), ("console.css", "text/css"), ("audio.js", "text/javascript")],
)
def test_assets_are_served_with_their_type(api: Api, name: str, kind: str) -> None:
    with httpx.Client(base_url=api.url) as anonymous:  # no secret in them: no credentials needed
        response = anonymous.get(f"/console/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == kind
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("name", ["nope.js", "..%2Fhub.py", "hub.py", ".hidden.js", "%2E%2E%2Fconsole.html"])
def test_only_the_static_assets_are_served(api: Api, name: str) -> None:
    assert_plivo_error(api.http.get(f"/console/static/{name}"), 404)


def test_state_lists_phlos_nodes_and_live_conferences_with_their_events(api: Api) -> None:
    phlo = api.create_phlo()
    agent, customer = number(), number()
    phlo.connect(agent, customer)

    state = api.http.get("/v1/console/state", params={"phlo_id": phlo.phlo_id}).json()
    assert state["server_time"] == pytest.approx(time.time(), abs=5)
    assert [p["phlo_id"] for p in state["phlos"]] == [phlo.phlo_id]
    assert [n["node_id"] for n in state["phlos"][0]["nodes"]] == [phlo.node_id]
    (entry,) = state["conferences"]
    assert (entry["phlo_id"], entry["node_id"]) == (phlo.phlo_id, phlo.node_id)
    view = entry["view"]
    assert view["status"] == "live"
    assert {m["member_address"]: m["status"] for m in view["members"]} == {
        agent: "connected",
        customer: "connected",
    }
    events = [e["event"] for e in entry["events"]]
    assert events[0] == "conference_started" and events.count("member_connected") == 2
    assert entry["version"] == entry["events"][-1]["sequence"]
    assert entry["deliveries"] == []  # no callback URL

    everything = api.http.get("/v1/console/state").json()
    assert phlo.phlo_id in {p["phlo_id"] for p in everything["phlos"]}
    one = api.http.get(f"/v1/console/conferences/{view['mpc_uuid']}").json()
    assert one["view"] == view


def test_ended_conferences_stay_a_while_and_other_accounts_see_nothing(api: Api) -> None:
    phlo = api.create_phlo()
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    api.hang_up_phone(agent)
    api.hang_up_phone(customer)
    phlo.wait_ended(mpc_uuid)

    state = api.http.get("/v1/console/state", params={"phlo_id": phlo.phlo_id}).json()
    (entry,) = state["conferences"]
    assert entry["view"]["status"] == "ended"
    assert entry["events"][-1]["event"] == "conference_ended"

    other = add_account(api.server)
    with httpx.Client(base_url=api.url, auth=other) as stranger:
        assert_plivo_error(stranger.get("/v1/console/state", params={"phlo_id": phlo.phlo_id}), 404)
        assert_plivo_error(stranger.get(f"/v1/console/conferences/{mpc_uuid}"), 404)
        assert phlo.phlo_id not in {p["phlo_id"] for p in stranger.get("/v1/console/state").json()["phlos"]}


def test_the_stream_carries_each_event_with_the_updated_view(api: Api) -> None:
    phlo, other = api.create_phlo(), api.create_phlo()
    stream = EventStream(api.url, {"phlo_id": phlo.phlo_id})
    everything = EventStream(api.url)
    try:
        wait_until(lambda: stream.named("hello") and everything.named("hello"), what="both streams open")
        assert stream.status == 200
        agent, customer = number(), number()
        phlo.connect(agent, customer)
        other.connect(number(), number())
        assert other.member_action(customer, "hold").status_code == 404  # not that node's member
        assert phlo.member_action(customer, "hold").status_code == 201

        held = wait_until(
            lambda: [
                d for d in stream.named("conference") if d["event"] and d["event"]["event"] == "member_held"
            ],
            what="member_held on the stream",
        )[0]
        assert held["event"]["data"]["member_address"] == customer
        members = {m["member_address"]: m for m in held["view"]["members"]}
        assert members[customer]["status"] == "on_hold"
        assert members[customer]["music"] == "customer_hold"
        assert held["version"] == held["event"]["sequence"]

        # The filtered stream saw this PHLO only; the other one saw both PHLOs.
        assert {d["phlo_id"] for d in stream.named("conference")} == {phlo.phlo_id}
        wait_until(
            lambda: {d["phlo_id"] for d in everything.named("conference")} >= {phlo.phlo_id, other.phlo_id},
            what="both PHLOs on the unfiltered stream",
        )
        sequences = [d["event"]["sequence"] for d in stream.named("conference") if d["event"]]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    finally:
        stream.close()
        everything.close()


def test_the_stream_is_refused_without_credentials_or_for_an_unknown_phlo(api: Api) -> None:
    with httpx.Client(base_url=api.url) as anonymous:
        assert_plivo_error(anonymous.get("/v1/events/stream"), 401)
    assert_plivo_error(api.http.get("/v1/events/stream", params={"phlo_id": "no-such-phlo"}), 404)


def test_callback_deliveries_are_listed_with_their_status(api: Api) -> None:
    with CallbackReceiver(respond=lambda index: 200) as receiver:
        phlo = api.create_phlo(callback_url=receiver.url())
        phlo.connect(number(), number())
        mpc_uuid = phlo.conference()["mpc_uuid"]
        wait_until(lambda: len(receiver.delivered(mpc_uuid)) >= 7, what="callbacks")

        def delivered() -> list[dict[str, object]] | None:
            entry = api.http.get(f"/v1/console/conferences/{mpc_uuid}").json()
            done = [d for d in entry["deliveries"] if d["status"] == "delivered"]
            return entry["deliveries"] if len(done) >= 7 else None

        deliveries = wait_until(delivered, what="deliveries marked delivered")
    first = deliveries[0]
    assert (first["sequence"], first["event"], first["last_status_code"]) == (1, "conference_started", 200)
    assert first["url"] == receiver.url() and first["attempts"] == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_requests_from_another_origin_are_refused(api: Api, method: str) -> None:
    """A browser that holds the credentials must not let another site use them (CSRF)."""
    phlo = api.create_phlo()
    path = f"/v1/account/{AUTH_ID}/phlo/{phlo.phlo_id}" if method == "POST" else "/v1/console/state"
    body = {"agent": number(), "customer": number()} if method == "POST" else None
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        refused = api.http.request(method, path, json=body, headers=headers)
        assert_plivo_error(refused, 403)
    assert phlo.instances() == []  # nothing ran
    same_origin = api.http.request(method, path, json=body, headers={"Origin": api.url})
    assert same_origin.status_code in (200, 201), same_origin.text


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[[], ServerProcess]]:
    made: list[ServerProcess] = []

    def make() -> ServerProcess:
        process = ServerProcess(data_dir=tmp_path / "data", log_dir=tmp_path / "logs")
        made.append(process)
        process.start()
        return process

    yield make
    for process in made:
        if process.running:
            process.kill()


def test_stopping_the_server_ends_open_streams(server_factory: Callable[[], ServerProcess]) -> None:
    server = server_factory()
    stream = EventStream(server.url)
    try:
        wait_until(lambda: stream.named("hello"), what="the stream to open")
        started = time.monotonic()
        server.stop()  # asserts a clean exit
        assert time.monotonic() - started < 5
        assert stream.ended.wait(5)
    finally:
        stream.close()


def test_the_token_is_checked_like_the_api(api: Api) -> None:
    with httpx.Client(base_url=api.url, auth=(AUTH_ID, AUTH_TOKEN + "x")) as wrong:
        assert_plivo_error(wrong.get("/console"), 401)
        assert_plivo_error(wrong.get("/v1/events/stream"), 401)
