"""What the cluster's NOTIFYs cost a conference commit on PostgreSQL (docs/cluster.md).

One PostgreSQL database of its own (created and dropped here; 127.0.0.1:5432, user postgres, trust auth),
one LISTENing connection as another node would hold, and the same commit (a conference row, three events,
three callback deliveries) made COMMITS times by the store as shipped (events and outbox NOTIFYs in the
transaction) and by the same store without them, the two alternating over --rounds rounds in the same
run. Reports commits/s of each and their ratio (median of rounds).

Bounded: fixed commit counts. Run: .venv/bin/python bench/bench_commit_notify.py [--commits 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence

import psycopg
from benchkit import fresh_database

from bridgeline.adapters.store import PostgresStore
from bridgeline.adapters.store.base import Write
from bridgeline.app.records import ConferenceRecord, ConferenceStatus, EventRecord, NewDelivery


class SilentStore(PostgresStore):
    """The store without its NOTIFYs: what a commit cost before the cluster feed."""

    def _commit_notifications(
        self, conference: ConferenceRecord, events: Sequence[EventRecord], deliveries: Sequence[NewDelivery]
    ) -> list[Write]:
        return []


async def commits_per_second(store: PostgresStore, prefix: str, count: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        conference_id = f"{prefix}-{index}"
        record = ConferenceRecord(
            conference_id, "MA1", "p", "n", None, ConferenceStatus.LIVE, {"core": {}}, 1.0, 1.0, None
        )
        events = [EventRecord(conference_id, seq, "member_dialing", 1.0, {"seq": seq}) for seq in (1, 2, 3)]
        deliveries = [
            NewDelivery(conference_id, seq, "http://x/cb", "MA1", {"s": str(seq)}) for seq in (1, 2, 3)
        ]
        await store.commit_conference(record, events, deliveries)
    return count / (time.perf_counter() - started)


async def main(commits: int, rounds: int) -> None:
    with fresh_database() as url:
        shipped, silent = PostgresStore(url), SilentStore(url)
        await shipped.migrate()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as listener:
            await listener.execute("LISTEN bridgeline_events")
            await listener.execute("LISTEN bridgeline_outbox")
            with_notify, without = [], []
            for round_ in range(rounds):
                with_notify.append(await commits_per_second(shipped, f"n{round_}", commits))
                without.append(await commits_per_second(silent, f"s{round_}", commits))
        await shipped.close()
        await silent.close()
    a, b = statistics.median(with_notify), statistics.median(without)
    print(f"commits/s with NOTIFY: {a:.0f}  without: {b:.0f}  ratio: {a / b:.2f} (median of {rounds} rounds)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.commits, arguments.rounds))
