"""A foreign RTP source for the RTP bleed tests: a UDP socket that sends, every `interval_s` for a
bounded time, one G.711 packet of its own tone and one DTMF event to each RTP port given (and RTCP to
the odd port above), and records when it got anything back."""

from __future__ import annotations

import contextlib
import math
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable

import numpy as np

from bridgeline.media import g711


class Sprayer:
    """`ports`: the even RTP ports to spray, or a callable that returns them once known (None
    meanwhile: nothing is sent yet). `host`: ours and theirs, 127.0.0.1 or ::1."""

    def __init__(
        self,
        ports: Iterable[int] | Callable[[], list[int] | None],
        freq: int,
        seconds: float,
        *,
        host: str = "127.0.0.1",
        interval_s: float = 0.02,
    ) -> None:
        if callable(ports):
            self._ports = ports
        else:
            fixed = [p for p in ports if p % 2 == 0]
            self._ports = lambda: fixed
        self.host = host
        self.seconds = seconds
        self.interval_s = interval_s
        samples = np.arange(160 * 50) / 8000
        tone = (8000 * np.sin(2 * math.pi * freq * samples)).astype(np.int16)
        self.frames = [
            g711.encode_array(g711.PCMU, tone[i : i + 160]).tobytes() for i in range(0, tone.size, 160)
        ]
        self.received_at: list[float] = []  # time.time() of each datagram it got back
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.thread = threading.Thread(target=self._run, name="rtp-sprayer", daemon=True)

    @property
    def received(self) -> int:
        return len(self.received_at)

    def received_since(self, moment: float) -> int:
        return sum(1 for at in self.received_at if at >= moment)

    def __enter__(self) -> Sprayer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(self.seconds + 5)
        self.sock.close()

    def _drain(self) -> None:
        while True:
            try:
                self.sock.recv(2048)
            except OSError:
                return
            self.received_at.append(time.time())

    def _run(self) -> None:
        start = time.monotonic()
        n = 0
        while (now := time.monotonic()) < start + self.seconds:
            ports = self._ports() or []
            frame = self.frames[n % len(self.frames)]
            audio = struct.pack("!BBHII", 0x80, 0, n & 0xFFFF, n * 160, 0x0BAD0BAD) + frame
            event = struct.pack("!BBHII", 0x80, 101, n & 0xFFFF, 0, 0x0BAD0BAD) + bytes([5, 0x0A, 0, 160])
            rtcp = bytes([0x81, 201, 0, 1]) + struct.pack("!I", 0x0BAD0BAD)
            for port in ports:
                for data, dest in ((audio, port), (event, port), (rtcp, port + 1)):
                    with contextlib.suppress(OSError):  # ICMP port unreachable from a port nobody holds
                        self.sock.sendto(data, (self.host, dest))
            self._drain()
            n += 1
            time.sleep(max(start + n * self.interval_s - now, 0))
        time.sleep(0.2)
        self._drain()
