"""Micro-measure: what recording costs per 20 ms frame, for the writer alone (WAV and MP3).

R recordings, each fed T frames of 20 ms (8 kHz mono, 320 bytes) in tick order, as the media tick
would: `write` for every recording, then the next tick. Measured, in the same run:
- caller: CPU time of the feeding thread per frame (what the tick pays: the enqueue), against the
  same loop with no recording (the baseline);
- process: CPU time of the whole process per frame (the writer thread's WAV writes or LAME encoding
  included), from the first write until the writer has taken the last frame, minus the baseline loop;
- close: wall time per recording to finish (LAME's last frames, header, fsync, rename), apart.
--instructions counts CPU instructions instead (valgrind's callgrind, which the load from other
processes does not change): (LONG run - SHORT run) / extra frames, per format and for no recording.
The engine-level figure (CPU per leg-tick with every conference recorded) is rec-core's benchmark.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_recording.py [--recordings 100] [--frames 500]
     [--instructions]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from benchkit import callgrind_instructions

from bridgeline.adapters.recordings import RecordingFileInfo, RecordingFormat, RecordingWriters

FRAME_SAMPLES = 160
MODES = ("none", "wav", "mp3")


def _frames(count: int) -> list[bytes]:
    t = np.arange(count * FRAME_SAMPLES) / 8000
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()
    return [pcm[i * 320 : (i + 1) * 320] for i in range(count)]


def run(mode: str, recordings: int, frames: list[bytes], directory: Path) -> tuple[float, float, float]:
    """(caller µs per frame, process µs per frame, ms per close) for one mode.

    Frames and closes are timed apart: a close fsyncs the file (a fixed cost per recording, set by the
    disk), which spread over a short benchmark recording would swamp the per-frame cost.
    """
    finished: dict[str, threading.Event] = {}

    def on_finished(rid: str, info: RecordingFileInfo | None, error: str | None) -> None:
        assert info is not None, error
        finished[rid].set()

    writers = RecordingWriters(on_finished)
    ids = [f"r{i}" for i in range(recordings)] if mode != "none" else []
    for rid in ids:
        finished[rid] = threading.Event()
        writers.open(rid, directory / f"{rid}.{mode}", RecordingFormat(mode), 8000, 1)
    write = writers.write if mode != "none" else (lambda rid, pcm: None)
    names = [f"r{i}" for i in range(recordings)]
    process_start, thread_start = time.process_time(), time.thread_time()
    for frame in frames:
        for rid in names:
            write(rid, frame)
    caller = time.thread_time() - thread_start
    # a marker behind every frame in the queue: the writer thread has taken them all when it ends
    finished["marker"] = threading.Event()
    writers.open("marker", directory / "marker.wav", RecordingFormat.WAV, 8000, 1)
    writers.close("marker")
    assert finished["marker"].wait(600)
    taken = time.process_time() - process_start
    close_start = time.perf_counter()
    for rid in ids:
        writers.close(rid)
    assert all(finished[rid].wait(600) for rid in ids)
    closing = time.perf_counter() - close_start
    writers.stop()
    count = len(frames) * recordings
    return caller / count * 1e6, taken / count * 1e6, closing / max(1, len(ids)) * 1e3


SHORT, LONG = 50, 250  # frames per --instructions run


def instructions(mode: str, recordings: int) -> float:
    counts = []
    for frames in (SHORT, LONG):
        child = [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--recordings",
            str(recordings),
            "--frames",
            str(frames),
        ]
        counts.append(callgrind_instructions(child, timeout=1800))
    return (counts[1] - counts[0]) / ((LONG - SHORT) * recordings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=100)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind")
    parser.add_argument("--child", choices=MODES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    opts = parser.parse_args()
    if opts.child is not None:
        with tempfile.TemporaryDirectory() as directory:
            run(opts.child, opts.recordings, _frames(opts.frames), Path(directory))
        return
    result: dict[str, object] = {"recordings": opts.recordings, "frames": opts.frames}
    if opts.instructions:
        counts = {mode: instructions(mode, opts.recordings) for mode in MODES}
        result["instructions_per_frame"] = counts
        for mode in ("wav", "mp3"):
            print(f"{mode}: {counts[mode] - counts['none']:,.0f} instructions per recording-frame over none")
    else:
        frames = _frames(opts.frames)
        figures: dict[str, list[tuple[float, float, float]]] = {mode: [] for mode in MODES}
        for _ in range(opts.rounds):  # interleaved: every mode once per round
            for mode in MODES:
                with tempfile.TemporaryDirectory() as directory:
                    figures[mode].append(run(mode, opts.recordings, frames, Path(directory)))
        medians = {
            mode: [statistics.median(x[i] for x in figures[mode]) for i in (0, 1, 2)] for mode in MODES
        }
        result["caller_us_process_us_close_ms"] = medians
        base_caller, base_total, _ = medians["none"]
        print(f"{opts.recordings} recordings x {opts.frames} frames, medians of {opts.rounds} rounds:")
        print(f"  none: caller {base_caller:.2f} us, process {base_total:.2f} us per frame (baseline loop)")
        for mode in ("wav", "mp3"):
            caller, total, closing = medians[mode]
            print(
                f"  {mode}: caller {caller:.2f} us ({caller / base_caller:.1f}x the baseline loop),"
                f" process {total - base_total:.2f} us over the baseline;"
                f" one core records {20_000 / (total - base_total):,.0f} streams;"
                f" a close {closing:.1f} ms (wall)"
            )
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
