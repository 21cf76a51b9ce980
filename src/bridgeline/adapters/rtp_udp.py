"""RTP over UDP for the media engine: the port pool, one leg's sockets, receive path and send path.

Each leg owns an even RTP port and the odd port above it. We never send RTCP; the RTCP socket exists
so that peers' reports land somewhere harmless (no ICMP port-unreachable, no stray traffic on a port
that a later leg may get) and are counted.

The sockets are plain non-blocking sockets, not asyncio transports: the engine drains every leg's
sockets once per tick (see media_engine.py), because one event-loop callback per datagram cost more
than all the media work at a few hundred legs.
"""

from __future__ import annotations

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
_G711_SECOND_BYTE: Final = frozenset({g711.PCMU, g711.PCMA, 0x80 | g711.PCMU, 0x80 | g711.PCMA})  # +marker


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
    open_sockets: int = 0


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


class RtpLeg:
    """One call leg's media: inbound jitter buffer and DTMF, outbound RTP stream, optional message.

    Owned by the engine, which feeds it the datagrams of its two sockets; all methods run on the
    event loop thread and never raise on bad input from the network.
    """

    def __init__(
        self,
        leg_id: str,
        port: int,
        rtp_sock: socket.socket,
        rtcp_sock: socket.socket,
        counters: Counters,
        on_dtmf: Callable[[str, str], None],
    ) -> None:
        self.leg_id = leg_id
        self.port = port
        self.rtp_sock = rtp_sock
        self.rtcp_sock = rtcp_sock
        self.counters = counters
        self.on_dtmf = on_dtmf
        counters.open_sockets += 2
        self.closed = False
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
    def rtp_received(self, data: bytes, addr: Address, now: float) -> None:
        counters = self.counters
        if (
            len(data) > 12
            and data[0] == 0x80  # version 2; no padding, extension or CSRCs
            and data[1] in _G711_SECOND_BYTE
            and self.connected
            and data[1] & 0x7F != self.event_pt
        ):
            # The fast lane for plain audio packets: what the general path below does for them,
            # without building an RtpPacket.
            _, b1, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
            counters.packets_in += 1
            self.jitter.push_payload(b1 & 0x7F, sequence, timestamp, ssrc, data[12:], now)
            if addr != self.dest:
                self.dest = addr
            return
        if is_rtcp(data):
            self.rtcp_received(data, addr, now)
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
            self.jitter.push(packet, now)
        else:
            counters.ignored_in += 1  # comfort noise, unnegotiated types: not evidence of the peer
            return
        if addr != self.dest:
            # Symmetric RTP (RFC 4961): the peer may sit behind NAT or send from another port than
            # its SDP says; media it accepts is best sent back to where its media comes from.
            self.dest = addr

    def rtcp_received(self, data: bytes, addr: Address, now: float) -> None:
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
        dest = self.dest
        if not (self.sending and self.connected and dest is not None):  # closing also disconnects
            self._pending.clear()
            self._events.clear()
            self._marker = True  # the next packet starts a new talkspurt
            return
        if self._events:
            self._send_event(ts)
            return
        size = self._ptime_samples
        if size == FRAME_SAMPLES and not self._pending:
            # _emit inlined: this runs for every leg on every tick.
            b1 = self.payload_type | 0x80 if self._marker else self.payload_type
            try:
                self.rtp_sock.sendto(_HEADER.pack(0x80, b1, self._seq, ts, self.ssrc) + codes, dest)
            except OSError:  # BlockingIOError (buffer full), or an ICMP error reported late
                self.counters.send_dropped += 1
                return
            self._marker = False
            self._seq = (self._seq + 1) & 0xFFFF
            self.counters.packets_out += 1
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
        dest = self.dest
        if dest is None or self.closed:
            return
        pt = self.payload_type if payload_type is None else payload_type
        b1 = pt | (0x80 if (self._marker if marker is None else marker) else 0)
        try:
            # Dropped, never queued, when the kernel buffer is full: stale audio is worse than lost audio.
            self.rtp_sock.sendto(_HEADER.pack(0x80, b1, self._seq, ts, self.ssrc) + payload, dest)
        except OSError:  # BlockingIOError (buffer full), or an ICMP error reported late
            self.counters.send_dropped += 1
            return
        self._marker = False
        self._seq = (self._seq + 1) & 0xFFFF
        self.counters.packets_out += 1

    # ---------------------------------------------------------------- sockets
    def close(self) -> None:
        """Stop sending and close both sockets (the engine unregisters them first). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.connected = False
        self.message = self.on_finished = None
        self.rtp_sock.close()
        self.rtcp_sock.close()
        self.counters.open_sockets -= 2
