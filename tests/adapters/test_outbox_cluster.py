"""Several processes work one outbox on PostgreSQL (issue #12): claims never hand one delivery to two
workers at once, a (conference, URL) queue still goes out in event order, and a crashed worker's leases
run out. Each worker is a store of its own (its own connection), all claiming at the same time. And the
event feed's poll stays on indexes."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

import psycopg
import pytest
from test_store_contract import conference, delivery, event

from bridgeline.adapters.store import SqlStore, feed_sql, open_store
from bridgeline.app.records import DeliveryRecord, DeliveryStatus

pytestmark = pytest.mark.postgres

WORKERS = 4
CONFERENCES = 12
EVENTS_EACH = 6
URLS = ("https://a.example/cb", "https://b.example/cb")


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
    first = open_store(postgres_url)
    await first.migrate()
    await first.close()
    yield postgres_url


async def _fill(store: SqlStore) -> None:
    """Every event in a commit of its own, so each delivery is inserted due and the ones behind a
    pending delivery must be parked by a claim (the path where claims and finishes race)."""
    for index in range(CONFERENCES):
        conference_id = f"conf-{index}"
        for seq in range(1, EVENTS_EACH + 1):
            new = [delivery(seq, conference_id, url) for url in URLS]
            await store.commit_conference(conference(conference_id), [event(seq, conference_id)], new)


async def test_concurrent_claims_attempt_each_delivery_once_at_a_time_in_queue_order(database: str) -> None:
    writer = open_store(database)
    await _fill(writer)
    workers = [open_store(database) for _ in range(WORKERS)]
    rng = random.Random(12)
    in_flight: set[int] = set()
    overlaps: list[int] = []
    delivered: Counter[int] = Counter()
    finished_seq: dict[tuple[str, str], int] = defaultdict(int)  # queue -> last seq delivered
    order_errors: list[str] = []
    total = CONFERENCES * EVENTS_EACH * len(URLS)

    async def attempt(store: SqlStore, claimed: DeliveryRecord) -> None:
        queue = (claimed.conference_id, claimed.url)
        if claimed.delivery_id in in_flight:
            overlaps.append(claimed.delivery_id)
        in_flight.add(claimed.delivery_id)
        if claimed.event_seq != finished_seq[queue] + 1:
            order_errors.append(f"{queue}: seq {claimed.event_seq} after {finished_seq[queue]}")
        await asyncio.sleep(rng.uniform(0, 0.004))
        in_flight.discard(claimed.delivery_id)
        if rng.random() < 0.2:  # a failed attempt, due again at once: it must stay its queue's head
            await store.update_delivery(dataclasses.replace(claimed, attempts=1, next_attempt_at=0.0))
            return
        finished_seq[queue] = claimed.event_seq
        delivered[claimed.delivery_id] += 1
        await store.update_delivery(dataclasses.replace(claimed, status=DeliveryStatus.DELIVERED))

    async def work(store: SqlStore) -> None:
        while sum(delivered.values()) < total:
            now = time.time()
            page = await store.claim_deliveries(now, limit=5, lease_until=now + 60.0)
            await asyncio.gather(*(attempt(store, claimed) for claimed in page.heads))
            if not page.heads:
                await asyncio.sleep(0.002)

    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(work(store) for store in workers))
    finally:
        for store in [writer, *workers]:
            await store.close()
    assert overlaps == []
    assert order_errors == []
    assert sorted(delivered.values()) == [1] * total  # every delivery delivered, once


async def test_a_crashed_worker_s_leases_run_out(database: str) -> None:
    store, crashed, survivor = open_store(database), open_store(database), open_store(database)
    try:
        await store.commit_conference(conference("conf-1"), [event(1)], [delivery(1)])
        leased = await crashed.claim_deliveries(now=100.0, lease_until=130.0)
        assert len(leased.heads) == 1
        # Another worker at the same moment gets nothing: the claim leased the head in its transaction.
        assert (await survivor.claim_deliveries(now=100.0, lease_until=130.0)).heads == []
        await crashed.close()  # the worker dies without an outcome
        assert (await survivor.claim_deliveries(now=129.0, lease_until=160.0)).heads == []
        taken = await survivor.claim_deliveries(now=130.0, lease_until=160.0)
        assert [d.delivery_id for d in taken.heads] == [d.delivery_id for d in leased.heads]
        assert taken.heads[0].next_attempt_at == 160.0
    finally:
        for one in (store, survivor):
            await one.close()


@pytest.mark.parametrize("query", ["SELECT_LIVE_MARKS", "SELECT_ENDED_MARKS"])
def test_the_feed_s_poll_reads_indexes_not_the_whole_history(database: str, query: str) -> None:
    """A poll walks the live (or recently ended) conferences by index, however many ended ones are kept."""
    text = getattr(feed_sql, query)
    for value in ("0", "0", "''", "500"):
        text = text.replace("?", value, 1)
    with psycopg.connect(database) as connection:
        connection.execute("SET enable_seqscan = off")  # an empty table would be scanned otherwise
        plan = " | ".join(row[0] for row in connection.execute(f"EXPLAIN {text}".encode()))
    index = "conferences_by_status" if query == "SELECT_LIVE_MARKS" else "conferences_ended"
    assert index in plan, plan
    assert "events_pkey" in plan, plan  # each conference's last seq: one index probe
