"""The delivery worker's store queries (issue 9, items 14-15), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import sqlite3
from contextlib import closing

import psycopg
import pytest
from test_store_contract import conference, delivery, event, run

from bridgeline.adapters.store import StoreIntegrityError, outbox_sql
from bridgeline.app.ports import Store
from bridgeline.app.records import ConferenceStatus, DeliveryStatus, RunEnd, RunStatus


async def test_claim_hands_out_queue_heads_and_parks_the_rest(store: Store) -> None:
    events = [event(1), event(2), event(3)]
    await store.commit_conference(conference("conf-1"), events, [delivery(1), delivery(2), delivery(3)])
    await store.commit_conference(conference("conf-2"), [event(1, "conf-2")], [delivery(1, "conf-2")])
    first, second, third = await store.list_deliveries("conf-1")
    (other,) = await store.list_deliveries("conf-2")

    claimed = (await store.claim_deliveries(now=10.0)).heads
    assert [d.delivery_id for d in claimed] == [first.delivery_id, other.delivery_id]
    parked = {d.delivery_id: d.next_attempt_at for d in await store.list_deliveries("conf-1")}
    assert parked[second.delivery_id] == parked[third.delivery_id] == outbox_sql.PARKED_AT
    assert (await store.claim_deliveries(now=10.0)).heads == [first, other]  # nothing parked is read again

    # Finishing the head makes the next one due, in the same transaction; the one after stays parked.
    await store.update_delivery(dataclasses.replace(first, status=DeliveryStatus.DELIVERED, attempts=1))
    assert [d.delivery_id for d in (await store.claim_deliveries(now=10.0)).heads] == [
        second.delivery_id,
        other.delivery_id,
    ]
    await store.update_delivery(dataclasses.replace(second, status=DeliveryStatus.FAILED, attempts=8))
    assert [d.delivery_id for d in await store.due_deliveries(now=10.0)] == [
        third.delivery_id,
        other.delivery_id,
    ]


async def test_claim_never_parks_a_head_and_pages_are_bounded(store: Store) -> None:
    for index in range(5):
        conference_id = f"conf-{index}"
        await store.commit_conference(
            conference(conference_id), [event(1, conference_id)], [delivery(1, conference_id)]
        )
    page = await store.claim_deliveries(now=10.0, limit=3)
    assert (len(page.heads), page.full) == (3, True)
    everything = await store.claim_deliveries(now=10.0, limit=100)
    assert (len(everything.heads), everything.full) == (5, False)  # heads are only read, never parked


async def test_reschedule_leases_pending_deliveries_only(store: Store) -> None:
    await store.commit_conference(conference("conf-1"), [event(1)], [delivery(1), delivery(1, url="u2")])
    first, second = await store.list_deliveries("conf-1")
    await store.update_delivery(dataclasses.replace(second, status=DeliveryStatus.DELIVERED, attempts=1))
    await store.reschedule_deliveries([(first.delivery_id, 99.0), (second.delivery_id, 99.0)])
    assert (await store.claim_deliveries(now=50.0)).heads == []
    assert [d.next_attempt_at for d in await store.list_deliveries("conf-1")] == [99.0, 0.0]
    assert [d.delivery_id for d in (await store.claim_deliveries(now=99.0)).heads] == [first.delivery_id]


async def test_advance_moves_only_a_delivery_still_due_when_it_was_put_off(store: Store) -> None:
    await store.commit_conference(conference("conf-1"), [event(1)], [delivery(1), delivery(1, url="u2")])
    first, second = await store.list_deliveries("conf-1")
    await store.reschedule_deliveries([(first.delivery_id, 99.0), (second.delivery_id, 99.0)])
    await store.reschedule_deliveries([(second.delivery_id, 120.0)])  # leased by another claim meanwhile
    await store.advance_deliveries([(first.delivery_id, 99.0, 10.0), (second.delivery_id, 99.0, 10.0)])
    assert [d.next_attempt_at for d in await store.list_deliveries("conf-1")] == [10.0, 120.0]
    done = dataclasses.replace(first, status=DeliveryStatus.DELIVERED, attempts=1, next_attempt_at=10.0)
    await store.update_delivery(done)
    await store.advance_deliveries([(first.delivery_id, 10.0, 5.0)])  # finished: left alone
    assert [d.next_attempt_at for d in await store.list_deliveries("conf-1")] == [10.0, 120.0]


def test_the_due_page_is_an_index_range_scan(store_url: str, store: Store) -> None:
    """No full scan and no sort, however large the outbox (EXPLAIN on both databases)."""
    query = outbox_sql.SELECT_DUE_PAGE.replace("?", "1e9", 1).replace("?", "200", 1)
    if store_url.startswith("sqlite:///"):
        with closing(sqlite3.connect(store_url.removeprefix("sqlite:///"))) as connection:
            plan = " | ".join(str(row[-1]) for row in connection.execute(f"EXPLAIN QUERY PLAN {query}"))
        assert "USING INDEX deliveries_pending_due" in plan, plan
        assert "deliveries_pending_queue" in plan, plan  # the "earlier pending?" probe
        assert "TEMP B-TREE" not in plan, plan  # no sort
        return
    with psycopg.connect(store_url) as connection:
        connection.execute("SET enable_seqscan = off")  # an empty table would be scanned otherwise
        plan = " | ".join(row[0] for row in connection.execute(f"EXPLAIN {query}".encode()))
    assert "deliveries_pending_due" in plan, plan
    assert "deliveries_pending_queue" in plan, plan
    assert "Sort" not in plan, plan


# --- a run ends in its conference's last commit (item 16) -----------------------------------------------


async def test_the_conference_s_last_commit_ends_its_run_atomically(store: Store) -> None:
    await store.create_run(run("run-1"))
    ended = conference("conf-1", status=ConferenceStatus.ENDED, ended_at=5.0)
    end = RunEnd("run-1", RunStatus.COMPLETED, "; conference ended (empty)", 6.0)
    await store.commit_conference(conference("conf-1"), [event(1)])
    with pytest.raises(StoreIntegrityError):  # a duplicate event: nothing of the commit is written
        await store.commit_conference(ended, [event(1)], [], end)
    still = await store.get_run("run-1")
    assert still is not None and still.status is RunStatus.RUNNING
    assert [r.run_id for r in await store.running_runs()] == ["run-1"]

    await store.commit_conference(ended, [event(2)], [], end)
    done = await store.get_run("run-1")
    assert done is not None
    assert (done.status, done.message, done.updated_at) == (
        RunStatus.COMPLETED,
        run().message + end.message_suffix,
        6.0,
    )
    assert await store.running_runs() == []
    assert not await store.end_run(end)  # ending twice changes nothing


# --- retention (item 17) -------------------------------------------------------------------------------


async def test_prune_conferences_takes_events_and_finished_deliveries_in_batches(store: Store) -> None:
    for index, ended_at in enumerate([10.0, 20.0, 30.0, None]):
        conference_id = f"conf-{index}"
        status = ConferenceStatus.LIVE if ended_at is None else ConferenceStatus.ENDED
        record = conference(conference_id, status=status, ended_at=ended_at)
        await store.commit_conference(record, [event(1, conference_id)], [delivery(1, conference_id)])
        if ended_at != 20.0:  # conf-1 keeps a pending delivery
            (queued,) = await store.list_deliveries(conference_id)
            await store.update_delivery(dataclasses.replace(queued, status=DeliveryStatus.DELIVERED))

    assert await store.prune_conferences(ended_before=100.0, limit=1) == 1  # the oldest first
    assert await store.get_conference("conf-0") is None
    assert await store.list_events("conf-0") == [] and await store.list_deliveries("conf-0") == []
    assert await store.prune_conferences(ended_before=25.0, limit=10) == 0  # conf-1 still has a pending one
    assert await store.prune_conferences(ended_before=100.0, limit=10) == 1  # conf-2; conf-3 is live
    assert [c is None for c in [await store.get_conference(f"conf-{i}") for i in range(4)]] == [
        True,
        False,
        True,
        False,
    ]
    assert len(await store.list_events("conf-1")) == 1


async def test_prune_runs_takes_finished_runs_only(store: Store) -> None:
    await store.create_run(run("old-done", status=RunStatus.COMPLETED, updated_at=10.0))
    await store.create_run(run("old-failed", status=RunStatus.FAILED, updated_at=11.0))
    await store.create_run(run("old-running", status=RunStatus.RUNNING, updated_at=10.0))
    await store.create_run(run("new-done", status=RunStatus.COMPLETED, updated_at=99.0))
    assert await store.prune_runs(finished_before=50.0, limit=1) == 1
    assert await store.prune_runs(finished_before=50.0, limit=10) == 1
    assert await store.prune_runs(finished_before=50.0, limit=10) == 0
    kept = [
        run_id
        for run_id in ("old-done", "old-failed", "old-running", "new-done")
        if await store.get_run(run_id)
    ]
    assert kept == ["old-running", "new-done"]
