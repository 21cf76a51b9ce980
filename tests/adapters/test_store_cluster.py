"""Node leases, fenced commits, address claims and takeovers (issue #12), on SQLite and PostgreSQL.

Leases are judged by the database's clock on PostgreSQL and by the passed `now` on SQLite; the tests
pass the real time and wait out short leases, so the same test holds on both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest
from test_store_contract import conference as conference_record
from test_store_contract import delivery
from test_store_contract import event as event_record

from bridgeline.adapters.store import open_store
from bridgeline.adapters.store.base import SqlStore
from bridgeline.app.records import (
    AddressOwner,
    AddressTaken,
    ConferenceRecord,
    ConferenceStatus,
    EventRecord,
    LeaseLost,
    NodeLoad,
    NodeState,
)

RawQuery = Callable[[str], list[tuple[Any, ...]]]
LONG = 30.0  # a lease that outlives the test
SHORT = 0.4  # a lease the test waits out
KEY = ("MA1", "phlo-1", "mpc-1")


def conference(conference_id: str, owner: tuple[str, int] | None, **changes: Any) -> ConferenceRecord:
    now = time.time()
    record = ConferenceRecord(
        conference_id=conference_id,
        auth_id=KEY[0],
        phlo_id=KEY[1],
        node_id=KEY[2],
        run_id=None,
        status=ConferenceStatus.LIVE,
        state={"core": {"n": 1}},
        created_at=now,
        updated_at=now,
        owner_node=None if owner is None else owner[0],
        owner_epoch=None if owner is None else owner[1],
    )
    return dataclasses.replace(record, **changes)


def event(conference_id: str, seq: int) -> EventRecord:
    return EventRecord(conference_id, seq, "member_joined", time.time(), {"seq": seq})


async def register(store: SqlStore, node_id: str, lease_s: float = LONG) -> tuple[str, int]:
    node = await store.register_node(node_id, f"http://{node_id}", None, lease_s, time.time())
    return node.node_id, node.epoch


def owner_row(raw_query: RawQuery, conference_id: str) -> tuple[Any, ...]:
    (row,) = raw_query(
        f"SELECT owner_node, owner_epoch, state FROM conferences WHERE conference_id = '{conference_id}'"
    )
    return row


async def test_a_node_registers_with_a_new_epoch_each_start_and_renews_only_its_own(store: SqlStore) -> None:
    first = await store.register_node("a", "http://10.0.0.1:8080", "10.0.0.1:5060", LONG, time.time())
    assert (first.epoch, first.state, first.internal_url, first.sip_address) == (
        1, NodeState.UP, "http://10.0.0.1:8080", "10.0.0.1:5060",
    )  # fmt: skip
    second = await store.register_node("a", "http://10.0.0.1:8081", None, LONG, time.time())
    assert second.epoch == 2
    load = NodeLoad(NodeState.DRAINING, 3, 7)
    assert not await store.renew_node("a", 1, LONG, load, time.time())  # the old life is fenced out
    assert await store.renew_node("a", 2, LONG, load, time.time())
    (node,) = await store.live_nodes()
    assert (node.node_id, node.epoch, node.state, node.live_conferences, node.live_legs) == (
        "a", 2, NodeState.DRAINING, 3, 7,
    )  # fmt: skip


async def test_an_expired_lease_is_not_renewed_and_the_node_is_no_longer_live(store: SqlStore) -> None:
    _, epoch = await register(store, "a", SHORT)
    await register(store, "b")
    await asyncio.sleep(SHORT + 0.2)
    assert not await store.renew_node("a", epoch, LONG, NodeLoad(NodeState.UP, 0, 0), time.time())
    assert [node.node_id for node in await store.live_nodes()] == ["b"]


async def test_the_owner_commits_and_nobody_else(store: SqlStore, raw_query: RawQuery) -> None:
    a = await register(store, "a")
    await store.commit_conference(conference("c1", a), [event("c1", 1)])
    await store.commit_conference(conference("c1", a, state={"v": 2}), [event("c1", 2)])
    b = await register(store, "b")
    with pytest.raises(LeaseLost):  # b does not own it
        await store.commit_conference(conference("c1", b, state={"v": "b"}), [event("c1", 3)])
    with pytest.raises(LeaseLost):  # nor does an earlier epoch of a
        await store.commit_conference(conference("c1", ("a", a[1] - 1), state={"v": "old"}), [event("c1", 3)])
    assert owner_row(raw_query, "c1")[:2] == a
    assert [e.seq for e in await store.list_events("c1")] == [1, 2]  # nothing half-written
    stored = await store.get_conference("c1")
    assert stored is not None and stored.state == {"v": 2}


async def test_a_node_whose_lease_expired_cannot_commit_even_a_new_conference(
    store: SqlStore, raw_query: RawQuery
) -> None:
    a = await register(store, "a", SHORT)
    await store.commit_conference(conference("c1", a), [event("c1", 1)])
    await asyncio.sleep(SHORT + 0.2)
    with pytest.raises(LeaseLost):
        await store.commit_conference(conference("c1", a, state={"late": True}), [event("c1", 2)])
    with pytest.raises(LeaseLost):
        await store.commit_conference(conference("c2", a), [event("c2", 1)])
    assert raw_query("SELECT conference_id FROM conferences") == [("c1",)]
    assert [e.seq for e in await store.list_events("c1")] == [1]


async def test_an_address_is_held_by_one_live_conference_across_nodes(store: SqlStore) -> None:
    a, b = await register(store, "a"), await register(store, "b")
    await store.commit_conference(conference("ca", a), [event("ca", 1)], claimed=["+1555"])
    with pytest.raises(AddressTaken) as refused:
        await store.commit_conference(conference("cb", b), [event("cb", 1)], claimed=["+1666", "+1555"])
    assert (refused.value.address, refused.value.conference_id) == ("+1555", "ca")
    assert await store.get_conference("cb") is None  # nothing half-written: no row, no event, no claim
    assert await store.list_events("cb") == []
    assert await store.conference_for_address(*KEY, "+1666") is None
    assert await store.conference_for_address(*KEY, "+1555") == "ca"
    # the same address under another PHLO node is another address
    other = conference("cc", b, node_id="mpc-2")
    await store.commit_conference(other, claimed=["+1555"])
    # released by its conference (e.g. the member left, or the conference ended), it may be claimed again
    await store.commit_conference(conference("ca", a), [event("ca", 2)], released=["+1555"])
    await store.commit_conference(conference("cb", b), [event("cb", 1)], claimed=["+1555"])
    assert await store.conference_for_address(*KEY, "+1555") == "cb"
    # a conference claiming an address it already holds (a new owner re-claims all of them) is fine
    await store.commit_conference(conference("cb", b), [event("cb", 2)], claimed=["+1555"])


async def test_an_address_leads_to_its_conference_and_its_live_owner_in_one_read(store: SqlStore) -> None:
    a, gone = await register(store, "a"), await register(store, "gone", SHORT)
    await store.commit_conference(conference("ca", a), claimed=["+1555"])
    await store.commit_conference(conference("cg", gone), claimed=["+1666"])
    assert await store.address_owner(*KEY, "+1777") is None  # held by no conference
    held = await store.address_owner(*KEY, "+1555")
    assert held is not None and held.conference_id == "ca" and held.node is not None
    assert (held.node.node_id, held.node.epoch, held.node.internal_url) == (*a, "http://a")
    await asyncio.sleep(SHORT + 0.2)
    assert await store.address_owner(*KEY, "+1666") == AddressOwner("cg", None)  # its owner's lease lapsed
    await register(store, "a")  # a new life of a: the conference belongs to the earlier one until claimed
    assert await store.address_owner(*KEY, "+1555") == AddressOwner("ca", None)


async def test_the_same_address_added_on_two_nodes_at_once_has_one_winner(store_url: str) -> None:
    stores = [open_store(store_url), open_store(store_url)]
    for one in stores:
        await one.migrate()
    try:
        a, b = await register(stores[0], "a"), await register(stores[1], "b")
        await stores[0].commit_conference(conference("ca", a), claimed=["+1000"])
        await stores[1].commit_conference(conference("cb", b), claimed=["+1001"])
        outcomes = await asyncio.gather(
            stores[0].commit_conference(conference("ca", a), [event("ca", 1)], claimed=["+1999"]),
            stores[1].commit_conference(conference("cb", b), [event("cb", 1)], claimed=["+1999"]),
            return_exceptions=True,
        )
        refused = [outcome for outcome in outcomes if isinstance(outcome, AddressTaken)]
        assert len(refused) == 1 and outcomes.count(None) == 1, outcomes
        winner = "ca" if outcomes[0] is None else "cb"
        loser = "cb" if winner == "ca" else "ca"
        assert await stores[0].conference_for_address(*KEY, "+1999") == winner
        assert await stores[0].list_events(loser) == []
    finally:
        for one in stores:
            await one.close()


async def test_orphans_are_claimed_in_bounded_batches_and_then_owned(
    store: SqlStore, raw_query: RawQuery
) -> None:
    dead = await register(store, "dead", SHORT)
    alive = await register(store, "alive")
    for index in range(5):
        await store.commit_conference(conference(f"d{index}", dead), claimed=[f"+1{index}"])
    await store.commit_conference(conference("mine", alive))
    await store.commit_conference(
        conference("ended", dead, status=ConferenceStatus.ENDED, ended_at=time.time())
    )
    taker = await register(store, "taker")
    assert await store.count_orphans(*taker, time.time()) == 0  # dead's lease still holds
    assert await store.claim_conferences(*taker, 10, time.time()) == []
    await asyncio.sleep(SHORT + 0.2)
    assert await store.count_orphans(*taker, time.time()) == 5
    first = await store.claim_conferences(*taker, 2, time.time())
    assert [record.conference_id for record in first] == ["d0", "d1"]
    assert {(r.owner_node, r.owner_epoch) for r in first} == {taker}
    assert first[0].state == {"core": {"n": 1}}  # the snapshot to adopt comes with the claim
    rest = await store.claim_conferences(*taker, 10, time.time())
    assert [record.conference_id for record in rest] == ["d2", "d3", "d4"]
    assert await store.count_orphans(*taker, time.time()) == 0
    assert owner_row(raw_query, "mine")[:2] == alive
    assert owner_row(raw_query, "ended")[:2] == dead  # ended conferences are nobody's concern
    held = await store.address_owner(*KEY, "+13")
    assert held is not None and held.conference_id == "d3"
    assert held.node is not None and (held.node.node_id, held.node.epoch) == taker
    # the new owner commits; the dead one, were it to come back, may not
    await store.commit_conference(conference("d3", taker, state={"v": "taker"}))
    with pytest.raises(LeaseLost):
        await store.commit_conference(conference("d3", dead, state={"v": "dead"}))


async def test_a_restarted_node_takes_back_what_its_earlier_life_owned(store: SqlStore) -> None:
    before = await register(store, "a")
    await store.commit_conference(conference("c1", before))
    after = await register(store, "a")  # the lease of the old life still "holds", but the epoch moved on
    (claimed,) = await store.claim_conferences(*after, 10, time.time())
    assert (claimed.conference_id, claimed.owner_node, claimed.owner_epoch) == ("c1", *after)


async def test_a_handed_off_conference_waits_for_its_new_owner(store: SqlStore) -> None:
    a, b, c = await register(store, "a"), await register(store, "b"), await register(store, "c")
    await store.commit_conference(conference("c1", a), claimed=["+1555"])
    assert not await store.hand_off_conference("c1", "b", b[1], "c", time.time())  # only the owner may
    assert await store.hand_off_conference("c1", *a, "b", time.time())
    assert await store.address_owner(*KEY, "+1555") == AddressOwner("c1", None)  # between owners
    with pytest.raises(LeaseLost):  # the giver no longer commits
        await store.commit_conference(conference("c1", a, state={"late": 1}))
    assert await store.claim_conferences(*c, 10, time.time()) == []  # not c's: b is alive
    (claimed,) = await store.claim_conferences(*b, 10, time.time())
    assert (claimed.owner_node, claimed.owner_epoch) == b


async def test_a_node_that_leaves_frees_its_conferences_at_once(store: SqlStore) -> None:
    a, b = await register(store, "a"), await register(store, "b")
    await store.commit_conference(conference("c1", a))
    await store.leave_cluster(*a)
    assert [node.node_id for node in await store.live_nodes()] == ["b"]
    (claimed,) = await store.claim_conferences(*b, 10, time.time())
    assert claimed.conference_id == "c1"


async def test_conferences_from_before_clusters_are_claimed(store: SqlStore) -> None:
    await store.commit_conference(conference("old", None))  # no owner: written without a cluster
    a = await register(store, "a")
    (claimed,) = await store.claim_conferences(*a, 10, time.time())
    assert (claimed.conference_id, claimed.owner_node) == ("old", "a")


@pytest.mark.postgres
async def test_nodes_claiming_at_once_share_the_orphans_without_overlap(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
    stores = [open_store(postgres_url) for _ in range(3)]
    for one in stores:
        await one.migrate()
    try:
        dead = await register(stores[0], "dead", SHORT)
        for index in range(30):
            await stores[0].commit_conference(conference(f"d{index:02}", dead))
        takers = [await register(one, f"t{index}") for index, one in enumerate(stores)]
        await asyncio.sleep(SHORT + 0.2)
        claims = await asyncio.gather(
            *(
                one.claim_conferences(*taker, 12, time.time())
                for one, taker in zip(stores, takers, strict=True)
            )
        )
        claimed = [record.conference_id for batch in claims for record in batch]
        assert len(claimed) == len(set(claimed)) == 30
        assert all(len(batch) <= 12 for batch in claims)
    finally:
        for one in stores:
            await one.close()


async def test_orphans_are_counted_and_claimed_from_every_source(store: SqlStore) -> None:
    """The heartbeat's cheap count and the claim agree on what is claimable, source by source."""
    dead = await register(store, "dead", SHORT)
    await store.commit_conference(conference("of-dead", dead))
    old_me = await register(store, "me")
    await store.commit_conference(conference("of-my-earlier-life", old_me))
    old_x = await register(store, "x")
    await store.commit_conference(conference("of-x-earlier-life", old_x))
    y = await register(store, "y")
    await store.commit_conference(conference("handed-to-x", y))
    await store.commit_conference(conference("handed-to-me", y))
    await store.commit_conference(conference("healthy", y))
    await store.commit_conference(conference("from-before-clusters", None))
    me = await register(store, "me")
    await register(store, "x")  # x restarted: its earlier life's conferences are orphans
    assert await store.hand_off_conference("handed-to-x", *y, "x", time.time())  # waits for x, alive
    assert await store.hand_off_conference("handed-to-me", *y, "me", time.time())
    await asyncio.sleep(SHORT + 0.2)
    await store.renew_node("me", me[1], LONG, NodeLoad(NodeState.UP, 0, 0), time.time())
    expected = {"of-dead", "of-my-earlier-life", "of-x-earlier-life", "handed-to-me", "from-before-clusters"}
    assert await store.count_orphans(*me, time.time()) == len(expected)
    claimed = await store.claim_conferences(*me, 100, time.time())
    assert {record.conference_id for record in claimed} == expected
    assert await store.count_orphans(*me, time.time()) == 0


