"""Load benchmark for the MediaEngine (not a test): N RTP legs on loopback, in 2-party and 10-party
conferences, fed by a separate sender process that spreads N streams over each 20 ms period.

Per run it reports late ticks (> 5 ms after their deadline) as a share of all ticks, the engine
process's CPU, and packets per second in and out; per setup it climbs a ladder of N (200, 500, 1000,
1500, ...) until 1% or more of the ticks are late, then tries the midpoint, to find roughly the
largest N under 1%. The baseline is a
bare asyncio UDP echo relay (one socket per leg; no jitter buffer, mixing or encoding) at the same
packet rates, with an empty 20 ms ticker scheduled exactly like the engine's tick.

Late ticks on a shared machine come as much from other processes as from the engine: a run is
repeated (up to ATTEMPTS times) while it misses, the best kept, and the CPU that the rest of the machine
used during the window is reported next to it.

The engine runs pinned to one core and the sender to the other (bench/benchkit.py), so "legs per
core" means one core. Modes: 2-party, 10-party and 100-party conferences (the last at N=100 is one
100-party conference), 2-party conferences over SRTP (--srtp-suite, AES_CM_128_HMAC_SHA1_80 by
default: the sender protects every packet, the engine unprotects and protects; to compare with plain
2-party in the same run),
and the echo relay baseline. With both 2-party modes, plain and SRTP runs are then alternated at
one N (--pair-legs, 3 pairs) for their ratio. --profile-dir also samples one run with py-spy.

Bounded: every run lasts --run seconds, and no run starts after --budget seconds.
Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_rtp_legs.py [--budget 180] [--run 4] [--out f.json]
     [--srtp-suite AEAD_AES_128_GCM]   (`make bench-srtp`: the SRTP ladders and pairs, AES_CM then GCM)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import benchkit as kit
import numpy as np

from bridgeline.adapters.carriers.sip.media_engine import MediaEngine, SrtpKeys
from bridgeline.core.effects import LegAudio
from bridgeline.main import run_event_loop
from bridgeline.media import g711
from bridgeline.media.srtp import SUITES, SrtpContext, key_length
from bridgeline.phlo.definition import NodeSettings

PORT_MIN, PORT_MAX = 24000, 31999  # below the ephemeral range; room for 4000 legs
WARMUP_S = 0.5
LATE_S = 0.005
LADDER = (200, 500, 1000, 1500, 2000, 3000)  # 1,000 is the target; the midpoint refines it
ATTEMPTS = 3  # runs per setup while late ticks stay >= 1%; the best one is kept
# --realtime N: the media thread (the server's own `realtime_priority` setting) and the sender run
# under SCHED_FIFO, for every mode alike, so that on a machine shared with other work a tick is not
# late because another process held the core. The sender learns it from its environment.
REALTIME_ENV = "BENCH_RTP_REALTIME"


def realtime_priority() -> int:
    return int(os.environ.get(REALTIME_ENV, "0"))


# The sender's core (default: the load core, kit.LOAD_CPU); "any" leaves it to the kernel. The
# sender learns it from its environment, as REALTIME_ENV.
SENDER_CPU_ENV = "BENCH_RTP_SENDER_CPU"
SLOTS = 10  # sender sub-slots per 20 ms
SRTP_SUITE_ENV = "BENCH_RTP_SRTP_SUITE"  # --srtp-suite, for the sender too


def srtp_suite() -> str:
    return os.environ.get(SRTP_SUITE_ENV, "AES_CM_128_HMAC_SHA1_80")


# --------------------------------------------------------------------------- sender (child process)
def sender_main(fd: int, ports: list[int], seconds: float, srtp_key: bytes | None = None) -> None:
    """Send one PCMU packet per port every 20 ms (absolute deadlines) and drain what comes back;
    with `srtp_key`, as SRTP (one libsrtp session, one stream per SSRC: each leg's own stream)."""
    protect: Callable[[bytes], bytes] = bytes
    if srtp_key is not None:  # one outbound session: a stream per SSRC
        protect = SrtpContext(SrtpKeys(srtp_suite(), srtp_key, bytes(len(srtp_key)))).protect
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    t = np.arange(160 * 50) / 8000
    tone = g711.ulaw_encode((np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16))
    frames = [tone[i * 160 : (i + 1) * 160] for i in range(50)]
    header = struct.Struct("!BBHII")
    dests = [("127.0.0.1", p) for p in ports]
    sent = received = send_errors = late = 0
    # (monotonic time, packets sent so far) every 5 periods: how much was sent inside a window that
    # the parent measures on its own clock (CLOCK_MONOTONIC is the machine's, not the process's)
    marks: list[tuple[float, int]] = []
    buf = bytearray(2048)
    ready_cpu = time.process_time()
    print("ready", flush=True)  # imports and setup are done: the measured window can start
    start = time.monotonic()
    # Real phones start their streams at random phases, so arrivals spread over the 20 ms period:
    # send each leg in one of SLOTS evenly spaced slots instead of one burst per period.
    slots = [list(enumerate(dests))[k::SLOTS] for k in range(SLOTS)]
    for n in range(int(seconds * 50)):
        if n % 5 == 0:
            marks.append((time.monotonic(), sent))
        frame = frames[n % 50]
        for k, slot in enumerate(slots):
            delay = start + n * 0.02 + k * 0.02 / SLOTS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -LATE_S and k == 0:
                late += 1
            for i, dest in slot:
                try:
                    sock.sendto(protect(header.pack(0x80, 0, n & 0xFFFF, n * 160, i + 1) + frame), dest)
                    sent += 1
                except OSError:
                    send_errors += 1
            while True:
                try:
                    sock.recv_into(buf)
                except OSError:  # BlockingIOError when drained
                    break
                received += 1
    cpu_s = round(time.process_time() - ready_cpu, 3)  # while sending only
    marks.append((time.monotonic(), sent))
    result = {"sent": sent, "received": received, "errors": send_errors, "late": late, "cpu_s": cpu_s}
    print(json.dumps({**result, "marks": marks}))


def sender_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class Sender:
    proc: asyncio.subprocess.Process

    @classmethod
    async def spawn(
        cls, ports: list[int], seconds: float, sock: socket.socket, srtp_key: bytes | None = None
    ) -> Sender:
        """Send from `sock`: its address is the one the engine's legs were given as the peer's SDP."""
        key = [] if srtp_key is None else [srtp_key.hex()]
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, __file__, "--sender", str(sock.fileno()), str(seconds), *key),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=[sock.fileno()],
        )
        sock.close()  # the child has its own copy
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(ports).encode())
        await proc.stdin.drain()
        proc.stdin.close()
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if line.strip() != b"ready":
            proc.kill()
            await proc.wait()
            raise RuntimeError(f"sender failed to start: {line!r}")
        return cls(proc)

    async def result(self, within: float) -> dict[str, float]:
        assert self.proc.stdout is not None
        try:
            out = await asyncio.wait_for(self.proc.stdout.read(), within)
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise
        return dict(json.loads(out))


