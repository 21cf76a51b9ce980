"""Test helpers for the engine shell on real UDP sockets: an RTP peer, waits on arriving datagrams
(no pauses), and spectrum measurements of what a peer received.

Pacing without a clock: a talking peer answers every packet the engine sends it with one packet of
its own, so it talks at the engine's 20 ms pace. Waiting without pausing: `until(condition)` is
woken by every datagram any peer receives (the engine sends one per tick to each connected leg) and
gives up at a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import cast

import numpy as np
from numpy.typing import NDArray
from peer_audio import ToneSender, decoded, dominant_freq, level_at, peak_freqs, rms, spectrum

from bridgeline.adapters.carriers.sip.media_engine import MediaEngine
from bridgeline.media import g711
from bridgeline.media.player import ToneSource
from bridgeline.media.rtp import RtpPacket, RtpParseError

__all__ = ["dominant_freq", "level_at", "peak_freqs", "rms", "spectrum"]

Address = tuple[str, int]
RATE = 8000
_waiters: set[asyncio.Future[None]] = set()  # until() calls waiting for the next datagram


@dataclass(frozen=True, slots=True)
class Received:
    at: float  # loop time
    source: Address
    packet: RtpPacket


class RtpPeer(ToneSender, asyncio.DatagramProtocol):
    """Records every RTP packet it gets; once told where to talk, answers each with a G.711 tone
    packet (silence with freq None)."""

    def __init__(self, freq: float | tuple[float, ...] | None, *, payload_type: int = g711.PCMU) -> None:
        self.tone = ToneSource(freq) if freq is not None else None
        self.payload_type = payload_type
        self.received: list[Received] = []
        self.undecodable = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.talk_to: Address | None = None
        self.on_packet: Callable[[], None] | None = None  # extra work per packet received (a flood...)
        self.ssrc = 0x1234_5678
        self.seq = 1000
        self.ts = 50_000

    @classmethod
    async def open(
        cls, freq: float | tuple[float, ...] | None, *, payload_type: int = g711.PCMU, host: str = "127.0.0.1"
    ) -> RtpPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(
            lambda: cls(freq, payload_type=payload_type), local_addr=(host, 0)
        )
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # 3.11's class does not subclass it

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            self.undecodable += 1
            return
        self.received.append(Received(asyncio.get_running_loop().time(), addr, packet))
        if self.talk_to is not None:
            self.send_packet(self.next_audio_packet(), self.talk_to)
        if self.on_packet is not None:
            self.on_packet()
        for waiter in list(_waiters):
            if not waiter.done():
                waiter.set_result(None)

    def error_received(self, exc: Exception) -> None:
        pass

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send_raw(self, data: bytes, dest: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, dest)

    def send_packet(self, packet: RtpPacket, dest: Address) -> None:
        self.send_raw(packet.serialize(), dest)

    def close(self) -> None:
        self.talk_to = None
        if self.transport is not None:
            self.transport.close()

    def pcm_since(self, t: float) -> NDArray[np.int16]:
        """Decoded audio of packets received after loop time t, in sequence order."""
        return decoded(r.packet for r in self.received if r.at >= t)

    def count_since(self, t: float) -> int:
        return sum(1 for r in self.received if r.at >= t)

    async def listen(self, packets: int, within: float = 5.0) -> float:
        """Wait until `packets` more packets have arrived; returns the loop time the wait started
        (a mark for `pcm_since`)."""
        mark = asyncio.get_running_loop().time()
        assert await until(lambda: self.count_since(mark) >= packets, within), "the engine went quiet"
        return mark


async def until(condition: Callable[[], bool], within: float = 3.0) -> bool:
    """Wait until `condition` holds, re-checking it whenever a peer receives a datagram; False after
    `within` seconds (a deadline, not a pause: a passing test never waits for it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        waiter: asyncio.Future[None] = loop.create_future()
        _waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, remaining)
        except TimeoutError:
            return condition()
        finally:
            _waiters.discard(waiter)
    return True


@contextlib.asynccontextmanager
async def peers(*specs: tuple[float | None, int], host: str = "127.0.0.1") -> AsyncIterator[list[RtpPeer]]:
    """Open RtpPeers for (freq, payload_type) pairs (on `host`) and close them afterwards."""
    opened = [await RtpPeer.open(freq, payload_type=pt, host=host) for freq, pt in specs]
    try:
        yield opened
    finally:
        for peer in opened:
            peer.close()
        # Transports close their sockets on the loop's next iteration: let it come.
        loop = asyncio.get_running_loop()
        next_iteration: asyncio.Future[None] = loop.create_future()
        loop.call_soon(next_iteration.set_result, None)
        await next_iteration


def join(
    engine: MediaEngine,
    leg_id: str,
    peer: RtpPeer,
    *,
    send: bool = True,
    telephone_event_pt: int | None = 101,
    ptime_ms: int = 20,
    talk: bool = True,
    sdp_host: str | None = None,
) -> int:
    """Open and connect a leg for `peer` (SDP address = the peer's socket, its host spelt `sdp_host`
    if given); the peer talks back to the engine's host."""
    port = engine.open_leg(leg_id)
    engine.connect_leg(
        leg_id,
        remote=(sdp_host or peer.address[0], peer.address[1]),
        payload_type=peer.payload_type,
        telephone_event_pt=telephone_event_pt,
        send=send,
        ptime_ms=ptime_ms,
    )
    if talk:
        peer.talk_to = (engine.host, port)
    return port


def worker_band(low: int, high: int) -> tuple[int, int]:
    """This pytest-xdist worker's share of [low, high) (the same split as sip_e2e/sipkit.py's Ports,
    over the same band): the engines of one worker never take the ports another worker's peers use."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    share = (high - low) // workers
    return low + worker * share, low + (worker + 1) * share


def port_range(size: int) -> tuple[int, int]:
    """A random even-based range below the Linux ephemeral range (32768+), where test peers bind."""
    low, high = worker_band(21000, 32000)
    base = random.randrange(low + (low & 1), high - size, 2)
    return base, base + size - 1
