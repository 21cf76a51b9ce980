"""The forwarder's decisions: which node answers, what is carried, how long a missing owner is waited for.

The owner is an httpx MockTransport here; tests/e2e/test_cluster_forwarding.py runs real nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from bridgeline.adapters.http.errors import ApiError
from bridgeline.adapters.http.forwarding import (
    ANSWERED_BY,
    FORWARDED_BY,
    IDEMPOTENCY_KEY,
    Forward,
    Forwarder,
    choose_node,
)
from bridgeline.app.records import AddressOwner, NodeRecord, NodeState

KEY = ("acct", "phlo", "mpc", "+14155550100")


def node(node_id: str, *, legs: int = 0, conferences: int = 0, state: NodeState = NodeState.UP) -> NodeRecord:
    url = f"http://{node_id}.internal:8081"
    return NodeRecord(node_id, 1, url, None, state, conferences, legs, 0.0, 0.0, 9e9)


class Directory:
    def __init__(self) -> None:
        self.conferences: dict[tuple[str, str, str, str], str] = {}
        self.owners: dict[str, NodeRecord] = {}
        self.nodes: list[NodeRecord] = []
        self.calls = 0

    async def live_nodes(self) -> list[NodeRecord]:
        self.calls += 1
        return list(self.nodes)

    async def address_owner(
        self, auth_id: str, phlo_id: str, node_id: str, address: str
    ) -> AddressOwner | None:
        self.calls += 1
        conference_id = self.conferences.get((auth_id, phlo_id, node_id, address))
        return None if conference_id is None else AddressOwner(conference_id, self.owners.get(conference_id))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.on_sleep: Callable[[], None] = lambda: None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.on_sleep()


def request(
    method: str = "POST",
    path: str = "/v1/phlo/phlo/multi_party_call/mpc/members/+14155550100",
    headers: dict[str, str] | None = None,
    query: str = "",
) -> Request:
    raw = [(b"authorization", b"Basic YTpi"), (b"content-type", b"application/json")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.replace("+", "%2B").encode(),
        "query_string": query.encode(),
        "headers": raw,
        "scheme": "http",
        "server": ("127.0.0.1", 80),
    }
    return Request(scope)


def forwarder(
    directory: Directory,
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    local: set[tuple[str, str, str, str]] | None = None,
    clock: Clock | None = None,
) -> Forwarder:
    clock = clock or Clock()
    local = local if local is not None else set()
    return Forwarder(
        node_id="a",
        directory=directory,
        is_local=lambda *key: key in local,
        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        retry_for_s=5.0,
        retry_pause_s=0.5,
        clock=clock,
        sleep=clock.sleep,
    )


def member_route(fwd: Forwarder, req: Request, body: bytes = b'{"action":"hold"}') -> Response | None:
    params = {"phlo_id": KEY[1], "node_id": KEY[2], "member_address": KEY[3]}
    return asyncio.run(fwd.route(Forward.MEMBER, req, KEY[0], params, {"action": "hold"}, body))


def test_a_local_conference_is_answered_here_without_asking_the_store() -> None:
    directory = Directory()
    fwd = forwarder(directory, lambda r: httpx.Response(500), local={KEY})
    assert member_route(fwd, request()) is None
    assert directory.calls == 0


def test_another_nodes_conference_is_replayed_there_as_it_came() -> None:
    directory = Directory()
    directory.conferences[KEY] = "conf-1"
    directory.owners["conf-1"] = node("b")
    seen: list[httpx.Request] = []

    def owner(r: httpx.Request) -> httpx.Response:
        seen.append(r)
        return httpx.Response(
            201, json={"api_id": "x", "error": ""}, headers={"content-type": "application/json"}
        )

    fwd = forwarder(directory, owner)
    answer = member_route(fwd, request(query="x=1"), body=b'{"action":"hold"}')
    assert answer is not None
    assert answer.status_code == 201 and answer.body == b'{"api_id":"x","error":""}'
    assert answer.headers[ANSWERED_BY] == "b"
    [sent] = seen
    assert (
        str(sent.url) == "http://b.internal:8081/v1/phlo/phlo/multi_party_call/mpc/members/%2B14155550100?x=1"
    )
    assert sent.method == "POST" and sent.content == b'{"action":"hold"}'
    assert sent.headers["authorization"] == "Basic YTpi"
    assert sent.headers[FORWARDED_BY] == "a"
    assert sent.headers[IDEMPOTENCY_KEY].startswith("forwarded-")
    assert fwd.stats()["forwarded"] == 1
    assert directory.calls == 1  # the conference and its owner come in one store read


def test_a_forwarded_request_is_never_forwarded_again() -> None:
    directory = Directory()
    directory.conferences[KEY] = "conf-1"
    directory.owners["conf-1"] = node("b")
    fwd = forwarder(directory, lambda r: httpx.Response(201))
    assert member_route(fwd, request(headers={FORWARDED_BY: "c"})) is None
    assert directory.calls == 0


def test_no_live_conference_anywhere_leaves_the_answer_to_this_node() -> None:
    fwd = forwarder(Directory(), lambda r: httpx.Response(201))
    assert member_route(fwd, request()) is None


def test_an_unreachable_owner_is_retried_at_the_new_owner_with_the_same_key() -> None:
    directory = Directory()
    directory.conferences[KEY] = "conf-1"
    directory.owners["conf-1"] = node("b")
    clock = Clock()
    sent: list[httpx.Request] = []

    def network(r: httpx.Request) -> httpx.Response:
        sent.append(r)
        if r.url.host == "b.internal":
            raise httpx.ConnectError("refused", request=r)
        return httpx.Response(201)

    def takeover() -> None:
        if clock.now >= 2.0:
            directory.owners["conf-1"] = node("c")

    clock.on_sleep = takeover
    fwd = forwarder(directory, network, clock=clock)
    answer = member_route(fwd, request(headers={IDEMPOTENCY_KEY: "client-key"}))
    assert answer is not None and answer.status_code == 201
    assert [r.url.host for r in sent][-1] == "c.internal"
    assert {r.headers[IDEMPOTENCY_KEY] for r in sent} == {"client-key"}
    assert fwd.stats()["forward_retries"] >= 4


def test_an_owner_missing_past_the_retry_window_answers_503_with_retry_after() -> None:
    directory = Directory()
    directory.conferences[KEY] = "conf-1"
    directory.owners["conf-1"] = node("b")

    def refused(r: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=r)

    clock = Clock()
    fwd = forwarder(directory, refused, clock=clock)
    with pytest.raises(ApiError) as error:
        member_route(fwd, request())
    assert error.value.status == 503 and error.value.headers == {"Retry-After": "1"}
    assert clock.now >= 5.0
    assert fwd.stats()["forward_failed"] == 1


def test_a_conference_this_node_took_over_meanwhile_is_answered_here() -> None:
    directory = Directory()
    directory.conferences[KEY] = "conf-1"
    directory.owners["conf-1"] = node("b")
    local: set[tuple[str, str, str, str]] = set()
    clock = Clock()

    def refused(r: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=r)

    def takeover() -> None:
        directory.owners["conf-1"] = node("a")
        local.add(KEY)

    clock.on_sleep = takeover
    fwd = forwarder(directory, refused, local=local, clock=clock)
    assert member_route(fwd, request()) is None


def test_placement_picks_the_least_loaded_live_node_and_this_node_on_a_tie() -> None:
    nodes = [
        node("b", legs=4),
        node("c", legs=2, conferences=3),
        node("d", legs=2, conferences=1),
        node("e", legs=0, state=NodeState.DRAINING),
    ]
    assert choose_node(nodes, "a").node_id == "d"  # type: ignore[union-attr]
    assert choose_node([node("b", legs=1), node("a", legs=1)], "a").node_id == "a"  # type: ignore[union-attr]
    assert choose_node([node("e", state=NodeState.DRAINING)], "a") is None


def test_a_new_run_goes_to_the_least_loaded_node_or_stays_here_when_it_cannot_be_reached() -> None:
    directory = Directory()
    directory.nodes = [node("a", legs=10), node("b", legs=1)]
    reachable = {"yes": True}

    def network(r: httpx.Request) -> httpx.Response:
        if not reachable["yes"]:
            raise httpx.ConnectError("refused", request=r)
        return httpx.Response(201, json={"api_id": "run"})

    fwd = forwarder(directory, network)
    run = request(path="/v1/account/acct/phlo/phlo")
    answer = asyncio.run(fwd.route(Forward.PLACE, run, "acct", {}, {}, b"{}"))
    assert answer is not None and answer.headers[ANSWERED_BY] == "b"
    reachable["yes"] = False
    fwd.nodes_ttl_s = 0.0
    assert asyncio.run(fwd.route(Forward.PLACE, run, "acct", {}, {}, b"{}")) is None
    directory.nodes = [node("a", legs=0), node("b", legs=1)]
    assert asyncio.run(fwd.route(Forward.PLACE, run, "acct", {}, {}, b"{}")) is None


def test_a_conference_the_store_says_is_this_nodes_is_answered_here_without_waiting() -> None:
    """Not held here though the store names this node (it lost it, or a member it held has left): the
    local answer at once, never a wait for a takeover that will not come."""
    directory = Directory()
    directory.conferences[KEY] = "conf-1"
    directory.owners["conf-1"] = node("a")
    clock = Clock()
    fwd = forwarder(directory, lambda r: httpx.Response(500), clock=clock)
    assert member_route(fwd, request()) is None
    assert clock.now == 0.0