# --------------------------------------------------------------------------- measured runs
@dataclass
class Result:
    label: str
    legs: int
    ticks: int
    late: int
    max_late_ms: float
    cpu_s: float
    wall_s: float
    pps_in: float
    pps_out: float
    sender_cpu_s: float  # share of the sender's CPU that falls in the measured window (estimate)
    other_cpu_s: float  # everything else on the machine in the window: a disturbance indicator
    sender_late: int
    steal_s: float = 0.0  # CPU time the hypervisor took from this VM during the window

    @property
    def cpu_us_per_leg_tick(self) -> float:
        return self.cpu_s / (self.wall_s / 0.02) / self.legs * 1e6

    @property
    def late_pct(self) -> float:
        return 100 * self.late / max(self.ticks, 1)

    def row(self) -> str:
        return (
            f"| {self.label} | {self.legs} | {self.late_pct:.2f} | {self.max_late_ms:.1f} | {self.cpu_s:.2f}"
            f" ({100 * self.cpu_s / self.wall_s:.0f}%) | {self.pps_in:,.0f} | {self.pps_out:,.0f}"
            f" | {self.cpu_us_per_leg_tick:.0f} | {100 * self.sender_cpu_s / self.wall_s:.0f}%"
            f" | {100 * self.other_cpu_s / self.wall_s:.0f}% | {self.sender_late}"
            f" | {100 * self.steal_s / self.wall_s:.0f}% |"
        )


Snapshot = Callable[[], dict[str, float]]


