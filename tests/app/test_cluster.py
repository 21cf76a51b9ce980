"""A cluster node's lease, takeover, fencing and drain, with the real SQLite store, the sim carrier and
fake clocks (SQLite judges leases by the `now` the node passes; PostgreSQL by its own clock, which the
store contract and e2e tests cover)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest

from bridgeline.adapters.carriers.sim.carrier import SimCarrier
from bridgeline.adapters.store import SqlStore
from bridgeline.adapters.store.base import Write
from bridgeline.app.cluster import ClusterNode, ClusterSettings, NodeIdInUse
from bridgeline.app.lease import Load, LocalLease, claim_share, least_loaded
from bridgeline.app.service import ConferenceMoved, ConferenceService
from bridgeline.core.commands import Hold
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import MemberStatus, Role
from bridgeline.phlo.definition import NodeSettings

AGENT, CUSTOMER = "+14155550101", "+14155550102"
ACCOUNT = "MA00000000000000000A"
LEASE_S = 30.0
HEARTBEAT_S = 10.0  # longer than any test: beats are driven by hand


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Node:
    """One node's parts; the clocks are shared by the nodes of a test (one machine)."""

    def __init__(self, store: SqlStore, node_id: str, wall: Clock, mono: Clock) -> None:
        self.carrier = SimCarrier(store, answer_delay_ms=0)
        self.service = ConferenceService(store, self.carrier, clock=wall, owner=lambda: self.node.owner())
        settings = ClusterSettings(node_id, f"http://{node_id}", None, LEASE_S, HEARTBEAT_S)
        self.node = ClusterNode(store, store, self.service, settings, clock=wall, monotonic=mono)

    async def start(self) -> int:
        await self.carrier.start()
        return await self.node.start()

    async def stop(self) -> None:
        await self.node.stop_heartbeats()
        await self.service.shutdown()
        await self.carrier.stop()
        await self.node.leave()

    async def connect(self) -> str:
        conference_id = await self.service.start_conference(
            auth_id=ACCOUNT,
            phlo_id="p",
            node_id="n",
            run_id=None,
            settings=NodeSettings(),
            dials=[(AGENT, Role.AGENT), (CUSTOMER, Role.CUSTOMER)],
            sequential=False,
        )
        live = self.service.get_live(conference_id)
        assert live is not None
        await settle(lambda: all(m.answered for m in live.conf.members.values()))
        return conference_id


