"""Micro-benchmarks for the media layer (not a test): mixer tick cost and per-leg RTP receive/send cost.

Mixer: one 20 ms tick for one conference of N members (N = 2, 3, 10, 100), every member hearing all the
others (mix-minus), timed as the engine calls it (Mixer.mix_inputs() after writing the frames into
Mixer.inputs), against numpy's own summation of the same (N, 160) int16 frames, sum(axis=0), the baseline
of the ratio. N = 2 is a swap (no arithmetic); N = 3 is the smallest mix that adds and saturates. Also
shown: the general "deltas" kernel (each listener misses one more member), the stand-alone mix_minus()
and mix_routed() (matmul) functions, numpy's bare mix-minus without saturation (sum, then subtract: the
floor of any mix-minus in numpy), and - as a measured proposal - one vectorised mix for K two-party
conferences at once against K separate Mixer calls.

Timings are CPU time (process_time: a call preempted by another process is not counted), the best of 9
rounds, each round timing every kernel in turn (baseline included). Before each round new random frames
(partly full scale, so that sums saturate) go into the mixers' inputs and the baseline's array, and the
mixers' outputs are checked against the plain definition: nothing can be cached from identical input.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_media.py [--out f.json]
"""

from __future__ import annotations

import argparse
import time
import timeit
from collections.abc import Callable
from typing import Any

import benchkit as kit
import numpy as np
import wideband_cost

from bridgeline.media import g711
from bridgeline.media.jitter import JitterBuffer
from bridgeline.media.mixer import Mixer, all_minus_self, mix_minus, mix_routed
from bridgeline.media.rtp import RtpPacket