async def measure(
    label: str,
    legs: int,
    ports: list[int],
    snapshot: Snapshot,
    run_s: float,
    window_start: Callable[[], None],
    sock: socket.socket,
    srtp_key: bytes | None = None,
) -> Result:
    """Feed `ports` from `sock` for run_s seconds; compare snapshots after the warm-up and at the end."""
    sender = await Sender.spawn(ports, run_s, sock, srtp_key)
    await asyncio.sleep(WARMUP_S)
    window_start()  # resets the maximum lateness, so it covers the measured window only
    s0, cpu0, t0, (busy0, steal0) = snapshot(), time.process_time(), time.monotonic(), kit.cpu_times()
    await asyncio.sleep(run_s - WARMUP_S - 0.1)
    s1, cpu1, t1, (busy1, steal1) = snapshot(), time.process_time(), time.monotonic(), kit.cpu_times()
    child = await sender.result(within=run_s + 10)
    wall = t1 - t0
    sender_cpu = child["cpu_s"] * wall / run_s
    d = {k: s1[k] - s0[k] for k in ("ticks", "late", "in", "out")}
    return Result(
        label,
        legs,
        int(d["ticks"]),
        int(d["late"]),
        s1["max_late_ms"],
        cpu1 - cpu0,
        wall,
        d["in"] / wall,
        d["out"] / wall,
        sender_cpu,
        max(busy1 - busy0 - (cpu1 - cpu0) - sender_cpu, 0.0),
        int(child["late"]),
        steal1 - steal0,
    )


# Called per conference after its routes are set: (engine, conference id, its legs), e.g. to record it.
ConferenceHook = Callable[[MediaEngine, str, tuple[str, ...]], None]


async def run_engine(
    legs: int,
    party: int,
    run_s: float,
    *,
    srtp: bool = False,
    each_conference: ConferenceHook | None = None,
    label: str | None = None,
) -> Result:
    engine = MediaEngine(port_min=PORT_MIN, port_max=PORT_MAX, realtime_priority=realtime_priority())
    suite = srtp_suite()
    sender_key = os.urandom(key_length(suite)) if srtp else None
    try:
        ids = [f"l{i}" for i in range(legs)]
        ports = [engine.open_leg(leg) for leg in ids]
        # The sender's address is what each leg's SDP names, as for a peer not behind NAT: the legs
        # latch to it whenever its first packet comes (the learning window would be long over after
        # opening a thousand legs).
        sock = sender_socket()
        for leg in ids:
            keys = None if sender_key is None else SrtpKeys(suite, os.urandom(len(sender_key)), sender_key)
            engine.connect_leg(
                leg,
                remote=sock.getsockname(),
                payload_type=g711.PCMU,
                telephone_event_pt=101,
                send=True,
                srtp=keys,
            )
        for c in range(0, legs, party):
            members = ids[c : c + party]
            routes = [LegAudio(m, tuple(x for x in members if x != m), None) for m in members]
            engine.set_routes(f"conf{c}", routes, NodeSettings())
            if each_conference is not None:
                each_conference(engine, f"conf{c}", tuple(members))
        await engine.start()
        if realtime_priority() and not engine.stats["realtime"]:
            print("warning: the media thread did not get SCHED_FIFO", file=sys.stderr)

        def snapshot() -> dict[str, float]:
            s = engine.stats
            return {
                "ticks": s["ticks"] + s["skipped_ticks"],
                "late": s["late_ticks"] + s["skipped_ticks"],
                "max_late_ms": s["max_lateness_ms"],
                "in": s["packets_in"],
                "out": s["packets_out"],
            }

        def window_start() -> None:
            # bench-only peek (written from the loop's thread, read by the media thread: a float store is
            # atomic): the public stats keep the all-time maximum
            engine._runtime.tick_stats.max_lateness = 0.0

        label = label or f"engine, {party}-party" + (", SRTP" if srtp else "")
        result = await measure(label, legs, ports, snapshot, run_s, window_start, sock, sender_key)
        dropped = engine.stats["srtp_auth_failed"] + engine.stats["srtp_replayed"]
        if dropped:
            print(f"warning: {dropped} SRTP packets refused in {label}", file=sys.stderr)
        return result
    finally:
        await engine.stop()


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, counts: dict[str, float]) -> None:
        self.counts = counts
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.counts["in"] += 1
        assert self.transport is not None
        self.transport.sendto(data, addr)
        self.counts["out"] += 1


