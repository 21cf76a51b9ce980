"""The RTP load that bench_rtp_legs.py (and recording_engine_cost.py, scale_out_rtp.py) measure the
media engine with: a sender process that spreads N PCMU streams (plain or SRTP) over each 20 ms period
and drains what comes back, the MediaEngine with N legs in conferences fed by it, the echo relay
baseline, and one measured run's Result (late ticks, the engine process's CPU, packets per second).

`python bench/rtp_load.py --sender FD SECONDS [KEY]` is the sender process (ports on stdin).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import benchkit as kit
import numpy as np

from bridgeline.adapters.carriers.sip.media_engine import MediaEngine, SrtpKeys
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.media import g711, runtime
from bridgeline.media.srtp import Inbound, SrtpContext, ToProtect, key_length

PORT_MIN, PORT_MAX = 24000, 31999  # below the ephemeral range; room for 4000 legs
WARMUP_S = 0.5
LATE_S = 0.005
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
    # Every packet is made (and protected) before the run, so that while it runs the sender does
    # the same work in both modes: its own SRTP would otherwise load the machine in the SRTP mode
    # only (the engine's neighbour core, and the caches they share). 3,000 legs for 6 s: ~200 MB.
    periods = int(seconds * 50)
    packets = [
        [
            protect(header.pack(0x80, 0, n & 0xFFFF, n * 160, i + 1) + frames[n % 50])
            for i in range(len(dests))
        ]
        for n in range(periods)
    ]
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
    for n in range(periods):
        if n % 5 == 0:
            marks.append((time.monotonic(), sent))
        period = packets[n]
        for k, slot in enumerate(slots):
            delay = start + n * 0.02 + k * 0.02 / SLOTS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -LATE_S and k == 0:
                late += 1
            for i, dest in slot:
                try:
                    sock.sendto(period[i], dest)
                    sent += 1
                except OSError:
                    send_errors += 1
            while True:
                try:
                    sock.recv_into(buf)
                except OSError:  # BlockingIOError when drained
                    break
                received += 1
        packets[n] = []  # sent: let it go
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
    # CPU ns per packet inside the runtime's two SRTP batch calls (--srtp-call-times), else None
    srtp_call_ns: dict[str, float] | None = None

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
            + ("" if not self.srtp_call_ns else f" SRTP calls, ns per packet: {self.srtp_call_ns}")
        )


class SrtpCallClock:
    """`--srtp-call-times`: CPU time on the media thread inside the runtime's two SRTP batch calls
    (`protect_all` at each tick's end, `unprotect_all` per read round), by wrapping the names
    media/runtime.py calls them by (bench-only). What SRTP adds beyond them is the rest of the
    run's extra CPU: the Python around the calls, and other code's cache misses."""

    def __init__(self) -> None:
        self.totals = {"protect_ns": 0, "protect_n": 0, "unprotect_ns": 0, "unprotect_n": 0}

    def install(self) -> None:
        protect, unprotect, clock, totals = (
            runtime.protect_all,  # type: ignore[attr-defined]  # imported there by name
            runtime.unprotect_all,  # type: ignore[attr-defined]
            time.thread_time_ns,
            self.totals,
        )

        def timed_protect(pending: list[ToProtect], out: list[Any]) -> int:
            start = clock()
            refused = protect(pending, out)
            totals["protect_ns"] += clock() - start
            totals["protect_n"] += len(pending)
            return refused

        def timed_unprotect(arrived: list[Any], inbound: Inbound) -> list[Any]:
            start = clock()
            checked = unprotect(arrived, inbound)
            totals["unprotect_ns"] += clock() - start
            totals["unprotect_n"] += len(arrived)
            return checked

        runtime.protect_all, runtime.unprotect_all = timed_protect, timed_unprotect  # type: ignore[attr-defined]


CALL_CLOCK: SrtpCallClock | None = None


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
    d = {k: s1[k] - s0[k] for k in s1 if k != "max_late_ms"}
    calls: dict[str, float] | None = None
    if "protect_n" in d:
        calls = {call: round(d[f"{call}_ns"] / max(d[f"{call}_n"], 1)) for call in ("protect", "unprotect")}
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
        calls,
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
            engine.set_routes(f"conf{c}", routes, MusicSources())
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
                **(CALL_CLOCK.totals if CALL_CLOCK is not None and srtp else {}),
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


def time_srtp_calls() -> None:
    """From now on, SRTP runs report the time inside the runtime's SRTP batch calls."""
    global CALL_CLOCK
    CALL_CLOCK = SrtpCallClock()
    CALL_CLOCK.install()


if __name__ == "__main__" and len(sys.argv) >= 2 and sys.argv[1] == "--sender":
    sender_cpu = os.environ.get(SENDER_CPU_ENV, str(kit.LOAD_CPU))
    if sender_cpu != "any":
        kit.pin_self(int(sender_cpu))
    if realtime_priority():
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(realtime_priority()))
    key = bytes.fromhex(sys.argv[4]) if len(sys.argv) > 4 else None
    sender_main(int(sys.argv[2]), json.loads(sys.stdin.read()), float(sys.argv[3]), key)
