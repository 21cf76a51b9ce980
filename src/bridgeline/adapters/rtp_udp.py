"""RTP over UDP for the media engine: the port pool, one leg's sockets, receive path and send path.

Each leg owns an even RTP port and the odd port above it. We never send RTCP; the RTCP socket exists
so that peers' reports land somewhere harmless (no ICMP port-unreachable, no stray traffic on a port
that a later leg may get) and are counted.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import socket
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog

from bridgeline.media import g711
from bridgeline.media.dtmf import DtmfReceiver, TelephoneEvent, dtmf_events
from bridgeline.media.jitter import JitterBuffer
from bridgeline.media.player import AudioSource
from bridgeline.media.rtp import RtpPacket, RtpParseError, is_rtcp, parse_rtcp

log = structlog.get_logger(__name__)

Address = tuple[str, int]
FRAME_SAMPLES: Final = 160  # one 20 ms tick at 8 kHz; G.711 is one byte per sample
_HEADER = struct.Struct("!BBHII")
_UNROUTABLE: Final = frozenset({"0.0.0.0", "::"})  # RFC 2543-style hold address: send nothing


class MediaPortsExhausted(RuntimeError):
    """No free RTP/RTCP port pair is left in the configured range."""


@dataclass(slots=True)
class Counters:
    """Engine-wide packet counters, shared by every leg."""

    packets_in: int = 0
    packets_out: int = 0
    malformed_in: int = 0
    rtcp_in: int = 0
    ignored_in: int = 0  # valid RTP we do not use: unknown payload type, or before connect_leg
    send_dropped: int = 0  # the kernel would not take the packet (send buffer full)
    open_transports: int = 0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class PortPool:
    """Even RTP ports in [port_min, port_max] whose odd neighbour is in range too.

    Released ports go to the back of the queue, so a port is reused as late as possible and stray
    packets for a finished call are unlikely to reach the next one. Ports that another process holds
    are skipped (and retried later), not treated as fatal.
    """

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        if not 0 < port_min <= port_max <= 65535:
            raise ValueError(f"bad RTP port range {port_min}-{port_max}")
        self.host = host
        first = port_min + (port_min & 1)
        self._free: deque[int] = deque(range(first, port_max, 2))  # range end excludes an even port_max
        self.capacity = len(self._free)
        if not self.capacity:
            raise ValueError(f"RTP port range {port_min}-{port_max} holds no even/odd port pair")

    @property
    def free(self) -> int:
        return len(self._free)

    def bind_pair(self) -> tuple[int, socket.socket, socket.socket]:
        for _ in range(len(self._free)):
            port = self._free.popleft()
            try:
                rtp = _bind(self.host, port)
            except OSError:
                self._free.append(port)
                continue
            try:
                rtcp = _bind(self.host, port + 1)
            except OSError:
                rtp.close()
                self._free.append(port)
                continue
            return port, rtp, rtcp
        raise MediaPortsExhausted(f"no free RTP port pair on {self.host} ({self.capacity} in the range)")

    def release(self, port: int) -> None:
        self._free.append(port)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(
        self,
        on_datagram: Callable[[bytes, Address], None],
        on_made: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        self.on_datagram = on_datagram
        self.on_made = on_made
        self.on_lost = on_lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.on_made()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (e.g. port unreachable while the peer is not yet listening) surface here for a
        # later socket call; they say nothing about our own socket, so they are ignored.
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost()


class RtpLeg:
    """One call leg's media: inbound jitter buffer and DTMF, outbound RTP stream, optional message.

    Owned by the engine; all methods run on the event loop thread and never raise on bad input
    from the network.
    """

    def __init__(
        self,
        leg_id: str,
        port: int,
        counters: Counters,
        clock: Callable[[], float],
        on_dtmf: Callable[[str, str], None],
        released: Callable[[int], None],
    ) -> None:
        self.leg_id = leg_id
        self.port = port
        self.counters = counters
        self.clock = clock
        self.on_dtmf = on_dtmf
        self._released = released  # hands the port back to the pool
        self._live = 0  # transports made and not yet lost
        self._opening = False
        self._port_returned = False
        self.closed = False
        self.rtp: asyncio.DatagramTransport | None = None
        self._send_sock: socket.socket | None = None  # the RTP socket, while its transport is open
        self.rtcp: asyncio.DatagramTransport | None = None
        self.connected = False
        self.payload_type: int = g711.PCMU
        self.sending = False
        self.dest: Address | None = None  # SDP address, replaced by the latched source address
        self._sdp_remote: Address | None = None
        self.jitter = JitterBuffer()
        self.dtmf: DtmfReceiver | None = None
        self.event_pt: int | None = None  # the peer's telephone-event payload type, if negotiated
        self._events: deque[TelephoneEvent] = deque()  # DTMF to send, one packet per tick
        self._event_ts = 0
        self.message: AudioSource | None = None
        self.on_finished: Callable[[], None] | None = None
        # Random initial SSRC, sequence and timestamp, as RFC 3550 asks (makes streams unguessable).
        self.ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._marker = True
        self._ptime_samples = FRAME_SAMPLES
        self._pending = bytearray()  # encoded audio not yet sent, for ptime other than 20 ms
        self._pending_ts = 0

    # ---------------------------------------------------------------- configuration
    def connect(
        self, remote: Address, payload_type: int, telephone_event_pt: int | None, send: bool, ptime_ms: int
    ) -> None:
        if not g711.is_g711(payload_type):
            raise ValueError(f"payload type {payload_type} is not G.711 (PCMU 0 / PCMA 8)")
        if not (10 <= ptime_ms <= 120 and ptime_ms % 10 == 0):
            raise ValueError(f"unsupported ptime {ptime_ms} ms (10..120, multiple of 10)")
        self.payload_type = payload_type
        self.dtmf = DtmfReceiver(telephone_event_pt) if telephone_event_pt is not None else None
        self.event_pt = telephone_event_pt
        self._ptime_samples = ptime_ms * 8
        self._pending.clear()
        self.update(remote, send)
        self.connected = True

    def update(self, remote: Address | None, send: bool | None) -> None:
        if remote is not None and remote != self._sdp_remote:
            # Only a changed SDP address overrides the latched one: re-INVITEs for hold/resume
            # repeat the old address, which behind NAT is not where the media comes from.
            self._sdp_remote = remote
            self.dest = None if remote[0] in _UNROUTABLE or not remote[1] else remote
        if send is not None:
            self.sending = send

    # ---------------------------------------------------------------- receive
    def rtp_received(self, data: bytes, addr: Address) -> None:
        counters = self.counters
        if is_rtcp(data):
            self.rtcp_received(data, addr)
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            counters.malformed_in += 1
            return
        counters.packets_in += 1
        pt = packet.payload_type
        if not self.connected:
            counters.ignored_in += 1
            return
        if self.dtmf is not None and pt == self.dtmf.payload_type:
            digit = self.dtmf.push(packet)
            if digit is not None:
                self._report_dtmf(digit)
        elif g711.is_g711(pt):
            self.jitter.push(packet, self.clock())
        else:
            counters.ignored_in += 1  # comfort noise, unnegotiated types: not evidence of the peer
            return
        if addr != self.dest:
            # Symmetric RTP (RFC 4961): the peer may sit behind NAT or send from another port than
            # its SDP says; media it accepts is best sent back to where its media comes from.
            self.dest = addr

    def rtcp_received(self, data: bytes, addr: Address) -> None:
        try:
            for _ in parse_rtcp(data):
                pass
        except RtpParseError:
            self.counters.malformed_in += 1
            return
        self.counters.rtcp_in += 1

    def _report_dtmf(self, digit: str) -> None:
        try:
            self.on_dtmf(self.leg_id, digit)
        except Exception:  # a callback bug must not break the receive path
            log.exception("media.dtmf_callback_failed", leg_id=self.leg_id)

    # ---------------------------------------------------------------- send
    def queue_dtmf(self, digit: str) -> bool:
        """Send a digit as RFC 4733 events over the next ticks; False if the peer negotiated none."""
        if self.event_pt is None or not self.connected:
            return False
        self._events.extend(dtmf_events(digit))
        return True

    def send_tick(self, codes: bytes) -> None:
        """Send one tick (160 encoded samples). The RTP clock advances even while nothing is sent."""
        ts = self._ts
        self._ts = (ts + FRAME_SAMPLES) & 0xFFFF_FFFF
        if not (self.sending and self.connected and self.dest is not None):
            self._pending.clear()
            self._events.clear()
            self._marker = True  # the next packet starts a new talkspurt
            return
        if self._events:
            self._send_event(ts)
            return
        size = self._ptime_samples
        if size == FRAME_SAMPLES and not self._pending:
            self._emit(codes, ts)
            return
        if not self._pending:
            self._pending_ts = ts
        self._pending += codes
        while len(self._pending) >= size:
            self._emit(bytes(self._pending[:size]), self._pending_ts)
            del self._pending[:size]
            self._pending_ts = (self._pending_ts + size) & 0xFFFF_FFFF

    def _send_event(self, ts: int) -> None:
        """One telephone-event packet instead of this tick's audio (RFC 4733 2.5: no audio meanwhile).

        Every packet of an event carries the event's start timestamp; the marker flags its first."""
        event = self._events.popleft()
        first = event.duration <= FRAME_SAMPLES and not event.end
        if first:
            self._event_ts = ts
        self._pending.clear()
        self._emit(bytes(event), self._event_ts, payload_type=self.event_pt, marker=first)
        if not self._events or (self._events[0].duration <= FRAME_SAMPLES and not self._events[0].end):
            self._marker = True  # audio after an event starts a new talkspurt

    def _emit(
        self, payload: bytes, ts: int, *, payload_type: int | None = None, marker: bool | None = None
    ) -> None:
        sock, dest = self._send_sock, self.dest
        if sock is None or dest is None:
            return
        pt = self.payload_type if payload_type is None else payload_type
        b1 = pt | (0x80 if (self._marker if marker is None else marker) else 0)
        try:
            # Straight to the socket, not through transport.sendto: that would queue in user space
            # when the kernel buffer is full (stale audio is worse than lost audio), and its
            # bookkeeping costs more than the send itself at thousands of packets per second.
            sock.sendto(_HEADER.pack(0x80, b1, self._seq, ts, self.ssrc) + payload, dest)
        except OSError:  # BlockingIOError (buffer full), or an ICMP error reported late
            self.counters.send_dropped += 1
            return
        self._marker = False
        self._seq = (self._seq + 1) & 0xFFFF
        self.counters.packets_out += 1

    # ---------------------------------------------------------------- sockets
    async def open(self, rtp_sock: socket.socket, rtcp_sock: socket.socket) -> None:
        """Wrap the bound sockets in transports. If the leg is closed meanwhile, close what was made."""
        loop = asyncio.get_running_loop()
        socks = [rtp_sock, rtcp_sock]
        self._opening = True
        try:
            for sock, handler in ((rtp_sock, self.rtp_received), (rtcp_sock, self.rtcp_received)):
                factory = functools.partial(_Protocol, handler, self._transport_made, self._transport_lost)
                transport, _ = await loop.create_datagram_endpoint(factory, sock=sock)
                socks.remove(sock)
                if sock is rtp_sock:
                    self.rtp = transport
                    self._send_sock = None if self.closed else sock
                else:
                    self.rtcp = transport
                if self.closed:
                    transport.close()
        finally:
            for sock in socks:  # not (or no longer) owned by a transport: close it here (idempotent)
                sock.close()
            self._opening = False
            self._maybe_release()

    def close(self) -> None:
        """Stop everything; the port is handed back once both sockets are really closed."""
        if self.closed:
            return
        self.closed = True
        self.connected = False
        self._send_sock = None
        self.message = self.on_finished = None
        for transport in (self.rtp, self.rtcp):
            if transport is not None:
                transport.close()
        self._maybe_release()

    def _transport_made(self) -> None:
        # Counted from the protocol callbacks, which asyncio always pairs (made before lost), even
        # when open() is cancelled and asyncio closes a half-made transport itself.
        self.counters.open_transports += 1
        self._live += 1

    def _transport_lost(self) -> None:
        self.counters.open_transports -= 1
        self._live -= 1
        self._maybe_release()

    def _maybe_release(self) -> None:
        # The port goes back only when no socket on it can still be open, and only once.
        if self.closed and not self._live and not self._opening and not self._port_returned:
            self._port_returned = True
            self._released(self.port)