async def run_baseline(legs: int, run_s: float) -> Result:
    """A bare echo relay on `legs` sockets plus an empty 20 ms ticker, measured like the engine."""
    loop = asyncio.get_running_loop()
    counts = {"ticks": 0, "late": 0, "max_late_ms": 0.0, "in": 0, "out": 0}
    transports: list[asyncio.BaseTransport] = []

    async def ticker() -> None:
        # The engine's schedule without its work: absolute deadlines, skip when > 3 ticks behind.
        start, n = loop.time(), 0
        while True:
            deadline = start + n * 0.02
            await asyncio.sleep(max(deadline - loop.time(), 0))
            lateness = loop.time() - deadline
            counts["ticks"] += 1
            counts["late"] += lateness > LATE_S
            counts["max_late_ms"] = max(counts["max_late_ms"], lateness * 1000)
            if lateness > 0.06:
                behind = int(lateness // 0.02)
                n += behind
                counts["ticks"] += behind
                counts["late"] += behind
            n += 1

    task: asyncio.Task[None] | None = None
    try:
        ports: list[int] = []
        for port in range(PORT_MIN, PORT_MAX, 2):
            if len(ports) == legs:
                break
            try:
                t, _ = await loop.create_datagram_endpoint(
                    lambda: _Echo(counts), local_addr=("127.0.0.1", port)
                )
            except OSError:
                continue
            transports.append(t)
            ports.append(port)
        task = asyncio.create_task(ticker())

        def window_start() -> None:
            counts["max_late_ms"] = 0.0

        return await measure(
            "echo relay (baseline)", legs, ports, lambda: dict(counts), run_s, window_start, sender_socket()
        )
    finally:
        if task is not None:
            task.cancel()
        for transport in transports:
            transport.close()
        await asyncio.sleep(0)


MODES: dict[str, tuple[int, Callable[[int, float], Awaitable[Result]]]] = {
    "engine, 2-party": (2, lambda n, run_s: run_engine(n, 2, run_s)),
    "engine, 10-party": (10, lambda n, run_s: run_engine(n, 10, run_s)),
    "engine, 100-party": (100, lambda n, run_s: run_engine(n, 100, run_s)),
    "engine, 2-party, SRTP": (2, lambda n, run_s: run_engine(n, 2, run_s, srtp=True)),
    "echo relay (baseline)": (10, lambda n, run_s: run_baseline(n, run_s)),
}


PAIR_LEGS, PAIRS = 300, 3


async def srtp_pairs(legs: int, run_s: float, pairs: int) -> dict[str, Any]:
    """Plain and SRTP runs alternated at one N, `pairs` times: on a shared machine the load drifts
    between the ladders, while neighbouring runs see about the same. The ratio is of the medians
    of CPU per leg-tick; `max_late_pct` says whether every run kept up (a run that fell behind
    skips ticks and so spends less per leg-tick: the report then uses the ladders' equal-N figure)."""
    runs: dict[str, list[Result]] = {"plain": [], "srtp": []}
    for _ in range(pairs):
        runs["plain"].append(await run_engine(legs, 2, run_s))
        runs["srtp"].append(await run_engine(legs, 2, run_s, srtp=True))
        for r in (runs["plain"][-1], runs["srtp"][-1]):
            print(r.row().replace("| engine", "| pair: engine", 1), file=sys.stderr, flush=True)
    medians = {k: float(np.median([r.cpu_us_per_leg_tick for r in v])) for k, v in runs.items()}
    return {
        "runs": {k: [asdict(r) | {"late_pct": round(r.late_pct, 3)} for r in v] for k, v in runs.items()},
        "summary": {
            "legs": legs,
            "pairs": pairs,
            "plain_cpu_us_per_leg_tick": round(medians["plain"], 1),
            "srtp_cpu_us_per_leg_tick": round(medians["srtp"], 1),
            "ratio_by_cpu": round(medians["plain"] / medians["srtp"], 3),
            "ratio_per_pair": [
                round(p.cpu_us_per_leg_tick / q.cpu_us_per_leg_tick, 3)
                for p, q in zip(runs["plain"], runs["srtp"], strict=True)
            ],
            "max_late_pct": round(max(r.late_pct for v in runs.values() for r in v), 2),
        },
    }


def srtp_vs_plain(results: list[Result], summary: dict[str, Any]) -> None:
    """SRTP legs per core as a share of plain ones, same run: CPU per leg-tick compared at the
    largest N that both modes carried cleanly (< 1% late, full packet rate). A run that fell behind
    skips ticks and so spends less per leg-tick: such runs are not compared."""
    clean: dict[str, dict[int, float]] = {}
    for r in results:
        if r.late_pct < 1 and r.pps_in >= 0.95 * 50 * r.legs:
            best = clean.setdefault(r.label, {})
            best[r.legs] = min(best.get(r.legs, math.inf), r.cpu_us_per_leg_tick)
    plain, srtp = clean.get("engine, 2-party", {}), clean.get("engine, 2-party, SRTP", {})
    common = sorted(set(plain) & set(srtp))
    if common and "engine, 2-party, SRTP" in summary:
        n = common[-1]
        summary["engine, 2-party, SRTP"]["vs_plain"] = {
            "legs": n,
            "plain_cpu_us_per_leg_tick": round(plain[n], 1),
            "srtp_cpu_us_per_leg_tick": round(srtp[n], 1),
            "ratio_by_cpu": round(plain[n] / srtp[n], 3),
        }


async def profile_tick(legs: int, party: int, run_s: float, out: Path) -> dict[str, Any]:
    """One engine run sampled by py-spy (it pauses this process per sample: not a measured run)."""
    proc = kit.start_profile(os.getpid(), run_s, out, rate=100)
    await asyncio.sleep(0.3)
    result = await run_engine(legs, party, run_s + 0.5)
    profile = await asyncio.to_thread(kit.finish_profile, proc, out, 20)
    return {**profile, "legs": legs, "party": party, "late_pct_while_sampled": round(result.late_pct, 2)}


async def main(
    budget_s: float,
    run_s: float,
    out: str | None,
    profile_dir: Path | None,
    ladder: tuple[int, ...] = LADDER,
    only: str | None = None,
    pair_legs: int = PAIR_LEGS,
    pair_count: int = PAIRS,
) -> dict[str, Any]:
    kit.pin_self(kit.SERVER_CPU)  # the engine's core; the sender pins itself to the other one
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))  # two sockets per leg
    t_end = time.monotonic() + budget_s
    mode_end = t_end  # each mode gets an equal share of what is left, so the baseline always runs
    load0 = kit.loadavg()
    results: list[Result] = []
    largest: dict[str, int] = {}

    async def attempt(run: Callable[[], Awaitable[Result]]) -> Result | None:
        """One run, repeated (up to ATTEMPTS) while it has >= 1% late ticks without saturating the
        core, keeping the best: on a shared VM other processes and the hypervisor (steal) cause many
        such misses (see the "other processes" and "steal" columns)."""
        best: Result | None = None
        for _ in range(ATTEMPTS):
            if time.monotonic() + run_s + 1 > mode_end:
                break
            result = await run()
            print(result.row(), file=sys.stderr, flush=True)
            if best is None or result.late_pct < best.late_pct:
                best = result
            if best.late_pct < 1 or result.cpu_s >= 0.9 * result.wall_s:
                break  # passed, or the core is saturated: another try would miss again
        if best is not None:
            results.append(best)
        return best

    modes = {
        label: mode
        for label, mode in MODES.items()
        if only is None or any(word in label for word in only.split(","))
    }
    for i, (label, (step, run)) in enumerate(modes.items()):
        mode_end = time.monotonic() + (t_end - time.monotonic()) / (len(modes) - i)
        ok, bad = 0, 0
        for legs in ladder:
            if legs % step:
                continue
            r = await attempt(lambda n=legs, f=run: f(n, run_s))  # type: ignore[misc]
            if r is None:
                break
            if r.late_pct < 1:
                ok = legs
            else:
                bad = legs
                break
        if ok and bad:
            mid = (ok + bad) // 2 // step * step
            if ok < mid < bad:
                r = await attempt(lambda n=mid, f=run: f(n, run_s))  # type: ignore[misc]
                if r is not None and r.late_pct < 1:
                    ok = mid
        largest[label] = ok
    summary: dict[str, Any] = {}
    for label, legs in largest.items():
        runs = [r for r in results if r.label == label and r.pps_in >= 0.95 * 50 * r.legs]
        cost = min((r.cpu_us_per_leg_tick for r in runs), default=None)  # fixed costs amortise at large N
        summary[label] = {
            "largest_legs_under_1pct_late": legs,
            "ladder_top": ladder[-1],
            "cpu_us_per_leg_tick": None if cost is None else round(cost, 1),
            "legs_per_core_by_cpu": None if cost is None else round(20_000 / cost),
        }
    srtp_vs_plain(results, summary)
    pairs = None
    if {"engine, 2-party", "engine, 2-party, SRTP"} <= modes.keys():
        pairs = await srtp_pairs(pair_legs, run_s, pair_count)
        summary["engine, 2-party, SRTP"]["vs_plain_pairs"] = pairs["summary"]
    one_conf = [r for r in results if r.label == "engine, 100-party" and r.legs == 100]
    profiles: dict[str, Any] = {}
    if profile_dir is not None:
        for legs, party in ((800, 10), (400, 2)):
            with kit.timed(f"profile {legs} legs, {party}-party"):
                profiles[f"{party}-party, {legs} legs"] = await profile_tick(
                    legs, party, run_s, profile_dir / f"rtp-{party}-party.txt"
                )
    report = {
        "machine": kit.machine(),
        "run_s": run_s,
        "warmup_s": WARMUP_S,
        "late_threshold_ms": LATE_S * 1000,
        "runs": [
            asdict(r)
            | {"late_pct": round(r.late_pct, 3), "cpu_us_per_leg_tick": round(r.cpu_us_per_leg_tick, 1)}
            for r in results
        ],
        "summary": summary,
        "one_100_party_conference": asdict(one_conf[0]) | {"late_pct": round(one_conf[0].late_pct, 3)}
        if one_conf
        else None,
        "profiles": profiles,
        "srtp_pairs": pairs,
        "loadavg_start": load0,
        "loadavg_end": kit.loadavg(),
        "command": "OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_rtp_legs.py"
        f" --budget {budget_s:g} --run {run_s:g}"
        + (f" --realtime {realtime_priority()}" if realtime_priority() else "")
        + f" --srtp-suite {srtp_suite()}",
    }
    print(
        f"\nMediaEngine load on loopback ({os.cpu_count()} CPUs, Python {sys.version.split()[0]}), "
        f"{run_s:.1f} s runs ({WARMUP_S} s warm-up excluded); engine CPU is the engine process only;"
        f" load average before/after: {load0[0]:.2f} / {kit.loadavg()[0]:.2f}.\n",
        file=sys.stderr,
    )
    print(HEADER, file=sys.stderr)
    for r in results:
        print(r.row(), file=sys.stderr)
    kit.write_result(out, "rtp_legs", report)
    return report


