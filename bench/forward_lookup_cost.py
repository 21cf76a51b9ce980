"""What a forwarded request asks the store before it is replayed at the owner (docs/benchmarks.md 9).

The node that receives a request for another node's conference must learn which conference holds the
address and which node owns it. Until 2026-12-06 that was two reads through the store (the address's
conference, then its owner under a held lease); it is now one (`address_owner`, a join). Both are timed
here through the shipped store (its connection, its async path) on a fresh PostgreSQL database of this
machine, in alternating blocks, against K live conferences owned by a node whose lease holds: the two
reads as they were (the first is still the store's `conference_for_address`, the second the former
statement, kept below) against `address_owner`. Both must find the same owner, or the run fails.

Run: .venv/bin/python bench/forward_lookup_cost.py [--lookups 2000] [--rounds 5] [--conferences 100]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import benchkit as kit

from bridgeline.adapters.store import open_store
from bridgeline.adapters.store.base import SqlStore
from bridgeline.adapters.store.cluster_sql import NODE_COLUMNS, Clocked, node_from_row
from bridgeline.app.records import ConferenceRecord, ConferenceStatus, NodeRecord

KEY = ("MABENCH", "phlo-bench", "mpc-bench")
# The owner read forwarding made before the join (the baseline; the store no longer has it).
FORMER_CONFERENCE_OWNER = Clocked(
    "SELECT " + ", ".join(f"n.{column}" for column in NODE_COLUMNS) + " FROM nodes n"
    " JOIN conferences c ON c.owner_node = n.node_id AND c.owner_epoch = n.epoch"
    " WHERE c.conference_id = ? AND c.status = 'live' AND n.lease_until > {now}"
)


async def two_reads(store: SqlStore, address: str) -> NodeRecord | None:
    conference_id = await store.conference_for_address(*KEY, address)
    assert conference_id is not None
    rows = await store._read_clocked(FORMER_CONFERENCE_OWNER, (conference_id,), time.time())
    return node_from_row(rows[0]) if rows else None


async def one_read(store: SqlStore, address: str) -> NodeRecord | None:
    held = await store.address_owner(*KEY, address)
    assert held is not None
    return held.node


async def measure(url: str, lookups: int, rounds: int, conferences: int) -> dict[str, Any]:
    store = open_store(url)
    await store.migrate()
    try:
        node = await store.register_node("owner", "http://owner", None, 3600.0, time.time())
        addresses = [f"+1555{index:07d}" for index in range(conferences)]
        for index, address in enumerate(addresses):
            now = time.time()
            record = ConferenceRecord(
                conference_id=f"conf-{index}",
                auth_id=KEY[0],
                phlo_id=KEY[1],
                node_id=KEY[2],
                run_id=None,
                status=ConferenceStatus.LIVE,
                state={},
                created_at=now,
                updated_at=now,
                owner_node=node.node_id,
                owner_epoch=node.epoch,
            )
            await store.commit_conference(record, claimed=[address])
        for address in addresses[:10]:  # both paths agree
            assert await two_reads(store, address) == await one_read(store, address) is not None
        per_lookup: dict[str, list[float]] = {"two reads (before)": [], "one read (address_owner)": []}
        for _ in range(rounds):
            for label, lookup in (("two reads (before)", two_reads), ("one read (address_owner)", one_read)):
                start = time.perf_counter()
                for i in range(lookups):
                    await lookup(store, addresses[i % conferences])
                per_lookup[label].append((time.perf_counter() - start) / lookups * 1e6)
    finally:
        await store.close()
    medians = {label: statistics.median(values) for label, values in per_lookup.items()}
    before, after = medians["two reads (before)"], medians["one read (address_owner)"]
    return {
        "lookups_per_block": lookups,
        "rounds": rounds,
        "conferences": conferences,
        "us_per_lookup_by_round": {k: [round(v, 1) for v in vs] for k, vs in per_lookup.items()},
        "median_us_per_lookup": {k: round(v, 1) for k, v in medians.items()},
        "ratio_after_over_before": round(after / before, 3),
    }


async def main(opts: argparse.Namespace) -> None:
    result: dict[str, Any] = {"machine": kit.machine(), "loadavg_start": kit.loadavg()}
    with kit.fresh_database() as url:
        result.update(await measure(url, opts.lookups, opts.rounds, opts.conferences))
    result["loadavg_end"] = kit.loadavg()
    result["command"] = (
        f".venv/bin/python bench/forward_lookup_cost.py --lookups {opts.lookups} --rounds {opts.rounds}"
        f" --conferences {opts.conferences}"
    )
    kit.write_result(opts.out, "forward_lookup", result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=2000, help="lookups per block")
    parser.add_argument("--rounds", type=int, default=5, help="alternated blocks of each")
    parser.add_argument("--conferences", type=int, default=100)
    parser.add_argument("--out", default=None)
    asyncio.run(main(parser.parse_args()))
