"""What recording every conference costs the real media engine (not a test): N RTP legs on loopback in
2-party conferences, fed by rtp_load.py's sender process (one PCMU packet per leg every 20 ms),
each conference's mix recorded by the real RecordingWriters into a WAV (or MP3) file in a temporary
directory, against the same load unrecorded. The modes alternate in every round, so neighbouring
runs see the same machine. CPU is the whole engine process's (`time.process_time`): the media thread
with its sockets, the recording writer's thread and the event loop; the closes of the files (fsync,
rename: a cost per recording, figure 12) come after the measured window.

Each run checks what it recorded: every file must last at least the measured run and at most the
engine's life (its start to its stop), or the run fails.

bench/recording_runtime_cost.py measures the pure runtime without sockets (a far smaller denominator:
the worst case for the ratio); this one is what a server pays per leg.

Run (quiet machine, as root for --realtime): OPENBLAS_NUM_THREADS=1 .venv/bin/python
  bench/recording_engine_cost.py [--legs 300] [--run 5] [--rounds 5] [--formats wav,mp3] [--realtime 10]
  [--out artifacts/recording-engine.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import benchkit as kit
from rtp_load import REALTIME_ENV, Result, run_engine

from bridgeline.adapters.carriers.sip.media_engine import MediaEngine
from bridgeline.adapters.recordings.files import RecordingFileInfo, RecordingFormat
from bridgeline.adapters.recordings.writers import RecordingWriters
from bridgeline.main import run_event_loop


async def recorded_run(legs: int, run_s: float, fmt: RecordingFormat | None, folder: Path) -> Result:
    """One engine run; with `fmt`, every conference recorded. Fails if a file is not about run_s long."""
    if fmt is None:
        return await run_engine(legs, 2, run_s, label="unrecorded")
    done = threading.Event()
    infos: dict[str, RecordingFileInfo | None] = {}
    errors: list[str] = []

    def finished(recording_id: str, info: RecordingFileInfo | None, error: str | None) -> None:
        infos[recording_id] = info
        if error is not None:
            errors.append(f"{recording_id}: {error}")
        if len(infos) == legs // 2:
            done.set()

    writers = RecordingWriters(finished)

    def record(engine: MediaEngine, conference_id: str, members: tuple[str, ...]) -> None:
        recording_id = f"r-{conference_id}"
        writers.open(recording_id, folder / f"{recording_id}.{fmt.value}", fmt, 8000, 1)
        engine.set_recorded(conference_id, members)
        engine.start_recording(conference_id, recording_id, None, writers.write)

    began = time.monotonic()
    try:
        result = await run_engine(legs, 2, run_s, each_conference=record, label=f"recorded, {fmt.value}")
    finally:
        ended = (
            time.monotonic()
        )  # the engine records from its start (the sender's spawn included) to its stop
        for c in range(0, legs, 2):
            writers.close(f"r-conf{c}")
        await asyncio.to_thread(done.wait, 120)
        writers.stop(30)
    if errors or len(infos) != legs // 2:
        raise RuntimeError(f"recordings failed: {errors[:3]} ({len(infos)} of {legs // 2} answered)")
    lengths = [info.duration_ms / 1000 for info in infos.values() if info is not None]
    if not lengths or min(lengths) < 0.95 * run_s or max(lengths) > ended - began + 0.2:
        raise RuntimeError(
            f"recording lengths {min(lengths, default=0):.2f}-{max(lengths, default=0):.2f} s"
            f" for an engine that ran {ended - began:.2f} s"
        )
    return result


async def main(legs: int, run_s: float, rounds: int, formats: list[RecordingFormat], out: str | None) -> None:
    kit.pin_self(kit.SERVER_CPU)  # the engine's core; the sender pins itself to the other one
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    load0 = kit.loadavg()
    modes: list[RecordingFormat | None] = [None, *formats]
    runs: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as folder:
        for round_no in range(rounds):
            for fmt in modes:
                sub = Path(folder) / f"{round_no}-{fmt.value if fmt else 'none'}"
                sub.mkdir()
                result = await recorded_run(legs, run_s, fmt, sub)
                runs.setdefault(result.label, []).append(result)
                print(result.row(), file=sys.stderr, flush=True)
    base = runs["unrecorded"]
    summary: dict[str, Any] = {}
    for label, results in runs.items():
        cost = statistics.median(r.cpu_us_per_leg_tick for r in results)
        pairs = zip(results, base, strict=True)
        per_round = [r.cpu_us_per_leg_tick / b.cpu_us_per_leg_tick for r, b in pairs]
        summary[label] = {
            "cpu_us_per_leg_tick_median": round(cost, 2),
            "ratio_of_medians": round(cost / statistics.median(b.cpu_us_per_leg_tick for b in base), 3),
            "ratio_per_round": [round(x, 3) for x in per_round],
            "max_late_pct": round(max(r.late_pct for r in results), 2),
            "max_other_cpu_share": round(max(r.other_cpu_s / r.wall_s for r in results), 2),
        }
    report = {
        "machine": kit.machine(),
        "legs": legs,
        "run_s": run_s,
        "rounds": rounds,
        "runs": {label: [asdict(r) for r in results] for label, results in runs.items()},
        "summary": summary,
        "loadavg_start": load0,
        "loadavg_end": kit.loadavg(),
    }
    for label, row in summary.items():
        print(f"{label}: {row}", file=sys.stderr)
    kit.write_result(out, "recording_engine", report)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=int, default=300, help="legs (2-party conferences: half as many)")
    parser.add_argument("--run", type=float, default=5.0, help="seconds per run, warm-up included")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--formats", default="wav,mp3")
    parser.add_argument("--realtime", type=int, default=0, help="SCHED_FIFO priority (media, sender)")
    parser.add_argument("--out", default=None, help="JSON results file")
    opts = parser.parse_args()
    os.environ[REALTIME_ENV] = str(opts.realtime)
    chosen = [RecordingFormat(f) for f in opts.formats.split(",") if f]
    run_event_loop(main(opts.legs, opts.run, opts.rounds, chosen, opts.out))
