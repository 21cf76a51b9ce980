"""Micro-benchmarks for the media layer (not a test): mixer tick cost and per-leg RTP receive/send cost.

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_media.py
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

import numpy as np

from bridgeline.media import g711
from bridgeline.media.jitter import JitterBuffer
from bridgeline.media.mixer import Mixer, all_minus_self, mix_minus, mix_routed
from bridgeline.media.rtp import RtpPacket


def per_call_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6


def bench_mixer() -> None:
    rng = np.random.default_rng(0)
    print("us per tick; ratio = Mixer mix-minus / sum(axis=0)")
    heads = ("sum(axis=0)", "mix-minus", "deltas", "mix_minus()", "matmul")
    print(f"{'N':>4} " + " ".join(f"{h:>11}" for h in heads) + f" {'ratio':>6}")
    for n in (2, 10, 100):
        frames = rng.integers(-32768, 32768, (n, 160), dtype=np.int16)
        keys = list(range(n))
        fast: Mixer[int] = Mixer()
        fast.configure(keys, all_minus_self(keys))
        fast.inputs[:] = frames
        # Each listener also misses a different member: no plain mix-minus, one general row each.
        deltas: Mixer[int] = Mixer()
        deltas.configure(keys, {k: set(keys) - {k, (k + 1) % n} for k in keys})
        deltas.inputs[:] = frames
        routing = np.ones((n, n), dtype=np.float32) - np.eye(n, dtype=np.float32)
        number = 20000 if n < 100 else 5000
        times = [
            per_call_us(lambda f=frames: f.sum(axis=0), number),  # type: ignore[misc]
            per_call_us(fast.mix_inputs, number),
            per_call_us(deltas.mix_inputs, number),
            per_call_us(lambda f=frames: mix_minus(f), number),  # type: ignore[misc]
            per_call_us(lambda f=frames, r=routing: mix_routed(f, r), number),  # type: ignore[misc]
        ]
        cells = " ".join(f"{t:>11.1f}" for t in times)
        print(f"{n:>4} {cells} {times[1] / times[0]:>6.2f}")


def bench_leg() -> None:
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


if __name__ == "__main__":
    bench_mixer()
    bench_leg()
