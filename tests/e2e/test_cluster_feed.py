"""Events and callbacks across nodes (issue #12): several `bridgeline serve` processes on one PostgreSQL.

Every node's event stream shows every node's conferences (LISTEN/NOTIFY, and polling when the LISTEN
connection is gone), once each and in order, per account; the callback outbox is worked by every node,
and a node killed with callbacks pending leaves them to the others. All nodes start before any
conference exists (which node owns a conference, and taking over a dead node's calls, are not this
test's subject).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from e2ekit import (
    AUTH_ID,
    AUTH_TOKEN,
    Api,
    CallbackReceiver,
    Phlo,
    ServerProcess,
    add_account,
    number,
    sdk_client,
    sdk_mpc,
    wait_until,
)
from test_postgres import database_url  # noqa: F401  (the fixture: a database of the test's own)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "console"))
from livekit import EventStream

pytestmark = pytest.mark.postgres

PENDING = "SELECT count(*) FROM deliveries WHERE status = 'pending'"
NODE_ENV = {"BRIDGELINE_EVENT_FEED_POLL_INTERVAL": "0.5", "BRIDGELINE_WEBHOOK_TIMEOUT": "1.0"}


@pytest.fixture
def nodes(
    database_url: str,  # noqa: F811
    server_factory: Callable[..., ServerProcess],
    tmp_path: Path,
) -> Callable[[int], list[ServerProcess]]:
    def start(count: int) -> list[ServerProcess]:
        return [
            server_factory(
                data_dir=tmp_path / f"node-{index}",
                env={**NODE_ENV, "DATABASE_URL": database_url, "BRIDGELINE_NODE_ID": f"node-{index}"},
            )
            for index in range(count)
        ]

    return start


@pytest.fixture
def streams() -> Iterator[list[EventStream]]:
    opened: list[EventStream] = []
    yield opened
    for stream in opened:
        stream.close()


def stored_events(url: str, mpc_uuid: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT seq, type FROM events WHERE conference_id = %s ORDER BY seq", (mpc_uuid,)
        ).fetchall()
    return [(int(seq), str(kind)) for seq, kind in rows]


def streamed(stream: EventStream, mpc_uuid: str) -> list[tuple[int, str]]:
    """(sequence, event) of the stream's messages for one conference, in arrival order."""
    return [
        (d["event"]["sequence"], d["event"]["event"])
        for d in stream.named("conference")
        if d["mpc_uuid"] == mpc_uuid and d["event"]
    ]


def metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", auth=(AUTH_ID, AUTH_TOKEN), timeout=10).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics:\n{text[:3000]}"
    return float(found.group(1))


def run_a_call(phlo: Phlo, while_live: Callable[[str], None] | None = None) -> str:
    """On the node `phlo` speaks to: connect two phones, hold and unhold one, hang up; the mpc_uuid."""
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    mpc_uuid = str(phlo.member(agent)["mpc_uuid"])
    if while_live is not None:
        while_live(mpc_uuid)
    mpc = sdk_mpc(sdk_client(phlo.api.url), phlo)
    assert mpc.member(customer).hold().error == ""
    assert mpc.member(customer).unhold().error == ""
    assert mpc.member(agent).hangup().error == ""
    assert mpc.member(customer).hangup().error == ""
    phlo.wait_ended(mpc_uuid)
    return mpc_uuid


def test_a_conference_on_one_node_streams_live_on_the_others(
    nodes: Callable[[int], list[ServerProcess]],
    database_url: str,  # noqa: F811
    streams: list[EventStream],
) -> None:
    a, b, c = nodes(3)
    other = add_account(a)
    on_b, on_c = EventStream(b.url), EventStream(c.url)
    others_on_b = EventStream(b.url, auth=other)
    streams.extend([on_b, on_c, others_on_b])
    wait_until(lambda: all(s.named("hello") for s in streams), what="the streams to open")

    phlo = Api(a).create_phlo()

    def shown_live_on_b(mpc_uuid: str) -> None:  # the console's JSON on B lists A's live conference
        state = Api(b).http.get("/v1/console/state", params={"phlo_id": phlo.phlo_id}).json()
        shown = [c for c in state["conferences"] if c["mpc_uuid"] == mpc_uuid]
        assert [c["view"]["status"] for c in shown] == ["live"], state

    mpc_uuid = run_a_call(phlo, shown_live_on_b)
    expected = stored_events(database_url, mpc_uuid)
    assert expected[-1][1] == "conference_ended"
    for stream in (on_b, on_c):
        wait_until(lambda s=stream: len(streamed(s, mpc_uuid)) >= len(expected), timeout=10, what="events")
    # a moment for a duplicate to show up, if there were one
    wait_until(lambda: metric(b, "bridgeline_events_from_other_nodes_total") >= len(expected))
    assert streamed(on_b, mpc_uuid) == expected
    assert streamed(on_c, mpc_uuid) == expected
    assert others_on_b.named("conference") == []  # another account's stream: nothing of it

    # The LISTEN connections are cut: the events of the next call still come, by polling.
    with psycopg.connect(database_url, autocommit=True) as connection:
        cut = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        ).fetchall()
    assert len(cut) >= 3, cut  # one per node
    second = run_a_call(phlo)
    expected = stored_events(database_url, second)
    for stream in (on_b, on_c):
        wait_until(lambda s=stream: len(streamed(s, second)) >= len(expected), timeout=10, what="events")
    assert streamed(on_b, second) == expected
    assert streamed(on_c, second) == expected
    assert others_on_b.named("conference") == []
    # it was cut, and comes back
    wait_until(lambda: metric(b, "bridgeline_events_listen_connections_total") >= 2, what="a new LISTEN")


