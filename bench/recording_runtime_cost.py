"""What recording every conference adds to the media runtime (not a test): N legs in 2-party
conferences fed prebuilt G.711 packets on a virtual clock, no sockets; unrecorded, then every
conference recorded with its audio handed to the real RecordingWriters (WAV, then MP3), as the SIP
media thread does (a chunk of up to 10 frames per recording, as `pop_recorded` returns them). Modes
alternate in each round; prints CPU per leg-tick (this thread: the tick and `write`; and the whole
process, the writer thread's file and encoder work included) and the ratios to the unrecorded mode.
The sockets' cost, which dominates the real engine, is bench_rtp_legs.py's subject, so the ratios
here are the runtime's worst case.

--instructions counts CPU instructions instead (valgrind's callgrind, unaffected by other processes'
load): each mode runs SHORT and LONG ticks, the difference divided by the extra leg-ticks.

Run: .venv/bin/python bench/recording_runtime_cost.py [--legs 400] [--ticks 150] [--rounds 3] [--instructions]
"""

from __future__ import annotations

import argparse
import random
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchkit import callgrind_instructions

from bridgeline.adapters.recordings.files import RecordingFormat
from bridgeline.adapters.recordings.writers import RecordingWriters
from bridgeline.core.effects import LegAudio
from bridgeline.media.runtime import MediaRuntime

Feed = list[list[tuple[str, bytes, tuple[str, int]]]]
MODES = ("none", "wav", "mp3")


def build(legs: int, ticks: int, record: bool) -> tuple[MediaRuntime, Feed]:
    runtime = MediaRuntime(rng=random.Random(1), origin=0.0)
    for i in range(legs):
        runtime.open_leg(f"l{i}")
        remote = ("127.0.0.1", 40000 + 2 * i)
        runtime.connect_leg(
            f"l{i}", remote=remote, payload_type=0, telephone_event_pt=101, send=True, now=0.0
        )
    for c in range(0, legs, 2):
        a, b = f"l{c}", f"l{c + 1}"
        runtime.set_routes(f"c{c}", [LegAudio(a, (b,), None), LegAudio(b, (a,), None)], {})
        if record:
            runtime.set_tap(f"c{c}", f"r{c}", [a, b])
    header = struct.Struct("!BBHII")
    feed: Feed = []
    for t in range(ticks):
        # A tone-like payload (not silence), so the mix does real sums.
        payload = bytes((37 * (t + k)) & 0x7F for k in range(160))
        feed.append(
            [
                (f"l{i}", header.pack(0x80, 0, t, t * 160, i + 1) + payload, ("127.0.0.1", 40000 + 2 * i))
                for i in range(legs)
            ]
        )
    return runtime, feed


def run(legs: int, ticks: int, mode: str, folder: Path) -> tuple[float, float]:
    """(CPU us per leg-tick of this thread, of the whole process) for one mode. The process's CPU is
    taken once the writer thread has written every frame queued (a marker recording's close is
    answered after them), before the recordings' closes: a close (fsync, rename) is a cost per
    recording, not per tick (docs/benchmarks.md 12)."""
    runtime, feed = build(legs, ticks, mode != "none")
    drained = threading.Event()
    writers = RecordingWriters(lambda rid, *_: rid == "marker" and drained.set()) if mode != "none" else None
    if writers is not None:
        for c in range(0, legs, 2):
            writers.open(f"r{c}", folder / f"r{c}-{mode}.{mode}", RecordingFormat(mode), 8000, 1)
    thread_start, process_start, now = time.thread_time(), time.process_time(), 0.0
    for row in feed:
        for leg_id, packet, source in row:
            runtime.receive(leg_id, "rtp", packet, source, now)
        runtime.tick(now)
        runtime.pop_events()
        for recording_id, pcm in runtime.pop_recorded():
            assert writers is not None
            writers.write(recording_id, pcm)
        now += 0.02
    thread = time.thread_time() - thread_start
    if writers is not None:  # the last partial block stays in the runtime: a cost of the next block
        writers.open("marker", folder / f"marker-{mode}.wav", RecordingFormat.WAV, 8000, 1)
        writers.close("marker")
        assert drained.wait(600)
    process = time.process_time() - process_start
    if writers is not None:
        for c in range(0, legs, 2):
            writers.close(f"r{c}")
        writers.stop()
    leg_ticks = len(feed) * legs
    return thread / leg_ticks * 1e6, process / leg_ticks * 1e6


SHORT, LONG = 15, 75


def instructions(legs: int, mode: str) -> float:
    counts = []
    for ticks in (SHORT, LONG):
        child = [sys.executable, __file__, "--legs", str(legs), "--child", str(ticks), "--mode", mode]
        counts.append(callgrind_instructions(child, timeout=1800))
    return (counts[1] - counts[0]) / ((LONG - SHORT) * legs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=int, default=400)
    parser.add_argument("--ticks", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="none", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if opts.child is not None:
            run(opts.legs, opts.child, opts.mode, Path(folder))
            return
        if opts.instructions:
            counts = {mode: instructions(opts.legs, mode) for mode in MODES}
            base = counts["none"]
            print(
                f"{opts.legs} legs, callgrind (the whole process, writer thread included), instructions per"
                " leg-tick: " + ", ".join(f"{m} {counts[m]:,.0f} ({counts[m] / base:.2f}x)" for m in MODES)
            )
            return
        costs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
        for _ in range(opts.rounds):
            for mode in MODES:
                costs[mode].append(run(opts.legs, opts.ticks, mode, Path(folder)))
    tick = {m: statistics.median(c[0] for c in costs[m]) for m in MODES}
    whole = {m: statistics.median(c[1] for c in costs[m]) for m in MODES}
    print(
        f"{opts.legs} legs, {opts.ticks} ticks, medians of {opts.rounds} alternated rounds"
        " (CPU us per leg-tick):"
    )
    for mode in MODES:
        print(
            f"  {mode:>4}: tick thread {tick[mode]:.2f} ({tick[mode] / tick['none']:.2f}x),"
            f" whole process {whole[mode]:.2f} ({whole[mode] / whole['none']:.2f}x)"
        )


if __name__ == "__main__":
    main()
