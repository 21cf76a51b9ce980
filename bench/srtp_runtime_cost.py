"""What SRTP adds to the media runtime itself (not a test): N legs in 2-party conferences fed
prebuilt packets on a virtual clock (each tick a read round of one packet per leg), no sockets,
plain and SRTP (--suite, AES_CM_128_HMAC_SHA1_80 by default; `all` measures each suite) in the
same process, alternated. Prints CPU per leg-tick for each and their ratio; the sockets' cost,
which dominates the real engine, is bench_rtp_legs.py's subject.

--instructions counts CPU instructions instead (valgrind's callgrind, which the load from other
processes does not change): each mode runs twice, SHORT and LONG ticks over the same prebuilt
packets, and the difference divided by the extra leg-ticks leaves out setup and interpreter start.

valgrind hides the CPU's SHA extensions (SHA-NI) from the program it runs, so under callgrind
OpenSSL's HMAC-SHA1 takes its AVX2 path: counts for the AES_CM suites are those of a CPU without
SHA-NI (natively, with it, libsrtp's protect + unprotect take ~25% less time; docs/benchmarks.md 4b).

Run: .venv/bin/python bench/srtp_runtime_cost.py [--legs 400] [--ticks 150] [--rounds 3] [--instructions]
     [--suite AES_CM_128_HMAC_SHA1_80|AES_CM_128_HMAC_SHA1_32|AEAD_AES_128_GCM|AEAD_AES_256_GCM|all]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import struct
import sys
import time

from benchkit import callgrind_instructions

from bridgeline.core.effects import LegAudio
from bridgeline.media.runtime import Arrived, MediaRuntime
from bridgeline.media.srtp import SUITES, SrtpContext, SrtpKeys, key_length

SUITE = "AES_CM_128_HMAC_SHA1_80"
SUITE_ORDER = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM")
assert set(SUITE_ORDER) == SUITES
Feed = list[list[Arrived]]  # each tick's read round


def build(legs: int, ticks: int, suite: str | None) -> tuple[MediaRuntime, Feed]:
    """N legs; with `suite`, each keyed for it (None: plain RTP)."""
    runtime = MediaRuntime(rng=random.Random(1), origin=0.0)
    peers: dict[str, SrtpContext] = {}
    for i in range(legs):
        leg_id = f"l{i}"
        runtime.open_leg(leg_id)
        length = key_length(suite) if suite else 0
        keys = SrtpKeys(suite, os.urandom(length), os.urandom(length)) if suite else None
        remote = ("127.0.0.1", 40000 + 2 * i)
        runtime.connect_leg(
            leg_id, remote=remote, payload_type=0, telephone_event_pt=101, send=True, now=0.0, srtp=keys
        )
        if keys is not None:
            peers[leg_id] = SrtpContext(SrtpKeys(keys.suite, keys.remote_key, keys.local_key))
    for c in range(0, legs, 2):
        a, b = f"l{c}", f"l{c + 1}"
        runtime.set_routes(f"c{c}", [LegAudio(a, (b,), None), LegAudio(b, (a,), None)], {})
    header = struct.Struct("!BBHII")
    feed: Feed = []
    for t in range(ticks):
        row = []
        for i in range(legs):
            packet = header.pack(0x80, 0, t, t * 160, i + 1) + b"\xff" * 160
            if suite:
                packet = peers[f"l{i}"].protect(packet)
            row.append((f"l{i}", "rtp", packet, ("127.0.0.1", 40000 + 2 * i)))
        feed.append(row)
    return runtime, feed


def run(runtime: MediaRuntime, feed: Feed) -> float:
    """CPU microseconds per leg-tick: every packet received as one read round, then the tick."""
    start, now = time.process_time(), 0.0
    for row in feed:
        runtime.receive_all(row, now)
        runtime.tick(now)
        runtime.pop_events()
        now += 0.02
    return (time.process_time() - start) / (len(feed) * len(feed[0])) * 1e6


SHORT, LONG = 15, 75  # ticks per --instructions run


def instructions(legs: int, suite: str | None) -> float:
    """CPU instructions per leg-tick under callgrind: (LONG run - SHORT run) / extra leg-ticks."""
    counts = []
    for ticks in (SHORT, LONG):
        child = [sys.executable, __file__, "--legs", str(legs), "--child", str(ticks)]
        child += ["--suite", suite] if suite else ["--suite", "plain"]
        counts.append(callgrind_instructions(child, timeout=3600))
    return (counts[1] - counts[0]) / ((LONG - SHORT) * legs)


def child(legs: int, ticks: int, suite: str | None) -> None:
    """One run under callgrind: packets for LONG ticks are always built, `ticks` of them fed."""
    runtime, feed = build(legs, LONG, suite)
    run(runtime, feed[:ticks])
    assert runtime.counters.packets_in == legs * ticks and not runtime.counters.srtp_auth_failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=int, default=400)
    parser.add_argument("--ticks", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--suite",
        default=SUITE,
        choices=[*SUITE_ORDER, "all", "plain"],
        help="the SRTP suite, or all of them",
    )
    opts = parser.parse_args()
    suites = list(SUITE_ORDER) if opts.suite == "all" else [opts.suite]
    if opts.child is not None:
        child(opts.legs, opts.child, None if opts.suite == "plain" else opts.suite)
        return
    if opts.instructions:
        plain = instructions(opts.legs, None)
        print(f"{opts.legs} legs, callgrind: plain {plain:,.0f} instructions per leg-tick")
        for suite in suites:
            srtp = instructions(opts.legs, suite)
            print(f"  {suite}: {srtp:,.0f} (+{srtp - plain:,.0f}); ratio {plain / srtp:.0%}", flush=True)
        return
    modes: list[str | None] = [None, *suites]
    costs: dict[str | None, list[float]] = {mode: [] for mode in modes}
    for _ in range(opts.rounds):
        for mode in modes:
            costs[mode].append(run(*build(opts.legs, opts.ticks, mode)))
    plain = statistics.median(costs[None])
    print(f"{opts.legs} legs, medians of {opts.rounds}: plain {plain:.2f} us per leg-tick")
    for suite in suites:
        srtp = statistics.median(costs[suite])
        print(f"  {suite}: {srtp:.2f} us (+{srtp - plain:.2f}); ratio {plain / srtp:.0%}")


if __name__ == "__main__":
    main()