def first_arrivals(receiver: CallbackReceiver, mpc_uuid: str) -> list[tuple[int, str]]:
    """(sequence, event) of a conference's accepted callbacks in arrival order, each sequence once;
    a repeat (at-least-once) must repeat the same event."""
    seen: dict[int, str] = {}
    order: list[tuple[int, str]] = []
    for callback in receiver.delivered(mpc_uuid):
        sequence, kind = int(callback.params["sequence"]), callback.params["event"]
        if sequence in seen:
            assert seen[sequence] == kind, (sequence, kind)
            continue
        seen[sequence] = kind
        order.append((sequence, kind))
    return order


def await_callbacks(receiver: CallbackReceiver, url: str, mpc_uuid: str, timeout: float) -> None:
    """Every stored event of the conference reaches the receiver, in order (repeats as at-least-once)."""
    # Compared with the store each time: a conference taken over from a dead node may go on.
    wait_until(
        lambda: first_arrivals(receiver, mpc_uuid) == stored_events(url, mpc_uuid),
        timeout=timeout,
        what=f"the callbacks of {mpc_uuid}, once in order",
    )


def start_calls(phlos: list[Phlo]) -> list[str]:
    """A connected call on each node; their mpc_uuids."""
    started = []
    for phlo in phlos:
        agent = number()
        phlo.connect(agent, number())
        started.append(str(phlo.member(agent)["mpc_uuid"]))
    return started


def test_every_node_works_the_outbox_and_a_killed_node_leaves_its_callbacks_to_the_others(
    nodes: Callable[[int], list[ServerProcess]],
    database_url: str,  # noqa: F811
) -> None:
    down = {"now": False}
    with CallbackReceiver(respond=lambda index: 503 if down["now"] else 200) as receiver:
        a, b = nodes(2)
        created = Api(a).create_phlo(callback_url=receiver.url())
        phlos = [Phlo(Api(server), created.phlo_id, created.node_id) for server in (a, b)]
        calls = [run_a_call(phlo) for phlo in phlos for _ in range(2)]
        for mpc_uuid in calls:
            await_callbacks(receiver, database_url, mpc_uuid, timeout=15)
            # Nothing failed yet, so nothing may have gone twice: two claims never share a delivery.
            assert len(receiver.delivered(mpc_uuid)) == len(stored_events(database_url, mpc_uuid))
        delivered = 'bridgeline_webhooks_attempts_total{outcome="delivered"}'
        assert metric(a, delivered) > 0 and metric(b, delivered) > 0  # both nodes post callbacks
        assert metric(b, "bridgeline_events_notifications_received_total") > 0  # A's NOTIFYs reach B

        # The receiver goes down; calls go on on both nodes; then node A dies with callbacks pending.
        down["now"] = True
        before = len(receiver.snapshot())
        live = start_calls(phlos)
        wait_until(lambda: len(receiver.snapshot()) > before + 4, timeout=15, what="failed attempts")
        assert metric(a, "bridgeline_webhooks_pending") >= 0  # the backlog is measured
        a.kill()
        with psycopg.connect(database_url) as connection:
            pending = connection.execute(
                "SELECT count(*) FROM deliveries WHERE status = 'pending'"
            ).fetchone()
        assert pending is not None and pending[0] > 0
        down["now"] = False

        for mpc_uuid in [*live, *calls]:
            await_callbacks(receiver, database_url, mpc_uuid, timeout=40)
        with psycopg.connect(database_url) as connection:
            left = connection.execute(
                "SELECT count(*) FROM deliveries WHERE status <> 'delivered'"
            ).fetchone()
        assert left == (0,)
        assert metric(b, "bridgeline_webhooks_delivery_latency_seconds_total") > 0
