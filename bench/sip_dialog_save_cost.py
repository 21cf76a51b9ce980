"""Micro-measure: what saving one SIP leg's dialog costs (docs/sip.md, "Recovering calls"), against
the write every conference input already makes, measured in the same run.

A save happens when an answered leg's dialog changes (its answer, a re-INVITE or UPDATE, a session
refresh, a NOTIFY: a few per call, never per RTP packet). It is the pure part on the SIP path
(`SipEndpoint.saved_dialog` + `to_json`, in the event loop after a batch of SIP traffic), then one
upsert in the keeper's writer task (`put_sip_dialog`). The baseline is `commit_conference` of a
2-member conference's snapshot with one event, on the same store.

Run: .venv/bin/python bench/sip_dialog_save_cost.py [--postgres URL] [--writes 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from bridgeline.adapters.store import open_store
from bridgeline.adapters.store.base import SqlStore
from bridgeline.app.records import ConferenceRecord, ConferenceStatus, EventRecord

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sip"))
from test_sip_endpoint import PHONE_ADDR, EpNode, Net, Phone, answered_outbound, make_endpoint


def export_cost_us(repeat: int) -> float:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(PHONE_ADDR))
    answered_outbound(net, node, phone)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            saved = node.ep.saved_dialog("leg1")
            assert saved is not None
            saved.to_json()
        best = min(best, time.perf_counter() - start)
    return best / repeat * 1e6


async def write_costs_ms(store: SqlStore, writes: int) -> tuple[float, float]:
    """(per dialog upsert, per conference commit) in ms, interleaved so both see the same load."""
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(PHONE_ADDR))
    answered_outbound(net, node, phone)
    saved = node.ep.saved_dialog("leg1")
    assert saved is not None
    dialog = saved.to_json()
    members = [{"address": f"+1555010{n}", "role": "agent", "leg_id": f"leg-{n}"} for n in range(2)]
    dialog_s = commit_s = 0.0
    rng = random.Random(1)
    for n in range(writes):
        conference = ConferenceRecord(
            f"conf-{n % 50}", "MA1", "phlo-1", "node-1", None, ConferenceStatus.LIVE,
            {"members": members, "n": n}, 1.0, 2.0,
        )  # fmt: skip
        event = EventRecord(conference.conference_id, n + 1, "member.hold", 2.0, {"n": n})
        order = [0, 1]
        rng.shuffle(order)
        for which in order:
            start = time.perf_counter()
            if which == 0:
                await store.put_sip_dialog(f"leg-{n % 100}", "conf-1", {**dialog, "local_seq": n}, 2.0)
                dialog_s += time.perf_counter() - start
            else:
                await store.commit_conference(conference, [event])
                commit_s += time.perf_counter() - start
    return dialog_s / writes * 1e3, commit_s / writes * 1e3


async def measure(url: str, writes: int) -> tuple[float, float]:
    store = open_store(url)
    await store.migrate()
    try:
        return await write_costs_ms(store, writes)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="a PostgreSQL database URL to measure too (it is written to)")
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5000)
    args = parser.parse_args()
    print(f"saved_dialog() + to_json(): {export_cost_us(args.repeat):.1f} us per save (SIP path)")
    with tempfile.TemporaryDirectory() as folder:
        urls = [("SQLite", f"sqlite:///{folder}/bench.db")]
        if args.postgres:
            urls.append(("PostgreSQL", args.postgres))
        for name, url in urls:
            dialog_ms, commit_ms = asyncio.run(measure(url, args.writes))
            print(
                f"{name}: put_sip_dialog {dialog_ms:.3f} ms, commit_conference {commit_ms:.3f} ms"
                f" (x{dialog_ms / commit_ms:.2f}), {args.writes} each"
            )


if __name__ == "__main__":
    main()