async def settle(predicate: Callable[[], object], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def expire_lease(store: SqlStore, node_id: str) -> None:
    """What time does to a dead node's lease (the store's directory reads the real clock on SQLite)."""
    await store._write([Write("UPDATE nodes SET lease_until = 0 WHERE node_id = ?", [(node_id,)])])


@pytest.fixture
def clocks() -> tuple[Clock, Clock]:
    # The wall clock starts at the real time: on SQLite the store's directory (live_nodes) reads it.
    return Clock(time.time()), Clock(100.0)


# --- the pure decisions ----------------------------------------------------------------------------------


def test_the_local_lease_holds_until_the_renewal_time_plus_lease_minus_margin() -> None:
    lease = LocalLease(lease_s=3.0, margin_s=0.3)
    assert not lease.held(0.0)  # never renewed
    lease.renewed(sent_at=10.0)
    assert lease.held(12.69) and not lease.held(12.7)
    lease.renewed(sent_at=9.0)  # a late answer to an older renewal does not shorten it
    assert lease.held(12.69)
    lease.lost()
    assert not lease.held(10.0)


def test_orphans_are_dealt_to_the_least_loaded_nodes_first() -> None:
    nodes = [Load("a", 5, 10), Load("b", 1, 2), Load("c", 1, 9)]
    shares = {node.node_id: claim_share(node.node_id, nodes, 6, batch=100) for node in nodes}
    # b and c (b first: fewer legs) are dealt turn about and stay below a's 5; a is dealt none but claims
    # one anyway, so orphans never wait for a node that does not scan
    assert shares == {"a": 1, "b": 3, "c": 3}
    assert claim_share("b", nodes, 9, batch=100) == 5  # b, c to 5 each (8), then b again: b comes first
    assert claim_share("b", nodes, 1000, batch=50) == 50  # bounded per scan
    assert claim_share("b", nodes, 0, batch=50) == 0
    assert least_loaded(nodes) == Load("b", 1, 2)
    assert least_loaded([]) is None


# --- one node ---------------------------------------------------------------------------------------------


async def test_a_node_is_fenced_locally_once_its_lease_runs_out_until_renewed(
    store: SqlStore, clocks: tuple[Clock, Clock]
) -> None:
    wall, mono = clocks
    a = Node(store, "a", wall, mono)
    await a.start()
    assert not a.node.fenced() and a.node.ready
    mono.now += LEASE_S * 0.95  # past renewal + lease - margin (a tenth of the lease)
    assert a.node.fenced() and not a.node.ready
    assert a.node.stats()["lease_held"] == 0
    await a.node.beat()  # the store still holds the lease (its clock did not move): renewed
    assert not a.node.fenced() and a.node.epoch == 1
    await a.stop()


async def test_a_restarted_node_takes_its_conferences_back_with_a_new_epoch(
    store: SqlStore, clocks: tuple[Clock, Clock]
) -> None:
    wall, mono = clocks
    first = Node(store, "solo", wall, mono)
    await first.start()
    conference_id = await first.connect()
    await first.service.member_action(ACCOUNT, "p", "n", Hold(CUSTOMER))
    await first.node.stop_heartbeats()  # as a crash: no leave; then its lease runs out
    await first.service.shutdown()
    await first.carrier.stop()
    await expire_lease(store, "solo")

    again = Node(store, "solo", wall, mono)
    assert await again.start() == 1
    assert again.node.epoch == 2
    live = again.service.get_live(conference_id)
    assert live is not None and live.conf.members[CUSTOMER].status is MemberStatus.ON_HOLD
    stored = await store.get_conference(conference_id)
    assert stored is not None
    await again.service.member_action(ACCOUNT, "p", "n", Hold(AGENT))  # commits as epoch 2
    await again.stop()


# --- two nodes --------------------------------------------------------------------------------------------


async def test_a_node_past_its_lease_loses_its_conference_without_hanging_up(
    store: SqlStore, clocks: tuple[Clock, Clock]
) -> None:
    wall, mono = clocks
    a, b = Node(store, "a", wall, mono), Node(store, "b", wall, mono)
    await a.start()
    conference_id = await a.connect()
    events_before = await store.list_events(conference_id)
    await b.start()
    assert b.service.live_count == 0  # a's lease holds

    wall.now += LEASE_S + 1  # a was paused: its lease expired in the store's eyes
    mono.now += LEASE_S + 1
    await b.node.beat()
    assert b.service.get_live(conference_id) is not None and b.node.takeovers == 1

    # a wakes up with the conference in memory: its next commit is refused and it lets go, no BYE
    with pytest.raises(ConferenceMoved):
        await a.service.member_action(ACCOUNT, "p", "n", Hold(CUSTOMER))
    assert a.service.get_live(conference_id) is None
    assert a.carrier.calls_of(ACCOUNT, CUSTOMER) == []  # forgotten, not hung up (no signal, no event)
    assert await store.list_events(conference_id) == events_before
    await b.service.member_action(ACCOUNT, "p", "n", Hold(CUSTOMER))  # the new owner acts

    await a.node.beat()  # the store refuses the renewal: a new epoch, nothing claimed back
    assert (a.node.epoch, a.node.leases_lost, a.service.live_count) == (2, 1, 0)
    await a.stop()
    await b.stop()


async def test_the_same_address_cannot_join_conferences_on_two_nodes(
    store: SqlStore, clocks: tuple[Clock, Clock]
) -> None:
    wall, mono = clocks
    a, b = Node(store, "a", wall, mono), Node(store, "b", wall, mono)
    await a.start()
    await b.start()
    await a.connect()
    with pytest.raises(ActionRefused, match=re.escape(f"{CUSTOMER} is already in a live conference")):
        await b.service.start_conference(
            auth_id=ACCOUNT,
            phlo_id="p",
            node_id="n",
            run_id=None,
            settings=NodeSettings(),
            dials=[(CUSTOMER, Role.CUSTOMER)],
            sequential=True,
        )
    assert b.service.live_count == 0
    await a.stop()
    await b.stop()


async def test_a_draining_node_hands_its_conference_to_the_least_loaded_node(
    store: SqlStore, clocks: tuple[Clock, Clock]
) -> None:
    wall, mono = clocks
    a, b = Node(store, "a", wall, mono), Node(store, "b", wall, mono)
    await a.start()
    await b.start()
    conference_id = await a.connect()
    assert await a.node.drain(timeout_s=0.2) == 1  # (it also waits that long for balancers to see 503)
    assert not a.node.ready and a.service.live_count == 0
    assert a.carrier.calls_of(ACCOUNT, AGENT) == []  # forgotten without hang-up
    await b.node.beat()  # the receiver claims it like an orphan
    live = b.service.get_live(conference_id)
    assert live is not None and live.conf.members[AGENT].status is MemberStatus.CONNECTED
    await b.service.member_action(ACCOUNT, "p", "n", Hold(CUSTOMER))
    await a.stop()
    await b.stop()


async def test_a_second_live_process_with_the_same_node_id_is_refused_at_start(
    store: SqlStore, clocks: tuple[Clock, Clock]
) -> None:
    wall, mono = clocks
    first = Node(store, "twin", wall, mono)
    await first.start()
    renewals = asyncio.create_task(keep_renewing(first, wall))  # alive: its heartbeat moves
    second = Node(store, "twin", wall, mono)
    with pytest.raises(NodeIdInUse, match="give each node its own BRIDGELINE_NODE_ID"):
        await second.node.start()
    renewals.cancel()
    assert first.node.epoch == 1 and await first.node.beat() is None and first.node.leases_lost == 0
    await first.stop()


async def keep_renewing(node: Node, wall: Clock) -> None:
    while True:
        await asyncio.sleep(0.05)
        wall.now += 0.05
        await node.node.beat()
