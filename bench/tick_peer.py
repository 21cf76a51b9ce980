"""The RTP peer of bench_tick_isolation.py: a child process, pinned to the load core, that owns one
UDP socket per measured leg (the sockets whose ports the UAS put in its SDP answers).

Every 20 ms it sends each leg one PCMU packet of a 440 Hz tone (legs spread over the period, as
phones start at random phases) and, in one epoll loop, records every RTP packet the server sends:
(leg, time.perf_counter_ns() after recvmsg, the kernel's receive timestamp (SO_TIMESTAMPNS), RTP
timestamp). The kernel timestamp is taken when the datagram reaches the socket (on loopback: in the
server's sendto), so it does not include this process's own scheduling delays; it is CLOCK_REALTIME,
mapped afterwards to the monotonic clock with a linear correction for NTP slewing.

It stops when its stdin closes, or after its time limit; the records go to a .npy file.
Run (by bench_tick_isolation.py only): python bench/tick_peer.py '{"legs": [...], "seconds": s, "out": f}'
"""

from __future__ import annotations

import json
import math
import select
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchkit as kit
import numpy as np

from bridgeline.media.g711 import ulaw_encode

PERIOD_NS = 20_000_000
SAMPLES_PER_PACKET = 160
LATE_SEND_NS = 5_000_000  # the peer's own sends that start this late are counted (a disturbance)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not export it
PEER_LIMIT_S = 300.0  # the peer stops on its own after this, whatever happens to its parent


def realtime_to_mono_ns(samples: list[tuple[int, int]]) -> tuple[float, float]:
    """(offset at the first sample, drift per ns) between CLOCK_REALTIME and the monotonic clock,
    from (realtime, monotonic) pairs: kernel timestamps are realtime, which NTP may slew."""
    (r0, m0), (r1, m1) = samples[0], samples[-1]
    drift = ((r1 - m1) - (r0 - m0)) / max(m1 - m0, 1)
    return float(r0 - m0), drift


def peer_main(spec: dict[str, Any]) -> None:
    """Send a tone to every leg each 20 ms and record what arrives, until stdin closes."""
    kit.pin_self(kit.LOAD_CPU)
    legs = spec["legs"]
    socks = [socket.socket(fileno=int(leg["fd"])) for leg in legs]
    poller = select.epoll()
    for sock in socks:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        poller.register(sock.fileno(), select.EPOLLIN)
        while True:  # what piled up before this process took the socket is not measured
            try:
                sock.recv(2048)
            except BlockingIOError:
                break
    poller.register(sys.stdin.fileno(), select.EPOLLIN)
    by_fd = {sock.fileno(): i for i, sock in enumerate(socks)}
    dests = [(str(leg["host"]), int(leg["port"])) for leg in legs]
    t = np.arange(SAMPLES_PER_PACKET * 50) / 8000
    tone = ulaw_encode((np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16))
    frames = [tone[k * 160 : (k + 1) * 160] for k in range(50)]
    header = struct.Struct("!BBHII")
    records: list[tuple[int, int, int, int]] = []  # leg, perf_ns, kernel realtime ns, RTP timestamp
    clocks = [(time.time_ns(), time.perf_counter_ns())]
    sent = send_errors = late_sends = 0
    n = len(legs)
    start = time.perf_counter_ns()
    limit = start + int(min(float(spec["seconds"]), PEER_LIMIT_S) * 1e9)
    next_send = [start + i * PERIOD_NS // n for i in range(n)]  # legs spread over the period
    count = [0] * n
    stop = False
    print("ready", flush=True)
    while not stop:
        now = time.perf_counter_ns()
        if now > limit:
            break
        due = min(next_send)
        for fd, _ in poller.poll(max(due - now, 0) / 1e9):
            if fd == sys.stdin.fileno():
                stop = True  # the parent closed our stdin: the run is over
                continue
            i = by_fd[fd]
            sock = socks[i]
            while True:
                try:
                    data, anc, _, _ = sock.recvmsg(2048, 64)
                except BlockingIOError:
                    break
                arrived = time.perf_counter_ns()
                kernel = 0
                for level, kind, cdata in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", cdata[:16])
                        kernel = sec * 1_000_000_000 + nsec
                if len(data) >= 12:
                    records.append((i, arrived, kernel, struct.unpack_from("!I", data, 4)[0]))
        now = time.perf_counter_ns()
        for i in range(n):
            if next_send[i] > now:
                continue
            if now - next_send[i] > LATE_SEND_NS:
                late_sends += 1
            k = count[i]
            try:
                socks[i].sendto(
                    header.pack(0x80, 0, k & 0xFFFF, k * 160, 0x7100 + i) + frames[k % 50], dests[i]
                )
                sent += 1
            except OSError:
                send_errors += 1
            count[i] += 1
            next_send[i] += PERIOD_NS
    clocks.append((time.time_ns(), time.perf_counter_ns()))
    np.save(spec["out"], np.array(records, dtype=np.int64).reshape(-1, 4))
    offset, drift = realtime_to_mono_ns(clocks)
    summary = {"sent": sent, "send_errors": send_errors, "late_sends": late_sends, "received": len(records)}
    print(json.dumps({**summary, "clock_offset_ns": offset, "clock_drift": drift, "t0_ns": clocks[0][1]}))


@dataclass
class Peer:
    proc: subprocess.Popen[str]
    out: Path

    @classmethod
    def spawn(cls, legs: list[dict[str, Any]], fds: list[int], seconds: float, out: Path) -> Peer:
        proc = subprocess.Popen(
            [
                *kit.pin_prefix(kit.LOAD_CPU),
                kit.PYTHON,
                __file__,
                json.dumps({"legs": legs, "seconds": seconds, "out": str(out)}),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=fds,
        )
        assert proc.stdout is not None
        started, _, _ = select.select([proc.stdout], [], [], 30)  # bounded: a stuck peer fails the run
        line = proc.stdout.readline() if started else "(nothing within 30 s)"
        if line.strip() != "ready":
            proc.kill()
            proc.wait()
            raise RuntimeError(f"RTP peer failed to start: {line!r}")
        return cls(proc, out)

    def finish(self, timeout: float = 30.0) -> tuple[dict[str, Any], np.ndarray]:
        try:
            out, _ = self.proc.communicate(timeout=timeout)  # closes stdin: the peer stops
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("RTP peer did not stop") from None
        if self.proc.returncode != 0:
            raise RuntimeError(f"RTP peer exited {self.proc.returncode}")
        summary = dict(json.loads(out.strip().splitlines()[-1]))
        return summary, np.load(self.out)


def to_monotonic(records: np.ndarray, peer: dict[str, Any]) -> np.ndarray:
    """Kernel realtime timestamps -> the monotonic clock, correcting a linear (NTP slew) drift."""
    out = records.copy()
    kernel = out[:, 2].astype(np.float64)
    missing = out[:, 2] == 0
    mono_guess = kernel - peer["clock_offset_ns"]
    mono = mono_guess - peer["clock_drift"] * (mono_guess - peer["t0_ns"])
    out[:, 2] = np.where(missing, out[:, 1], mono.astype(np.int64))
    return out


if __name__ == "__main__":
    peer_main(json.loads(sys.argv[1]))
