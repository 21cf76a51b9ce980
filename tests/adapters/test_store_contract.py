"""The store contract, run against every adapter (see conftest: SQLite and PostgreSQL): every part of the
app's `Store` (app/ports.py) and the sim carrier's `PhoneBook`."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from bridgeline.adapters.store import StoreIntegrityError, open_store
from bridgeline.adapters.store.base import SqlStore, Write
from bridgeline.adapters.store.sql import load_migrations
from bridgeline.app.records import (
    Account,
    ConferenceRecord,
    ConferenceStatus,
    DeliveryRecord,
    DeliveryStatus,
    EventRecord,
    NewDelivery,
    PhloRecord,
    RunRecord,
    RunStatus,
)

RawQuery = Callable[[str], list[tuple[Any, ...]]]

UNICODE = "Zoë ☎ 会議 🎧"
NESTED = {
    "nodes": [{"id": "n1", "params": {"mix": [1, 2.5, None, True, UNICODE]}}],
    "empty": {},
    "deep": {"a": {"b": {"c": []}}},
}


def phlo(phlo_id: str = "phlo-1", *, auth_id: str = "MA1", created_at: float = 1700000000.25) -> PhloRecord:
    return PhloRecord(
        phlo_id=phlo_id, auth_id=auth_id, name=UNICODE, definition=NESTED, created_at=created_at
    )


def run(run_id: str = "run-1", **changes: Any) -> RunRecord:
    record = RunRecord(
        run_id=run_id,
        phlo_id="phlo-1",
        auth_id="MA1",
        payload={"from": "+15550100", "vars": NESTED},
        status=RunStatus.RUNNING,
        message=UNICODE,
        conference_ids=("conf-a", "conf-b"),
        created_at=1700000000.5,
        updated_at=1700000001.75,
    )
    return dataclasses.replace(record, **changes)


def conference(conference_id: str = "conf-1", **changes: Any) -> ConferenceRecord:
    record = ConferenceRecord(
        conference_id=conference_id,
        auth_id="MA1",
        phlo_id="phlo-1",
        node_id="node-1",
        run_id="run-1",
        status=ConferenceStatus.LIVE,
        state={"members": [{"address": "+15550100", "role": UNICODE}], "nested": NESTED},
        created_at=1700000000.125,
        updated_at=1700000002.5,
        ended_at=None,
    )
    return dataclasses.replace(record, **changes)


def event(seq: int, conference_id: str = "conf-1", *, at: float = 1700000003.0) -> EventRecord:
    return EventRecord(
        conference_id=conference_id, seq=seq, type="member.joined", at=at, data={"seq": seq, "n": NESTED}
    )


def delivery(seq: int, conference_id: str = "conf-1", url: str = "https://hooks.example/cb") -> NewDelivery:
    return NewDelivery(
        conference_id=conference_id,
        event_seq=seq,
        url=url,
        auth_id="MA1",
        params={"Event": UNICODE, "Seq": str(seq)},
    )


# --- migrations --------------------------------------------------------------------------------------------


async def test_migrate_twice_is_harmless(store: SqlStore, raw_query: RawQuery) -> None:
    await store.put_account(Account("MA1", "token", 1.0))
    await store.migrate()
    await store.migrate()
    assert await store.get_account("MA1") == Account("MA1", "token", 1.0)
    versions = raw_query("SELECT version FROM schema_migrations ORDER BY version")
    assert versions == [(migration.version,) for migration in load_migrations("sqlite")]


async def test_concurrent_migrations_from_separate_connections(store_url: str, raw_query: RawQuery) -> None:
    stores = [open_store(store_url) for _ in range(4)]
    try:
        await asyncio.gather(*(store.migrate() for store in stores))
        await stores[0].put_sim_phone("MA1", "+1", {"answer": True})
        assert await stores[-1].list_sim_phones() == {("MA1", "+1"): {"answer": True}}
    finally:
        for store in stores:
            await store.close()
    assert len(raw_query("SELECT version FROM schema_migrations")) == len(load_migrations("sqlite"))


async def test_upgrade_from_0001_carries_phlos_over_per_account(store_url: str, raw_query: RawQuery) -> None:
    """A database created by migration 0001, with data in it, upgrades in place."""
    old = open_store(store_url)
    assert isinstance(old, SqlStore)
    try:
        first = load_migrations(old.dialect)[0]
        assert first.name.startswith("0001_")
        await old._apply_migration(first)  # what a server of the 0001 era created
        await old.put_account(Account("MA1", "token", 1.0))
        await old.create_phlo(phlo("support", auth_id="MA1"))
        await old.create_phlo(phlo("sales", auth_id="MA2", created_at=3.0))
        await old.put_account(Account("MA2", "token-2", 2.0))
        await old.commit_conference(conference(phlo_id="support"), [event(1)])
        await old._write(
            [Write("INSERT INTO sim_phones (address, behaviour) VALUES (?, ?)", [("+1", '{"a": 1}')])]
        )
        with pytest.raises(StoreIntegrityError):  # 0001: ids are global
            await old.create_phlo(phlo("support", auth_id="MA2"))
        await old.migrate()
        assert await old.get_phlo("MA1", "support") == phlo("support", auth_id="MA1")
        assert await old.get_phlo("MA2", "sales") == phlo("sales", auth_id="MA2", created_at=3.0)
        assert [c.conference_id for c in await old.list_conferences("MA1", "support", "node-1")] == ["conf-1"]
        # a phone of the shared 0001 table now belongs to every account that existed
        assert await old.list_sim_phones() == {("MA1", "+1"): {"a": 1}, ("MA2", "+1"): {"a": 1}}
        # ...and ids are now per account
        await old.create_phlo(phlo("support", auth_id="MA2"))
        assert await old.get_phlo("MA2", "support") == phlo("support", auth_id="MA2")
        with pytest.raises(StoreIntegrityError):
            await old.create_phlo(phlo("support", auth_id="MA2"))
    finally:
        await old.close()
    versions = raw_query("SELECT version FROM schema_migrations ORDER BY version")
    assert versions == [(migration.version,) for migration in load_migrations("sqlite")]


# --- accounts, PHLOs, runs ------------------------------------------------------------------------------


async def test_missing_records_read_as_none_or_empty(store: SqlStore) -> None:
    assert await store.get_account("nope") is None
    assert await store.get_phlo("MA1", "nope") is None
    assert await store.get_run("nope") is None
    assert await store.get_conference("nope") is None
    assert await store.list_phlos("nope") == []
    assert await store.list_conferences("MA1", "nope", "nope") == []
    assert await store.load_live_conferences() == []
    assert await store.list_events("nope") == []
    assert await store.due_deliveries(now=1e12) == []
    assert await store.list_deliveries("nope") == []
    assert await store.list_sim_phones() == {}


async def test_put_account_upserts(store: SqlStore) -> None:
    await store.put_account(Account("MA1", "first", 1.5))
    await store.put_account(Account("MA1", UNICODE, 2.5))
    await store.put_account(Account("MA2", "other", 3.0))
    assert await store.get_account("MA1") == Account("MA1", UNICODE, 2.5)
    assert await store.get_account("MA2") == Account("MA2", "other", 3.0)


async def test_delete_account_removes_that_account_only(store: SqlStore) -> None:
    await store.put_account(Account("MA1", "first", 1.5))
    await store.put_account(Account("MA2", "other", 3.0))
    assert await store.delete_account("MA1") is True
    assert await store.delete_account("MA1") is False
    assert await store.get_account("MA1") is None
    assert await store.get_account("MA2") == Account("MA2", "other", 3.0)


async def test_phlo_round_trip_listing_and_delete(store: SqlStore) -> None:
    await store.create_phlo(phlo("phlo-b", created_at=20.0))
    await store.create_phlo(phlo("phlo-a", created_at=10.0))
    await store.create_phlo(phlo("phlo-x", auth_id="MA2"))
    assert await store.get_phlo("MA1", "phlo-a") == phlo("phlo-a", created_at=10.0)
    assert await store.get_phlo("MA2", "phlo-a") is None
    assert [p.phlo_id for p in await store.list_phlos("MA1")] == ["phlo-a", "phlo-b"]
    assert [p.phlo_id for p in await store.list_phlos("MA2")] == ["phlo-x"]

    assert await store.delete_phlo("MA2", "phlo-a") is False  # another account's id is not theirs to delete
    assert await store.delete_phlo("MA1", "phlo-a") is True
    assert await store.delete_phlo("MA1", "phlo-a") is False
    assert await store.get_phlo("MA1", "phlo-a") is None
    assert [p.phlo_id for p in await store.list_phlos("MA1")] == ["phlo-b"]


async def test_create_phlo_refuses_a_duplicate_id(store: SqlStore) -> None:
    await store.create_phlo(phlo())
    with pytest.raises(StoreIntegrityError):
        await store.create_phlo(dataclasses.replace(phlo(), name="other"))
    assert await store.get_phlo("MA1", "phlo-1") == phlo()


async def test_two_accounts_may_use_the_same_phlo_id(store: SqlStore) -> None:
    await store.create_phlo(phlo("support", auth_id="MA1"))
    await store.create_phlo(phlo("support", auth_id="MA2", created_at=5.0))
    assert await store.get_phlo("MA1", "support") == phlo("support", auth_id="MA1")
    assert await store.get_phlo("MA2", "support") == phlo("support", auth_id="MA2", created_at=5.0)
    assert await store.delete_phlo("MA2", "support") is True
    assert await store.get_phlo("MA1", "support") == phlo("support", auth_id="MA1")


async def test_deleting_a_phlo_keeps_its_history(store: SqlStore) -> None:
    await store.create_phlo(phlo())
    await store.create_run(run())
    await store.commit_conference(conference(), [event(1)], [delivery(1)])
    assert await store.delete_phlo("MA1", "phlo-1") is True
    assert await store.get_run("run-1") == run()
    assert await store.get_conference("conf-1") == conference()
    assert len(await store.list_events("conf-1")) == 1


async def test_run_round_trip_and_update(store: SqlStore) -> None:
    await store.create_run(run())
    assert await store.get_run("run-1") == run()
    empty = run("run-2", conference_ids=(), payload={})
    await store.create_run(empty)
    assert await store.get_run("run-2") == empty

    finished = run(status=RunStatus.COMPLETED, message="done", conference_ids=("conf-a",), updated_at=9e9)
    await store.update_run(finished)
    assert await store.get_run("run-1") == finished
    assert await store.get_run("run-2") == empty


async def test_run_create_twice_or_update_missing_fails(store: SqlStore) -> None:
    await store.create_run(run())
    with pytest.raises(StoreIntegrityError):
        await store.create_run(run(message="again"))
    with pytest.raises(LookupError):
        await store.update_run(run("ghost"))
    assert await store.get_run("run-1") == run()


# --- conferences and events -----------------------------------------------------------------------------


async def test_conference_round_trip_with_and_without_optionals(store: SqlStore) -> None:
    bare = conference("conf-bare", run_id=None, ended_at=None, state={})
    ended = conference("conf-ended", status=ConferenceStatus.ENDED, ended_at=1700000009.875)
    await store.commit_conference(bare)
    await store.commit_conference(ended)
    assert await store.get_conference("conf-bare") == bare
    assert await store.get_conference("conf-ended") == ended


async def test_commit_conference_upserts_and_appends_events(store: SqlStore) -> None:
    await store.commit_conference(conference(), [event(1), event(2)])
    changed = conference(state={"members": []}, updated_at=1700000005.0)
    await store.commit_conference(changed, [event(3)])
    assert await store.get_conference("conf-1") == changed
    assert await store.list_events("conf-1") == [event(1), event(2), event(3)]


async def test_events_come_back_in_seq_order_per_conference(store: SqlStore) -> None:
    await store.commit_conference(conference("conf-1"), [event(3), event(1), event(2)])
    await store.commit_conference(conference("conf-2"), [event(1, "conf-2"), event(2, "conf-2")])
    assert [e.seq for e in await store.list_events("conf-1")] == [1, 2, 3]
    assert await store.list_events("conf-1", after_seq=1) == [event(2), event(3)]
    assert await store.list_events("conf-1", after_seq=3) == []
    assert await store.list_events("conf-2") == [event(1, "conf-2"), event(2, "conf-2")]


async def test_a_duplicate_seq_fails_the_whole_commit(store: SqlStore) -> None:
    await store.commit_conference(conference(), [event(1)], [delivery(1)])
    before = await store.list_deliveries("conf-1")

    ended = conference(status=ConferenceStatus.ENDED, ended_at=1700000010.0)
    with pytest.raises(StoreIntegrityError):
        await store.commit_conference(ended, [event(2), event(1)], [delivery(2)])
    with pytest.raises(StoreIntegrityError):
        await store.commit_conference(ended, [event(5), event(5)], [delivery(5)])

    assert await store.get_conference("conf-1") == conference()
    assert await store.list_events("conf-1") == [event(1)]
    assert await store.list_deliveries("conf-1") == before
    # The failed transactions left the connection usable.
    await store.commit_conference(ended, [event(2)])
    assert await store.get_conference("conf-1") == ended


async def test_list_conferences_filters_orders_and_limits(store: SqlStore) -> None:
    for index in range(5):
        status = ConferenceStatus.LIVE if index % 2 == 0 else ConferenceStatus.ENDED
        await store.commit_conference(conference(f"conf-{index}", created_at=100.0 + index, status=status))
    await store.commit_conference(conference("other-node", node_id="node-2"))
    await store.commit_conference(conference("other-phlo", phlo_id="phlo-2"))
    await store.commit_conference(conference("other-account", auth_id="MA2"))

    listed = await store.list_conferences("MA1", "phlo-1", "node-1")
    assert [c.conference_id for c in listed] == ["conf-4", "conf-3", "conf-2", "conf-1", "conf-0"]
    live = await store.list_conferences("MA1", "phlo-1", "node-1", live_only=True)
    assert [c.conference_id for c in live] == ["conf-4", "conf-2", "conf-0"]
    assert [c.conference_id for c in await store.list_conferences("MA1", "phlo-1", "node-1", limit=2)] == [
        "conf-4",
        "conf-3",
    ]
    limited_live = await store.list_conferences("MA1", "phlo-1", "node-1", live_only=True, limit=1)
    assert [c.conference_id for c in limited_live] == ["conf-4"]
    assert [c.conference_id for c in await store.list_conferences("MA1", "phlo-1", "node-2")] == [
        "other-node"
    ]
    assert [c.conference_id for c in await store.list_conferences("MA2", "phlo-1", "node-1")] == [
        "other-account"
    ]


async def test_load_live_conferences_skips_ended_ones(store: SqlStore) -> None:
    await store.commit_conference(conference("conf-live-1", created_at=1.0))
    await store.commit_conference(conference("conf-ended", status=ConferenceStatus.ENDED, ended_at=3.0))
    await store.commit_conference(conference("conf-live-2", phlo_id="phlo-9", created_at=2.0))
    live = await store.load_live_conferences()
    assert [c.conference_id for c in live] == ["conf-live-1", "conf-live-2"]
    assert live[0] == conference("conf-live-1", created_at=1.0)


# --- deliveries -----------------------------------------------------------------------------------------


async def test_new_deliveries_are_pending_and_due_at_once(store: SqlStore) -> None:
    await store.commit_conference(
        conference(), [event(1)], [delivery(1), delivery(1, url="https://b.example/")]
    )
    queued = await store.list_deliveries("conf-1")
    assert len(queued) == 2
    assert queued[0].delivery_id < queued[1].delivery_id
    assert queued[0] == DeliveryRecord(
        delivery_id=queued[0].delivery_id,
        conference_id="conf-1",
        event_seq=1,
        url="https://hooks.example/cb",
        auth_id="MA1",
        params={"Event": UNICODE, "Seq": "1"},
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=0.0,
        last_status_code=None,
        last_error=None,
        updated_at=0.0,
        history=(),
    )
    # Different URLs are separate queues, so both heads are due.
    assert await store.due_deliveries(now=0.0) == queued


async def test_due_deliveries_orders_filters_and_limits(store: SqlStore) -> None:
    await store.commit_conference(conference("conf-1"), [event(1)], [delivery(1), delivery(1, url="u2")])
    await store.commit_conference(conference("conf-2"), [event(1, "conf-2")], [delivery(1, "conf-2")])
    first, second = await store.list_deliveries("conf-1")
    (third,) = await store.list_deliveries("conf-2")
    assert await store.due_deliveries(now=10.0) == [first, second, third]
    assert await store.due_deliveries(now=10.0, limit=2) == [first, second]

    await store.update_delivery(dataclasses.replace(first, status=DeliveryStatus.DELIVERED, attempts=1))
    await store.update_delivery(dataclasses.replace(second, attempts=1, next_attempt_at=50.0))
    assert await store.due_deliveries(now=10.0) == [third]
    assert [d.delivery_id for d in await store.due_deliveries(now=50.0)] == [
        second.delivery_id,
        third.delivery_id,
    ]


async def test_due_deliveries_hand_out_one_conference_url_queue_in_event_order(store: SqlStore) -> None:
    await store.commit_conference(conference("conf-1"), [event(1), event(2)], [delivery(1), delivery(2)])
    await store.commit_conference(conference("conf-1"), [event(3)], [delivery(3)])
    first, second, third = await store.list_deliveries("conf-1")

    async def due_ids() -> list[int]:
        return [d.delivery_id for d in await store.due_deliveries(now=10.0)]

    assert await due_ids() == [first.delivery_id]
    # The head waits for a retry: the later events of that queue wait behind it.
    await store.update_delivery(dataclasses.replace(first, attempts=1, next_attempt_at=50.0))
    assert await due_ids() == []
    await store.update_delivery(dataclasses.replace(first, status=DeliveryStatus.DELIVERED, attempts=2))
    assert await due_ids() == [second.delivery_id]
    # A delivery that gave up unblocks the queue as well.
    await store.update_delivery(dataclasses.replace(second, status=DeliveryStatus.FAILED, attempts=8))
    assert await due_ids() == [third.delivery_id]


async def test_update_delivery_overwrites_progress(store: SqlStore) -> None:
    await store.commit_conference(conference(), [event(1)], [delivery(1)])
    (queued,) = await store.list_deliveries("conf-1")
    attempt = {"at": 12.5, "status_code": 503, "error": UNICODE, "headers": {"retry-after": ["5"]}}
    retrying = dataclasses.replace(
        queued,
        attempts=7,
        next_attempt_at=99.5,
        last_status_code=503,
        last_error=UNICODE,
        updated_at=12.5,
        history=(attempt, {"at": 13.0, "status_code": None}),
    )
    await store.update_delivery(retrying)
    assert await store.list_deliveries("conf-1") == [retrying]

    failed = dataclasses.replace(retrying, status=DeliveryStatus.FAILED, attempts=8, history=())
    await store.update_delivery(failed)
    assert await store.list_deliveries("conf-1") == [failed]


async def test_a_finished_delivery_is_never_overwritten(store: SqlStore) -> None:
    """A node whose lease ran out may report its attempt after another node finished the delivery."""
    await store.commit_conference(conference(), [event(1)], [delivery(1)])
    (queued,) = await store.list_deliveries("conf-1")
    delivered = dataclasses.replace(queued, status=DeliveryStatus.DELIVERED, attempts=1, last_status_code=200)
    await store.update_delivery(delivered)
    late = dataclasses.replace(queued, attempts=1, next_attempt_at=50.0, last_error="timeout")
    with pytest.raises(LookupError):
        await store.update_delivery(late)
    assert await store.list_deliveries("conf-1") == [delivered]


async def test_update_delivery_of_an_unknown_id_fails(store: SqlStore) -> None:
    await store.commit_conference(conference(), [event(1)], [delivery(1)])
    (queued,) = await store.list_deliveries("conf-1")
    with pytest.raises(LookupError):
        await store.update_delivery(dataclasses.replace(queued, delivery_id=queued.delivery_id + 1000))


# --- simulated phones (the sim carrier's PhoneBook) -----------------------------------------------------


async def test_sim_phones_upsert_per_account(store: SqlStore) -> None:
    await store.put_sim_phone("MA1", "+15550100", {"answer_after": 1.5, "script": NESTED})
    await store.put_sim_phone("MA1", "sip:zoë@example.org", {"busy": True})
    await store.put_sim_phone("MA2", "+15550100", {"busy": True})
    await store.put_sim_phone("MA1", "+15550100", {"reject": UNICODE})
    assert await store.list_sim_phones() == {
        ("MA1", "+15550100"): {"reject": UNICODE},
        ("MA1", "sip:zoë@example.org"): {"busy": True},
        ("MA2", "+15550100"): {"busy": True},
    }


# --- durability and concurrency -------------------------------------------------------------------------


async def test_everything_survives_a_restart(store_url: str) -> None:
    first = open_store(store_url)
    await first.migrate()
    await first.put_account(Account("MA1", "token", 1.0))
    await first.create_phlo(phlo())
    await first.create_run(run())
    await first.commit_conference(conference(), [event(1), event(2)], [delivery(1), delivery(2)])
    await first.put_sim_phone("MA1", "+1", {"answer": True})
    deliveries = await first.list_deliveries("conf-1")
    await first.close()

    second = open_store(store_url)
    await second.migrate()
    try:
        assert await second.get_account("MA1") == Account("MA1", "token", 1.0)
        assert await second.get_phlo("MA1", "phlo-1") == phlo()
        assert await second.get_run("run-1") == run()
        assert await second.get_conference("conf-1") == conference()
        assert await second.list_events("conf-1") == [event(1), event(2)]
        assert await second.list_deliveries("conf-1") == deliveries
        assert await second.list_sim_phones() == {("MA1", "+1"): {"answer": True}}
        # Ids keep growing after a restart.
        await second.commit_conference(conference(), [event(3)], [delivery(3)])
        assert (await second.list_deliveries("conf-1"))[-1].delivery_id > deliveries[-1].delivery_id
    finally:
        await second.close()


async def test_concurrent_commits_all_land(store: SqlStore) -> None:
    count = 50

    async def commit(index: int) -> None:
        conference_id = f"conf-{index:02d}"
        events = [event(1, conference_id), event(2, conference_id)]
        await store.commit_conference(conference(conference_id), events, [delivery(2, conference_id)])

    await asyncio.gather(*(commit(index) for index in range(count)))

    live = await store.load_live_conferences()
    assert sorted(c.conference_id for c in live) == [f"conf-{index:02d}" for index in range(count)]
    for record in live:
        assert [e.seq for e in await store.list_events(record.conference_id)] == [1, 2]
    due = await store.due_deliveries(now=0.0, limit=1000)
    assert len(due) == count
    assert len({d.delivery_id for d in due}) == count


async def test_a_bad_commit_among_concurrent_ones_fails_alone(store: SqlStore) -> None:
    await store.commit_conference(conference("conf-00"), [event(1, "conf-00")])

    async def commit(index: int) -> None:
        conference_id = f"conf-{index:02d}"
        await store.commit_conference(conference(conference_id), [event(2, conference_id)])

    async def duplicate() -> None:
        await store.commit_conference(conference("conf-00"), [event(1, "conf-00")])

    results = await asyncio.gather(
        *(commit(i) for i in range(1, 10)),
        duplicate(),
        *(commit(i) for i in range(10, 20)),
        return_exceptions=True,
    )
    assert [type(r) for r in results] == [type(None)] * 9 + [StoreIntegrityError] + [type(None)] * 10
    for index in range(1, 20):
        assert [e.seq for e in await store.list_events(f"conf-{index:02d}")] == [2]
    assert [e.seq for e in await store.list_events("conf-00")] == [1]
