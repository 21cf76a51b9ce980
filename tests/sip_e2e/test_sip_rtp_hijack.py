"""RTP bleed on a real server: while two real phones talk, a foreign socket sprays G.711 (its own
tone), RTCP and DTMF events at every port of the server's RTP range. The phones keep hearing each
other and nothing of the spray, and the spraying socket receives no audio at all."""

from __future__ import annotations

import contextlib
import math
import socket
import struct
import threading
import time

import numpy as np
from sipaudio import assert_hears
from siplab import ALL_TONES, TONE_A, TONE_B, TONE_D, Lab

from bridgeline.media import g711


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


class Sprayer:
    """A foreign UDP socket sending one packet of each kind to every RTP (and RTCP) port of the
    range every 20 ms, for a bounded time, and counting what it gets back."""

    def __init__(self, ports: range, freq: int, seconds: float) -> None:
        self.ports = [p for p in ports if p % 2 == 0]
        self.seconds = seconds
        samples = np.arange(160 * 50) / 8000
        tone = (8000 * np.sin(2 * math.pi * freq * samples)).astype(np.int16)
        self.frames = [
            g711.encode_array(g711.PCMU, tone[i : i + 160]).tobytes() for i in range(0, tone.size, 160)
        ]
        self.received = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.thread = threading.Thread(target=self._run, name="rtp-sprayer", daemon=True)

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
            self.received += 1

    def _run(self) -> None:
        start = time.monotonic()
        n = 0
        while (now := time.monotonic()) < start + self.seconds:
            frame = self.frames[n % len(self.frames)]
            audio = struct.pack("!BBHII", 0x80, 0, n & 0xFFFF, n * 160, 0x0BAD0BAD) + frame
            event = struct.pack("!BBHII", 0x80, 101, n & 0xFFFF, 0, 0x0BAD0BAD) + bytes([5, 0x0A, 0, 160])
            rtcp = bytes([0x81, 201, 0, 1]) + struct.pack("!I", 0x0BAD0BAD)
            for port in self.ports:
                for data, dest in ((audio, port), (event, port), (rtcp, port + 1)):
                    with contextlib.suppress(OSError):  # ICMP port unreachable from a port nobody holds
                        self.sock.sendto(data, ("127.0.0.1", dest))
            self._drain()
            n += 1
            time.sleep(max(start + n * 0.02 - now, 0))
        time.sleep(0.2)
        self._drain()


def test_a_foreign_spray_does_not_take_over_a_live_call(lab: Lab) -> None:
    agent = lab.sipp_phone("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    mpc_uuid = lab.connected(phlo, customer.uri, hears=[agent.uri])["mpc_uuid"]
    lab.connected(phlo, agent.uri, hears=[customer.uri])
    time.sleep(0.5)  # both legs have latched to their phones

    with Sprayer(lab.server.rtp_range, TONE_D, seconds=2.0) as sprayer:
        under_attack = lab.listen(seconds=1.2, settle=0.4)
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.mpc(phlo).member(customer.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, agent, customer)

    assert sprayer.received == 0, f"the spraying socket got {sprayer.received} datagrams"
    refused = lab.server.metrics()
    assert refused["bridgeline_sip_rtp_refused_foreign_source_total"] > 0, refused
    assert_hears(lab.heard(agent, under_attack), [TONE_B], others(TONE_B), min_seconds=1.0)
    assert_hears(lab.heard(customer, under_attack), [TONE_A], others(TONE_A), min_seconds=1.0)
    assert lab.server.healthy()
