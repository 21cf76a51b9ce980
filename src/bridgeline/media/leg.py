"""One call leg's media, without sockets: source latching, the inbound jitter buffer and DTMF, and the
outbound RTP stream as datagrams for the shell to send.

Each leg has an RTP and an RTCP port (the shell owns the sockets). We never send RTCP; what arrives
on the RTCP port is checked and counted.

Latching (who may feed a leg, and where its media goes): its state and rules are `Leg`'s base class,
`leg_latching.py`'s `SourceLatching`; the receive paths here apply them.

SRTP (a leg connected with `SrtpKeys`): every datagram is authenticated (and decrypted) before
latching or anything else looks at it, so a forged, corrupted or replayed packet is dropped and counted
(`srtp_auth_failed`, `srtp_replayed`, reported as `SrtpDropped` at most once per refusal interval
for the whole runtime) and can neither latch nor move the latch. A read round's RTP is unprotected
before any leg sees it, every SRTP leg's in one call (`srtp.unprotect_all`, from the runtime's
`receive_all`, which hands each leg its result in arrival order); the legs keep the runtime's map of
whose RTP that call checks (`_sync_inbound`). What we send is protected last,
at the end of the tick, every SRTP leg's packets in one call (`srtp.protect_all`); a packet libsrtp
refuses to protect is counted (`srtp_protect_failed`) and not sent, and its sequence number is a
gap. RTCP arriving is SRTCP, checked the same way; we still send none.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from bridgeline.media import g711, g722, opus
from bridgeline.media.dtmf import DtmfReceiver, TelephoneEvent, dtmf_events
from bridgeline.media.jitter import Frame, JitterBuffer, decode_frame
from bridgeline.media.leg_latching import SourceLatching
from bridgeline.media.leg_types import DEFAULT_LATCH, Address, Counters, LatchPolicy, check_media_params
from bridgeline.media.opus_jitter import OpusJitterBuffer
from bridgeline.media.player import AudioSource
from bridgeline.media.resample import Downsampler, Upsampler
from bridgeline.media.rtp import RtpPacket, RtpParseError, is_rtcp, parse_rtcp
from bridgeline.media.srtp import Inbound, SrtpContext, SrtpKeys, SrtpRefused, ToProtect

# One datagram to send: (leg id, RTP bytes, destination). Only RTP is ever sent.
Outgoing = tuple[str, bytes, Address]
FRAME_SAMPLES: Final = 160  # one 20 ms tick at 8 kHz; G.711 is one byte per sample
_HEADER = struct.Struct("!BBHII")
_G711_SECOND_BYTE: Final = frozenset({g711.PCMU, g711.PCMA, 0x80 | g711.PCMU, 0x80 | g711.PCMA})  # +marker
_G722_SECOND_BYTE: Final = frozenset({g722.PAYLOAD_TYPE, 0x80 | g722.PAYLOAD_TYPE})


class Leg(SourceLatching):
    """One leg's media state. Owned by the runtime, which feeds it datagrams and asks it for one
    tick of RTP; never raises on bad input from the network."""

    def __init__(
        self,
        leg_id: str,
        counters: Counters,
        out: list[Outgoing],
        to_protect: list[ToProtect],
        inbound: Inbound,
        events: list[Any],  # the runtime's event list (runtime.MediaEvent values)
        on_dtmf: Callable[[str, str], None],
        rng: random.Random,
        policy: LatchPolicy = DEFAULT_LATCH,
    ) -> None:
        super().__init__(leg_id, counters, events, policy)
        self._out = out  # the runtime's outbox, emptied by the shell after each tick
        self._to_protect = to_protect  # SRTP datagrams, protected into `out` at the end of the tick
        # The runtime's map of connected SRTP legs to their unprotect, which it applies to a read
        # round's RTP before handing it over (`receive_all`): in step with `srtp` and `connected`.
        self._inbound = inbound
        self.on_dtmf = on_dtmf
        self.closed = False
        self.connected = False
        self.payload_type: int = g711.PCMU  # the codec (RFC 3551 static number)
        self.wire_pt: int = g711.PCMU  # its number in the SDP and on the wire
        self.sending = False
        self.jitter: JitterBuffer | OpusJitterBuffer = JitterBuffer()
        self._audio_second_byte = _G711_SECOND_BYTE  # the receive fast lane's audio types
        # G.722 legs: the codec's per-leg state; in a wideband mix, G.711 legs' resamplers (made
        # when first needed: an all-G.711 server never builds one).
        self.g722: g722.G722Stream | None = None
        self.opus: opus.OpusStream | None = None  # an Opus leg's codec state
        self._up_in: Upsampler | None = None  # a G.711 leg's voice, to 16 kHz
        self._down_out: Downsampler | None = None  # a wideband mix, to a G.711 leg
        self._up_out: Upsampler | None = None  # 8 kHz material (messages, music), to a wideband leg
        self.dtmf: DtmfReceiver | None = None
        self.event_pt: int | None = None  # the peer's telephone-event payload type, if negotiated
        self._dtmf_out: deque[TelephoneEvent] = deque()  # DTMF to send, one packet per tick
        self._event_ts = 0
        self.message: AudioSource | None = None
        self.message_token: object = None  # handed back in PlaybackFinished
        # This tick's frame from the jitter buffer, kept only while recording taps run (routes.py).
        self.last_frame: Frame | None = None
        # Random initial SSRC, sequence and timestamp, as RFC 3550 asks (makes streams unguessable:
        # the shell passes an OS-entropy generator).
        self.ssrc = rng.getrandbits(32)
        self._seq = rng.getrandbits(16)
        self._ts = rng.getrandbits(32)
        self._marker = True
        self._ptime_samples = FRAME_SAMPLES
        self._ts_step = FRAME_SAMPLES  # RTP timestamp units per tick: 960 on Opus's 48 kHz clock
        self._pending = bytearray()  # encoded audio not yet sent, for ptime other than 20 ms
        self._pending_ts = 0
        self.srtp: SrtpContext | None = None  # set at connect when the call negotiated SRTP

    # ---------------------------------------------------------------- configuration
    def connect(
        self,
        remote: Address,
        payload_type: int,
        telephone_event_pt: int | None,
        send: bool,
        ptime_ms: int,
        now: float,
        srtp: SrtpKeys | None = None,
        wire_payload_type: int | None = None,
        fmtp: str | None = None,
    ) -> None:
        """`payload_type`: the codec, by RFC 3551's static number (0, 8, 9; `opus.CODEC_ID` for
        Opus, which has none); `wire_payload_type`: the number the SDP gave it, when a dynamic one
        (sent, and mapped back on receipt); `fmtp`: the peer's format parameters (Opus reads them)."""
        check_media_params(payload_type, ptime_ms)
        # Until connected again, this leg's packets take the path that unprotects them one by one.
        self._inbound.pop(self.leg_id, None)
        self.srtp = None if srtp is None else SrtpContext(srtp)  # a new session: fresh contexts
        is_opus = payload_type == opus.CODEC_ID
        wideband = payload_type == g722.PAYLOAD_TYPE
        if is_opus and self.opus is None:
            self.g722 = None
            self.opus = opus.OpusStream(opus.OpusParams.from_fmtp(fmtp))
            self.jitter = OpusJitterBuffer(self.opus)
        elif not is_opus and (self.opus is not None or wideband != (self.g722 is not None)):
            # A new codec family: a new jitter buffer (codes of the old codec must not be decoded
            # by the new one) and fresh codec state.
            self.opus = None
            self.g722 = g722.G722Stream() if wideband else None
            self.jitter = JitterBuffer(wideband=self.g722.decode if self.g722 is not None else None)
        self.payload_type = payload_type
        self.wire_pt = payload_type if wire_payload_type is None else wire_payload_type
        # The receive fast lane takes a packet's type as its codec: only when the SDP kept the
        # static numbers. A codec under another number (even a static one: `0 PCMA/8000`) takes the
        # general path, which maps it.
        self._audio_second_byte = (
            frozenset()
            if self.wire_pt != payload_type
            else _G722_SECOND_BYTE
            if wideband
            else _G711_SECOND_BYTE
        )
        self.dtmf = DtmfReceiver(telephone_event_pt) if telephone_event_pt is not None else None
        self.event_pt = telephone_event_pt
        self._ptime_samples = ptime_ms * 8
        self._ts_step = FRAME_SAMPLES
        if is_opus:  # the packetiser gathers 16 kHz PCM (2 bytes a sample), encoded per packet
            self._ptime_samples = (ptime_ms if ptime_ms in opus.SENDABLE_PTIMES else 20) * 32
            self._ts_step = opus.TICK_TS
        self._pending.clear()
        self.update(remote, send, now)
        self.connected = True
        self._sync_inbound()

    def update(
        self, remote: Address | None, send: bool | None, now: float, srtp: SrtpKeys | None = None
    ) -> None:
        if srtp is not None and self.srtp is not None:
            self.srtp.rekey_inbound(srtp)
            self._sync_inbound()
        if remote is not None:
            self._take_sdp_address(remote, now)
        if send is not None:
            self.sending = send

    def _sync_inbound(self) -> None:
        srtp = self.srtp
        if srtp is not None and self.connected:
            self._inbound[self.leg_id] = srtp.unprotect
        else:
            self._inbound.pop(self.leg_id, None)

    # ---------------------------------------------------------------- receive
    def rtp_received(self, data: bytes, addr: Address, now: float, unprotected: bool = False) -> None:
        """A datagram from the RTP port; `unprotected`: SRTP the runtime's batch already checked."""
        counters = self.counters
        srtp = self.srtp
        if srtp is not None and self.connected and not unprotected:
            if len(data) > 1 and 192 <= data[1] <= 223:  # SRTCP multiplexed on the port (RFC 5761)
                self.rtcp_received(data, addr, now)
                return
            # An attribute, not a method: read first, since `srtp.unprotect(data)` is looked up the slow way.
            unprotect = srtp.unprotect
            try:
                data = unprotect(data)
            except SrtpRefused as refused:
                self.srtp_refused("rtp", refused.refusal, addr, now)
                return
        if (
            len(data) > 12
            and data[0] == 0x80  # version 2; no padding, extension or CSRCs
            and data[1] in self._audio_second_byte
            and self.connected
            and data[1] & 0x7F != self.event_pt
            and addr == self._latched
        ):
            # The fast lane for plain audio packets from the latched source: what the general path
            # below does for them, without building an RtpPacket.
            _, b1, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
            counters.packets_in += 1
            self._heard_at, self._ssrc = now, ssrc
            self.jitter.push_payload(b1 & 0x7F, sequence, timestamp, ssrc, data[12:], now)
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
        is_event = self.dtmf is not None and pt == self.dtmf.payload_type
        if pt == self.wire_pt and pt != self.payload_type and not is_event:
            packet.payload_type = self.payload_type  # a dynamic type: the jitter buffer decodes by codec
        elif not is_event and (
            self.opus is not None  # Opus has no static number: only the negotiated one is taken
            or not (pt == g722.PAYLOAD_TYPE if self.g722 is not None else g711.is_g711(pt))
        ):
            counters.ignored_in += 1  # comfort noise, unnegotiated types: not evidence of the peer
            return
        # Symmetric RTP (RFC 4961): the peer may sit behind NAT or send from another port than its
        # SDP says; media is sent back to the source it latched to.
        if addr != self._latched and not self._admit(addr, packet.ssrc, now):
            self._refuse("dtmf" if is_event else "rtp", addr, now)
            return
        self._heard_at, self._ssrc = now, packet.ssrc
        if is_event:
            assert self.dtmf is not None
            digit = self.dtmf.push(packet)
            if digit is not None:
                self.on_dtmf(self.leg_id, digit)
        else:
            self.jitter.push(packet, now)

    def rtcp_received(self, data: bytes, addr: Address, now: float) -> None:
        if self.srtp is not None and self.connected:
            try:
                data = self.srtp.unprotect_rtcp(data)
            except SrtpRefused as refused:
                self.srtp_refused("rtcp", refused.refusal, addr, now)
                return
        if self._rtcp_source is None:
            trusted = self._latched or self._sdp_remote
            if trusted is not None and addr[0] == trusted[0]:
                self._rtcp_source = addr
        if addr != self._rtcp_source:
            self._refuse("rtcp", addr, now)
            return
        try:
            for _ in parse_rtcp(data):
                pass
        except RtpParseError:
            self.counters.malformed_in += 1
            return
        self.counters.rtcp_in += 1

    # ---------------------------------------------------------------- codec
    @property
    def wideband(self) -> bool:
        """The leg speaks G.722 or Opus (16 kHz audio here): its conference mixes at 16 kHz."""
        return self.payload_type in (g722.PAYLOAD_TYPE, opus.CODEC_ID)

    def encode_narrow(self, pcm: NDArray[np.int16]) -> bytes:
        """One 8 kHz frame (160 samples) for send_tick: G.711 directly, G.722 upsampled, Opus as
        upsampled PCM (see encode_wide)."""
        if self.g722 is None and self.opus is None:
            return g711.encode_array(self.payload_type, pcm).tobytes()
        if self._up_out is None:
            self._up_out = Upsampler()
        wide = self._up_out.process(pcm)
        return wide.tobytes() if self.g722 is None else self.g722.encode(wide)

    def encode_wide(self, pcm: NDArray[np.int16]) -> bytes:
        """One 16 kHz frame (320 samples) for send_tick: G.722 directly, G.711 through the
        anti-alias filter. Opus: the samples' bytes, which send_tick encodes a whole packet at a
        time (one Opus frame of the packet time, which may span several ticks)."""
        if self.g722 is not None:
            return self.g722.encode(pcm)
        if self.opus is not None:
            return pcm.tobytes()
        if self._down_out is None:
            self._down_out = Downsampler()
        return g711.encode_array(self.payload_type, self._down_out.process(pcm)).tobytes()

    def widen(self, frame: Frame) -> NDArray[np.int16]:
        """A frame from this leg's jitter buffer as 16 kHz samples (a G.722 leg's already are)."""
        samples = decode_frame(frame)
        if len(samples) == g722.FRAME_SAMPLES:
            return samples
        if self._up_in is None:
            self._up_in = Upsampler()
        return self._up_in.process(samples)

    # ---------------------------------------------------------------- send
    def queue_dtmf(self, digit: str) -> bool:
        """Send a digit as RFC 4733 events over the next ticks; False if the peer negotiated none."""
        if self.event_pt is None or not self.connected:
            return False
        # Events run on the audio's RTP clock (RFC 4733 2.1): 50 ticks a second.
        self._dtmf_out.extend(dtmf_events(digit, clock_rate=self._ts_step * 50))
        return True

    @property
    def silent(self) -> bool:
        """Nothing this leg is given is sent (held with inactive/recvonly, or not connected yet): the
        tick need not mix or encode for it, only keep its RTP clock running through send_tick."""
        return not (self.sending and self.connected and self.dest is not None)

    def send_tick(self, codes: bytes) -> None:
        """Queue one tick (160 encoded samples; an Opus leg's 320 samples of 16 kHz PCM). The RTP
        clock advances even while nothing is sent."""
        ts = self._ts
        self._ts = (ts + self._ts_step) & 0xFFFF_FFFF
        dest = self.dest
        if not (self.sending and self.connected and dest is not None):  # self.silent; closing disconnects
            self._pending.clear()
            self._dtmf_out.clear()
            self._marker = True  # the next packet starts a new talkspurt
            return
        if self._dtmf_out:
            self._send_event(ts)
            return
        size = self._ptime_samples
        if self.opus is not None:
            self._send_opus(codes, ts, size)
            return
        if size == FRAME_SAMPLES and not self._pending:
            # _emit inlined: this runs for every leg on every tick.
            b1 = self.wire_pt | 0x80 if self._marker else self.wire_pt
            packet = _HEADER.pack(0x80, b1, self._seq, ts, self.ssrc) + codes
            srtp = self.srtp
            if srtp is None:
                self._out.append((self.leg_id, packet, dest))
            else:
                self._to_protect.append((self.leg_id, packet, dest, srtp.protect))
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

    def _send_opus(self, pcm: bytes, ts: int, size: int) -> None:
        """Gather 16 kHz PCM until a packet time's worth (`size` bytes) is there, then encode it as
        one Opus packet stamped with its first sample's time on the 48 kHz clock."""
        assert self.opus is not None
        if not self._pending:
            self._pending_ts = ts
        self._pending += pcm
        if len(self._pending) < size:
            return
        samples = np.frombuffer(bytes(self._pending[:size]), dtype=np.int16)
        del self._pending[:size]
        self._emit(self.opus.encode(samples), self._pending_ts)
        self._pending_ts = (self._pending_ts + size // 2 * opus.TS_PER_SAMPLE) & 0xFFFF_FFFF

    def _send_event(self, ts: int) -> None:
        """One telephone-event packet instead of this tick's audio (RFC 4733 2.5: no audio meanwhile).

        Every packet of an event carries the event's start timestamp; the marker flags its first."""
        event = self._dtmf_out.popleft()
        first = event.duration <= self._ts_step and not event.end
        if first:
            self._event_ts = ts
        self._pending.clear()
        self._emit(bytes(event), self._event_ts, payload_type=self.event_pt, marker=first)
        if not self._dtmf_out or (self._dtmf_out[0].duration <= self._ts_step and not self._dtmf_out[0].end):
            self._marker = True  # audio after an event starts a new talkspurt

    def _emit(
        self, payload: bytes, ts: int, *, payload_type: int | None = None, marker: bool | None = None
    ) -> None:
        dest = self.dest
        if dest is None or self.closed:
            return
        pt = self.wire_pt if payload_type is None else payload_type
        b1 = pt | (0x80 if (self._marker if marker is None else marker) else 0)
        packet = _HEADER.pack(0x80, b1, self._seq, ts, self.ssrc) + payload
        srtp = self.srtp
        if srtp is None:
            self._out.append((self.leg_id, packet, dest))
        else:
            self._to_protect.append((self.leg_id, packet, dest, srtp.protect))
        self._marker = False
        self._seq = (self._seq + 1) & 0xFFFF
        self.counters.packets_out += 1

    def close(self) -> None:
        """Stop sending and drop any message (without its PlaybackFinished). Idempotent."""
        self.closed = True
        self.connected = False
        self._inbound.pop(self.leg_id, None)
        self.message = self.message_token = None
