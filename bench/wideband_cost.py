"""Micro-measure: what G.722 and Opus (wideband) legs cost the media runtime against G.711 ones, same run.

K conferences of N members, everyone hearing everyone else, each leg fed one 20 ms RTP packet of a
tone per tick from its own source, then the tick (mix, encode, packetise): the runtime's whole
per-leg work without sockets. Three codec mixes of the same conferences:
- g711: every leg PCMU (the 8 kHz batched mix-minus, decode/encode by table);
- one_g722: one leg per conference G.722, the others PCMU: the conference is mixed at 16 kHz, the
  G.711 legs' voices upsampled and their mixes filtered down, the G.722 leg decoded/encoded by libg722;
- all_g722: every leg G.722;
- one_opus, all_opus: the same with Opus (20 ms packets on the 48 kHz clock, decoded to and encoded
  from 16 kHz by libopus).
Interleaved rounds (each round times every mix in turn), CPU time (process_time), best round; per
leg and tick in microseconds, and legs per core (20 ms / that).

Also part of bench_media.py (figure 6 of `make bench`).

Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/wideband_cost.py [--conferences 20] [--members 3,10]
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import time
from pathlib import Path

import numpy as np

from bridgeline.core.effects import LegAudio
from bridgeline.media import g711, g722, opus
from bridgeline.media.runtime import TICK_S, MediaRuntime

_HEADER = struct.Struct("!BBHII")
_FRAMES = 50  # distinct payloads per leg, cycled
_OPUS_WIRE = 111  # the dynamic number the Opus peers use
_WIRE = {opus.CODEC_ID: _OPUS_WIRE}
_TS_STEP = {opus.CODEC_ID: opus.TICK_TS}


def _payloads(codec: int, freq: float) -> list[bytes]:
    if codec in (g722.PAYLOAD_TYPE, opus.CODEC_ID):
        stream = g722.G722Stream() if codec == g722.PAYLOAD_TYPE else opus.OpusStream()
        t = np.arange(_FRAMES * 320) / 16000
        pcm = (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
        return [stream.encode(pcm[i * 320 : (i + 1) * 320]) for i in range(_FRAMES)]
    t = np.arange(_FRAMES * 160) / 8000
    pcm = (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return [g711.encode_array(codec, pcm[i * 160 : (i + 1) * 160]).tobytes() for i in range(_FRAMES)]


class Setup:
    """One runtime with K conferences of N legs in a codec mix, and the packets its peers send."""

    def __init__(
        self, conferences: int, members: int, wide_per_conf: int, wide: int = g722.PAYLOAD_TYPE
    ) -> None:
        self.now = 1000.0
        self.runtime = MediaRuntime(rng=random.Random(1), origin=self.now)
        self.legs: list[tuple[str, int, list[bytes], tuple[str, int]]] = []
        port = 30000
        for c in range(conferences):
            ids = [f"c{c}l{m}" for m in range(members)]
            for m, leg_id in enumerate(ids):
                codec = wide if m < wide_per_conf else g711.PCMU
                peer = ("127.0.0.1", port)
                port += 2
                self.runtime.open_leg(leg_id)
                self.runtime.connect_leg(
                    leg_id,
                    remote=peer,
                    payload_type=codec,
                    wire_payload_type=_WIRE.get(codec),
                    telephone_event_pt=101,
                    send=True,
                    now=self.now,
                )
                self.legs.append((leg_id, codec, _payloads(codec, 300 + 97 * m), peer))
            self.runtime.set_routes(
                f"c{c}", [LegAudio(i, tuple(o for o in ids if o != i), None) for i in ids], {}
            )
        self.n = 0

    def ticks(self, count: int) -> None:
        runtime = self.runtime
        for _ in range(count):
            n = self.n
            for leg_id, codec, payloads, peer in self.legs:
                ts = (n * _TS_STEP.get(codec, 160)) & 0xFFFF_FFFF
                packet = (
                    _HEADER.pack(0x80, _WIRE.get(codec, codec), n & 0xFFFF, ts, 0x1234)
                    + payloads[n % _FRAMES]
                )
                runtime.receive(leg_id, "rtp", packet, peer, self.now)
            runtime.tick(self.now)
            self.n += 1
            self.now = round(self.now + TICK_S, 6)


def measure(
    conferences: int = 20, members: tuple[int, ...] = (3, 10), ticks: int = 100, rounds: int = 7
) -> list[dict[str, object]]:
    """One row per conference size: microseconds per leg and tick, legs per core, ratios to G.711."""
    results = []
    for size in members:
        mixes = {
            "g711": (0, g722.PAYLOAD_TYPE),
            "one_g722": (1, g722.PAYLOAD_TYPE),
            "all_g722": (size, g722.PAYLOAD_TYPE),
            "one_opus": (1, opus.CODEC_ID),
            "all_opus": (size, opus.CODEC_ID),
        }
        setups = {name: Setup(conferences, size, *mix) for name, mix in mixes.items()}
        for setup in setups.values():
            setup.ticks(20)  # past the jitter buffers' prefill
        best = dict.fromkeys(setups, float("inf"))
        for _ in range(rounds):
            for name, setup in setups.items():
                start = time.process_time()
                setup.ticks(ticks)
                best[name] = min(best[name], time.process_time() - start)
        legs = conferences * size
        row: dict[str, object] = {"members": size, "conferences": conferences, "legs": legs}
        for name, seconds in best.items():
            us = seconds / ticks / legs * 1e6
            row[f"{name}_us_per_leg_tick"] = round(us, 2)
            row[f"{name}_legs_per_core"] = int(TICK_S * 1e6 / us)
        for name in ("one_g722", "all_g722", "one_opus", "all_opus"):
            row[f"{name}_ratio"] = round(best[name] / best["g711"], 2)
        results.append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--conferences", type=int, default=20)
    parser.add_argument("--members", default="3,10")
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sizes = tuple(int(x) for x in args.members.split(","))
    results = measure(args.conferences, sizes, args.ticks, args.rounds)
    for row in results:
        print(json.dumps(row))
    if args.out is not None:
        args.out.write_text(json.dumps({"wideband": results}, indent=2))


if __name__ == "__main__":
    main()