def per_call_us(fn: Callable[[], object], number: int) -> float:
    """Best of 7 repeats (the least disturbed by other processes), in CPU microseconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=7, timer=time.process_time)) / number * 1e6


def interleaved(
    fns: dict[str, Callable[[], object]],
    number: int,
    repeat: int = 9,
    between: Callable[[int], None] = lambda _: None,
) -> dict[str, float]:
    """CPU microseconds per call of each function, the best of `repeat` rounds; each round times every
    function once in turn, so a slow spell of the machine hits the baseline and the mixer alike.
    CPU time (process_time), not wall time: on a shared machine a preempted call is not counted.
    `between(round)` runs before each round, untimed (fresh inputs, checks)."""
    best = dict.fromkeys(fns, float("inf"))
    for r in range(repeat):
        between(r)
        for name, fn in fns.items():
            best[name] = min(
                best[name], timeit.timeit(fn, number=number, timer=time.process_time) / number * 1e6
            )
    return best


def bare_mix_minus(frames: np.ndarray[Any, Any], acc: np.ndarray[Any, Any]) -> None:
    total = np.add.reduce(frames, axis=0, dtype=np.int32)
    np.subtract(total, frames, out=acc)


def reference_mix(inputs: np.ndarray[Any, Any], routes: dict[int, set[int]]) -> dict[int, list[int]]:
    """The plain definition: clip(sum of the routed sources) per listener, in int64."""
    wide = inputs.astype(np.int64)
    return {
        lis: np.clip(wide[sorted(heard)].sum(axis=0), -32768, 32767).tolist() for lis, heard in routes.items()
    }


def bench_mixer() -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for n in (2, 3, 10, 100):
        row = bench_mixer_n(n, rng)
        rows.append(row)
        print(row)
    return rows


def bench_mixer_n(n: int, rng: np.random.Generator) -> dict[str, Any]:
    keys = list(range(n))
    fast: Mixer[int] = Mixer()
    fast_routes = all_minus_self(keys)
    fast.configure(keys, fast_routes)
    # Each listener also misses a different member: no plain mix-minus, one general row each.
    deltas: Mixer[int] = Mixer()
    delta_routes = {k: set(keys) - {k, (k + 1) % n} for k in keys}
    deltas.configure(keys, delta_routes)
    frames = np.zeros((n, 160), dtype=np.int16)  # the baseline's array: the same frames in the same order
    routing = np.ones((n, n), dtype=np.float32) - np.eye(n, dtype=np.float32)
    acc = np.zeros((n, 160), dtype=np.int32)

    def fresh_frames(round_: int) -> None:
        """New input frames each round, written where the engine writes them (the mixers' `inputs`);
        the previous round's output is checked against the plain definition first."""
        for mixer, routes in ((fast, fast_routes), (deltas, delta_routes)):
            if round_:
                out, want = mixer.mix_inputs(), reference_mix(frames, routes)
                assert all(out[mixer.output_row[k]].tolist() == want[k] for k in keys), "mixer is wrong"
        frames[:] = rng.integers(-32768, 32768, (n, 160), dtype=np.int16)
        frames[:, :16] = 32767  # full-scale speech: saturation happens in every tick from N = 3
        for mixer in (fast, deltas):
            for k in keys:
                mixer.inputs[mixer.source_row[k]] = frames[k]

    timed = interleaved(
        {
            "numpy_sum_us": lambda: frames.sum(axis=0),
            "mixer_mix_minus_us": fast.mix_inputs,
            "mixer_deltas_us": deltas.mix_inputs,
            "mix_minus_fn_us": lambda: mix_minus(frames),
            "matmul_us": lambda: mix_routed(frames, routing),
            "numpy_bare_mix_minus_us": lambda: bare_mix_minus(frames, acc),
        },
        number=20000 if n < 100 else 5000,
        between=fresh_frames,
    )
    fresh_frames(1)  # check the last round too
    row: dict[str, Any] = {"n": n, **{k: round(v, 2) for k, v in timed.items()}}
    row["ratio"] = round(row["mixer_mix_minus_us"] / row["numpy_sum_us"], 2)
    row["budget_share_pct"] = round(100 * row["mixer_mix_minus_us"] / 20_000, 3)
    return row


def bench_batched(k: int = 100) -> dict[str, Any]:
    """K two-party conferences: K Mixer.mix_inputs calls vs one vectorised mix-minus over (K, 2, 160)."""
    rng = np.random.default_rng(1)
    frames = rng.integers(-32768, 32768, (k, 2, 160), dtype=np.int16)
    mixers: list[Mixer[int]] = []
    for c in range(k):
        m: Mixer[int] = Mixer()
        m.configure([0, 1], all_minus_self([0, 1]))
        m.inputs[:] = frames[c]
        mixers.append(m)
    total = np.zeros((k, 1, 160), dtype=np.int32)
    acc = np.zeros((k, 2, 160), dtype=np.int32)
    out = np.zeros((k, 2, 160), dtype=np.int16)

    def separate() -> None:
        for m in mixers:
            m.mix_inputs()

    def batched() -> None:
        np.add.reduce(frames, axis=1, dtype=np.int32, out=total[:, 0])
        np.subtract(total, frames, out=acc)
        np.clip(acc, -32768, 32767, out=acc)
        np.copyto(out, acc, casting="unsafe")

    sep, bat = per_call_us(separate, 500), per_call_us(batched, 500)
    return {
        "conferences": k,
        "separate_us": round(sep, 1),
        "batched_us": round(bat, 1),
        "speedup": round(sep / bat, 1),
    }


def bench_leg() -> dict[str, Any]:
    """One leg for one tick: parse, jitter push + pop, then encode and serialise the outgoing frame."""
    jb = JitterBuffer()
    pcm = (np.sin(np.arange(160) / 5) * 8000).astype(np.int16)
    payload = g711.ulaw_encode(pcm)
    wires = [bytes(RtpPacket(0, i & 0xFFFF, i * 160, 1, payload)) for i in range(200_000)]
    counter = iter(range(len(wires)))

    def tick() -> None:
        i = next(counter)
        jb.push(RtpPacket.parse(wires[i]), i * 0.02)
        frame = jb.pop_frame()
        bytes(RtpPacket(0, i & 0xFFFF, i * 160, 2, g711.ulaw_encode(pcm if frame is None else frame)))

    t = per_call_us(tick, 20000)
    print(f"per leg per 20 ms tick: {t:.1f} us -> {20_000 / t:.0f} legs per core (media work only)")
    return {"us_per_leg_tick": round(t, 1), "legs_per_core_media_only": round(20_000 / t)}


def main(out: str | None) -> dict[str, Any]:
    kit.pin_self(kit.SERVER_CPU)
    load0 = kit.loadavg()
    result = {
        "machine": kit.machine(),
        "numpy": np.__version__,
        "mixer": bench_mixer(),
        "batched_two_party": bench_batched(),
        "leg": bench_leg(),
        "wideband": wideband_cost.measure(),  # G.722 legs against G.711 ones, same run
        "loadavg_start": load0,
        "loadavg_end": kit.loadavg(),
        "command": "OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_media.py",
    }
    kit.write_result(out, "media", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    main(parser.parse_args().out)