HEADER = (
    "| setup | legs | late ticks % (>5 ms) | max lateness ms | engine CPU s (% of wall) "
    "| packets/s in | packets/s out | engine CPU us per leg-tick | sender CPU | other processes' CPU"
    " | sender late ticks | steal |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--sender":
        sender_cpu = os.environ.get(SENDER_CPU_ENV, str(kit.LOAD_CPU))
        if sender_cpu != "any":
            kit.pin_self(int(sender_cpu))
        if realtime_priority():
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(realtime_priority()))
        key = bytes.fromhex(sys.argv[4]) if len(sys.argv) > 4 else None
        sender_main(int(sys.argv[2]), json.loads(sys.stdin.read()), float(sys.argv[3]), key)
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=180.0, help="seconds after which no run starts")
    parser.add_argument("--run", type=float, default=4.0, help="seconds per run, warm-up included")
    parser.add_argument("--out", default=None, help="JSON results file")
    parser.add_argument("--profile-dir", type=Path, default=None, help="also profile the tick with py-spy")
    parser.add_argument(
        "--legs", default=None, help="comma-separated ladder of N (default: 200,500,1000,...)"
    )
    parser.add_argument("--only", default=None, help="comma-separated words: run the modes naming one")
    parser.add_argument("--pair-legs", type=int, default=PAIR_LEGS, help="N of the plain/SRTP pairs")
    parser.add_argument("--pairs", type=int, default=PAIRS, help="how many plain/SRTP pairs")
    parser.add_argument(
        "--realtime", type=int, default=0, help="SCHED_FIFO priority of the media thread and the sender"
    )
    parser.add_argument(
        "--srtp-suite", default=srtp_suite(), choices=sorted(SUITES), help="the SRTP mode's suite"
    )
    opts = parser.parse_args()
    os.environ[REALTIME_ENV] = str(opts.realtime)
    os.environ[SRTP_SUITE_ENV] = opts.srtp_suite
    steps = LADDER if opts.legs is None else tuple(int(n) for n in opts.legs.split(","))
    # The server's own event loop (uvloop where installed), for the engine and the relay baseline alike.
    run_event_loop(
        main(opts.budget, opts.run, opts.out, opts.profile_dir, steps, opts.only, opts.pair_legs, opts.pairs)
    )
