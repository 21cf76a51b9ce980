"""Micro-measure: what one call setup or teardown costs the media runtime, the SIP media shell and
the SIP endpoint with few vs many calls up. The held-calls benchmark (bench_sip_held.py) found three
such costs that grew with the number of calls up; each must stay flat:

- layout: the first tick after a routing change, less a tick after none (the runtime rebuilt the
  whole tick layout after any change). Patched per conference, what is left at 2,000 legs (~20-30
  us of a ~1 ms tick) is the cache the change evicted: touching 256 KB between two ticks costs the
  second about as much;
- runtime set_routes: one call joining, then leaving, its own one-member conference hearing wait
  music (the runtime collected every conference's music on each change);
- shell set_routes: the same through the SIP carrier's `MediaEngine` (not started, so its commands
  run inline; this includes the runtime's set_routes), which also collected every conference's
  music specs on each change;
- drop: `EndpointCore.drop` of one ringing call (it scanned every dialog).

The calls up are one-member conferences hearing wait music, as in bench_sip_held.py; the runtime's
legs are connected and held (send=False, like a=inactive). Pure and in-process (no socket). To
compare with another tree, run its copy with PYTHONPATH set:
    PYTHONPATH=/tmp/old/src .venv/bin/python bench/setup_cost.py

Run: .venv/bin/python bench/setup_cost.py [--legs 10,2000] [--repeat 300]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from bridgeline.adapters.carriers.sip.media_engine import MediaEngine
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.core.model import Music
from bridgeline.media.player import ToneSource
from bridgeline.media.runtime import MediaRuntime

try:  # bench/ is not a package: run as a script, sip_timer_cost.py sits next to this file
    from sip_timer_cost import ringing_endpoint
except ImportError:  # pragma: no cover - imported from elsewhere
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from sip_timer_cost import ringing_endpoint

PEER = ("127.0.0.1", 40000)


def held_runtime(calls: int) -> MediaRuntime:
    runtime = MediaRuntime(rng=random.Random(1))
    music = {Music.WAIT: ToneSource((350, 440))}
    for n in range(calls):
        leg_id = f"held-{n}"
        runtime.open_leg(leg_id)
        runtime.connect_leg(leg_id, remote=PEER, payload_type=0, telephone_event_pt=101, send=False, now=0.0)
        runtime.set_routes(f"conf-{n}", [LegAudio(leg_id, (), Music.WAIT)], music)
    runtime.tick(runtime.next_tick_at)
    return runtime


def runtime_costs(calls: int, repeat: int) -> tuple[float, float, float]:
    """(one runtime set_routes, the layout work a routing change adds to the next tick, a tick with
    no change), in us. set_routes: the best of 5 tight loops; ticks: medians over interleaved
    ticks (a tick takes ~1 ms at 2,000 legs, so a few % of difference is cache noise)."""
    runtime = held_runtime(calls)
    music = {Music.WAIT: ToneSource((350, 440))}
    join = [LegAudio("extra", (), Music.WAIT)]
    runtime.open_leg("extra")
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            runtime.set_routes("conf-extra", join, music)
            runtime.set_routes("conf-extra", [], {})
        best = min(best, (time.perf_counter() - start) / (2 * repeat))
    changed: list[float] = []
    quiet: list[float] = []
    for _ in range(repeat):
        runtime.set_routes("conf-extra", join, music)
        runtime.set_routes("conf-extra", [], {})
        start = time.perf_counter()
        runtime.tick(runtime.next_tick_at)
        changed.append(time.perf_counter() - start)
        start = time.perf_counter()
        runtime.tick(runtime.next_tick_at)
        quiet.append(time.perf_counter() - start)
    layout = statistics.median(changed) - statistics.median(quiet)
    return best * 1e6, layout * 1e6, statistics.median(quiet) * 1e6


def shell_set_routes(calls: int, repeat: int) -> float:
    """One `MediaEngine.set_routes` (the media thread not started: the runtime's part runs inline)."""
    engine = MediaEngine()
    music = MusicSources()
    for n in range(calls):  # legs never opened: set_routes accepts them (they stay silent)
        engine.set_routes(f"conf-{n}", [LegAudio(f"held-{n}", (), Music.WAIT)], music)
    join = [LegAudio("extra", (), Music.WAIT)]
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeat):
            engine.set_routes("conf-extra", join, music)
            engine.set_routes("conf-extra", [], music)
        best = min(best, (time.perf_counter() - start) / (2 * repeat))
    return best * 1e6


def drop_cost(calls: int, rounds: int = 5, drops: int = 10) -> float:
    """One `EndpointCore.drop` with `calls` other ringing calls up (median over rounds x drops)."""
    samples: list[float] = []
    for _ in range(rounds):
        ep = ringing_endpoint(calls + drops)
        core = ep._core
        for leg in list(core.legs.values())[-drops:]:
            start = time.perf_counter()
            core.drop(leg)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", default="10,2000")
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    counts = [int(n) for n in args.legs.split(",")]
    rows: dict[str, list[float]] = {}
    for n in counts:
        routes, layout, tick = runtime_costs(n, args.repeat)
        measured = {
            "runtime set_routes": routes,
            "layout (tick after a change - quiet tick)": layout,
            "(for scale: a quiet tick)": tick,
            "shell set_routes (incl. runtime)": shell_set_routes(n, args.repeat),
            "EndpointCore.drop": drop_cost(n),
        }
        for name, value in measured.items():
            rows.setdefault(name, []).append(value)
    header = "".join(f"{n:>10d} legs" for n in counts)
    print(f"{'us per operation':44s}{header}   ratio")
    for name, values in rows.items():
        cells = "".join(f"{v:15.2f}" for v in values)
        print(f"{name:44s}{cells}   {values[-1] / max(values[0], 1e-3):6.1f}x")


if __name__ == "__main__":
    main()