async def test_a_dead_node_s_delivery_leases_end_with_its_node_lease(store: SqlStore) -> None:
    """A node that dies while posting callbacks holds them back only until its node lease ends: then
    they are due again, however long their own lease (with its epoch; a live node's are kept)."""
    dying, living = await register(store, "dying", SHORT), await register(store, "living")
    for name in ("conf-d", "conf-l"):
        await store.commit_conference(conference_record(name), [event_record(1, name)], [delivery(1, name)])
    now = time.time()
    far = now + 600.0  # the delivery lease: far longer than the node lease
    [by_dying] = (await store.claim_deliveries(now, limit=1, lease_until=far, holder=dying)).heads
    [by_living] = (await store.claim_deliveries(now, limit=1, lease_until=far, holder=living)).heads
    assert await store.release_dead_leases(time.time()) == 0  # both lives hold their node leases
    await asyncio.sleep(SHORT + 0.2)
    assert await store.release_dead_leases(time.time()) == 1
    assert await store.release_dead_leases(time.time()) == 0  # once
    [again] = (await store.claim_deliveries(time.time(), lease_until=far, holder=living)).heads
    assert again.delivery_id == by_dying.delivery_id != by_living.delivery_id
    # An outcome ends the lease: nothing of it is released when its holder dies later.
    await store.update_delivery(dataclasses.replace(again, attempts=1, next_attempt_at=far))
    await store.leave_cluster(*living)
    assert await store.release_dead_leases(time.time()) == 1  # by_living's, still leased; not `again`
