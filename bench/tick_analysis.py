"""Tick lateness and RTP gaps from the outside: what bench_tick_isolation.py computes from the
peer's records (one row per packet: leg, perf_counter ns, receive time ns, RTP timestamp).

Per leg, packet k (its RTP timestamp / 160, unwrapped) is due at t0 + 20 ms * k, and t0 is the
smallest such offset: lateness = how much later than the least-delayed packet of its leg a packet
came. A skipped tick (an engine that jumps its schedule after a long stall, as the asyncio one does
past 60 ms) shows as an offset that rises and stays: the smallest offset of the next 200 ms jumps
by more than 15 ms. The stream is cut there and t0 refitted, the first packet after the cut being
counted against the old schedule (it is the tick that came late). Gaps are inter-arrival times.
"""

from __future__ import annotations

import itertools
from typing import Any

import benchkit as kit
import numpy as np

PERIOD_NS = 20_000_000
SAMPLES_PER_PACKET = 160
LATE_MS = 5.0
GAP_MS = 60.0
SKIP_JUMP_NS = 15_000_000  # an offset rise this large that persists is a skipped tick (20 ms each)
SKIP_LOOKAHEAD = 10  # packets: "persists" = the smallest offset of the next 200 ms rose too


def leg_lateness(arrival_ns: np.ndarray, rtp_ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lateness (ns) of each packet of one leg against its fitted 20 ms schedule; the indices of the
    packets where the schedule was cut, and how many 20 ms ticks it moved at each (skipped ticks)."""
    half = np.int64(2**31)
    steps = np.mod(np.diff(rtp_ts.astype(np.int64)) + half, 2 * half) - half  # unwrap the 32-bit clock
    index = np.concatenate(([0], np.cumsum(steps))) // SAMPLES_PER_PACKET
    offset = arrival_ns - index * PERIOD_NS
    padded = np.concatenate((offset, np.full(SKIP_LOOKAHEAD, offset[-1])))
    ahead = np.lib.stride_tricks.sliding_window_view(padded, SKIP_LOOKAHEAD + 1).min(axis=1)
    cuts = np.flatnonzero(np.diff(ahead) > SKIP_JUMP_NS) + 1
    lateness = np.empty_like(offset)
    skipped = np.zeros(len(cuts), dtype=np.int64)
    previous_t0: int | None = None
    bounds = [0, *cuts.tolist(), len(offset)]
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        t0 = int(offset[a:b].min())
        lateness[a:b] = offset[a:b] - t0
        if previous_t0 is not None:  # the tick that made the engine skip was late on the old schedule
            lateness[a] = offset[a] - previous_t0
            skipped[i - 1] = round((t0 - previous_t0) / PERIOD_NS)
        previous_t0 = t0
    moved = skipped > 0  # a long late streak also raises the offset for a while, but moves no tick
    return lateness, cuts[moved], skipped[moved]


def analyse(
    records: np.ndarray, legs: int, windows: dict[str, tuple[int, int]], clock: str
) -> dict[str, dict[str, Any]]:
    """Per phase window (perf_counter ns): lateness, gaps and skips over all legs, on one clock
    ("kernel": receive timestamps; "user": perf_counter after recvmsg)."""
    late: dict[str, list[np.ndarray]] = {name: [] for name in windows}
    gaps: dict[str, list[np.ndarray]] = {name: [] for name in windows}
    cut_count = dict.fromkeys(windows, 0)
    skipped_ticks = dict.fromkeys(windows, 0)
    measured_legs = 0
    for leg in range(legs):
        rows = records[records[:, 0] == leg]
        rows = rows[np.argsort(rows[:, 1], kind="stable")]
        if len(rows) < 2:
            continue
        measured_legs += 1
        times = rows[:, 2] if clock == "kernel" else rows[:, 1]
        lateness, cuts, skipped = leg_lateness(times, rows[:, 3])
        for name, (w0, w1) in windows.items():
            inside = (rows[:, 1] >= w0) & (rows[:, 1] < w1)
            late[name].append(lateness[inside])
            gaps[name].append(np.diff(times)[inside[1:] & inside[:-1]])  # both ends in the window
            cut_count[name] += int(inside[cuts].sum())
            skipped_ticks[name] += int(skipped[inside[cuts]].sum())
    result: dict[str, dict[str, Any]] = {}
    for name, (w0, w1) in windows.items():
        ms = np.concatenate(late[name]) / 1e6 if late[name] else np.zeros(0)
        leg_gaps = [g / 1e6 for g in gaps[name]]
        window_s = (w1 - w0) / 1e9
        result[name] = {
            "window_s": round(window_s, 3),
            "packets": int(ms.size),
            "expected_packets": round(legs * window_s * 1e9 / PERIOD_NS),
            "lateness_ms": kit.summary_ms([float(x) / 1000 for x in ms]),
            "late_packets": int((ms > LATE_MS).sum()),
            "late_pct": round(100 * float((ms > LATE_MS).mean()), 3) if ms.size else None,
            "longest_gap_ms": round(max((float(g.max()) for g in leg_gaps if g.size), default=0.0), 3),
            "longest_gap_per_leg_ms": [round(float(g.max()), 2) if g.size else None for g in leg_gaps],
            "gaps_over_60ms": int(sum(int((g > GAP_MS).sum()) for g in leg_gaps)),
            "schedule_cuts": cut_count[name],  # over all legs: each leg sees the same skip
            "skipped_ticks_seen": round(skipped_ticks[name] / max(measured_legs, 1), 1),  # per leg
        }
    return result
