"""Per-leg jitter buffer: decoded G.711 audio placed on the RTP timestamp line, pulled in 20 ms frames.

Placement is by RTP timestamp rather than sequence number, so 10 or 30 ms packets are re-framed into
20 ms frames for free, and silence-suppression gaps (timestamp jumps) play out as silence. Sequence
numbers are not needed for ordering; duplicates are recognised by their timestamp.

Pull model: the conference tick calls `pop_frame()` once per 20 ms. It returns a 160-sample int16
frame (treat it as read-only: it is kept for concealment), or None when the leg has nothing to play
(still prefilling, or a loss longer than concealment covers); the caller treats None as silence and
may skip that source entirely. Time enters only through `push(packet, now)`, for the jitter estimate.

Audio is buffered as the G.711 codes that arrived and decoded only when played: `pop_payload()`
hands out a whole 20 ms packet undecoded, so a caller can forward it without a decode/encode round
trip, or decode many legs' frames in one array operation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

from bridgeline.media import g711, g722
from bridgeline.media.rtp import RtpPacket, ts_diff

CLOCK_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
_TS_MASK = 0xFFFF_FFFF

Codes: TypeAlias = tuple[int, bytes]  # (G.711 payload type, one byte per sample)
Frame: TypeAlias = Codes | NDArray[np.int16]  # undecoded 20 ms packet, or samples
# A wideband leg's stateful decoder (codes -> 16 kHz samples): its frames come out decoded, in order.
WidebandDecoder: TypeAlias = Callable[[bytes], NDArray[np.int16]]


def decode_frame(frame: Frame) -> NDArray[np.int16]:
    """The samples of a frame from `pop_payload`."""
    if isinstance(frame, tuple):
        return g711.decode(frame[0], frame[1])
    return frame


@dataclass(slots=True)
class JitterStats:
    received: int = 0
    played: int = 0  # frames returned from real audio
    concealed: int = 0  # frames synthesised by repeating the previous one
    silent: int = 0  # ticks with nothing to play while running
    late: int = 0
    duplicate: int = 0
    ignored: int = 0  # non-audio payload types (telephone-event, comfort noise, ...)
    resets: int = 0  # SSRC changes and re-synchronisations
    dropped: int = 0  # audio discarded to bring an overfull buffer back to its target delay


class JitterBuffer:
    """Reorders, de-duplicates and conceals one inbound RTP stream.

    delay_ms: playout of a stream starts this long after its first packet arrived (counted in
        ticks), so a packet may arrive up to delay_ms - 20 ms behind its schedule; the default 60 ms
        repairs reordering by two packets. Timing the start, rather than waiting for a fill level,
        keeps one early packet from starting playout before the ones it overtook.
    max_delay_ms: when the buffer grows past this (sender clock faster than ours, or a burst after a
        stall), old audio is discarded down to delay_ms.
    conceal_gains: gain applied to the repeated last frame for each consecutive lost frame; after
        that the leg is silent. idle_frames: this many empty ticks in a row (default 200 ms) ends the
        talkspurt; the next packet re-anchors playout (long silence suppression, restarted senders).
    payload_types: the negotiated audio payload types (PCMU 0, PCMA 8); each packet is decoded by
        its own type. Anything else (telephone-event, comfort noise) is counted and ignored.
    wideband: a G.722 leg's decoder. Then G.722 (9) is the one payload type taken, buffered as
        codes like G.711 (one byte per timestamp unit) and decoded when played, each frame once and
        in order as ADPCM needs: frames come out as 320 samples at 16 kHz, never as codes.
    """

    def __init__(
        self,
        *,
        delay_ms: int = 60,
        max_delay_ms: int = 200,
        conceal_gains: tuple[float, ...] = (0.7, 0.35),
        idle_frames: int = 10,
        payload_types: tuple[int, ...] = (g711.PCMU, g711.PCMA),
        wideband: WidebandDecoder | None = None,
    ) -> None:
        if not 0 <= delay_ms < max_delay_ms:
            raise ValueError("need 0 <= delay_ms < max_delay_ms")
        self._delay = delay_ms * CLOCK_RATE // 1000
        self._max_delay = max_delay_ms * CLOCK_RATE // 1000
        self._gains = conceal_gains
        self._idle_frames = max(idle_frames, len(conceal_gains) + 1)
        self._payload_types = frozenset(pt for pt in payload_types if g711.is_g711(pt))
        self._wideband = wideband
        if wideband is not None:
            self._payload_types = frozenset({g722.PAYLOAD_TYPE})
        self.stats = JitterStats()
        self._ssrc: int | None = None
        self._pending: dict[int, Codes] = {}  # start timestamp -> (payload type, G.711 codes)
        self._play: int | None = None  # timestamp of the next sample to play; None = idle
        self._high = 0  # timestamp just past the newest buffered sample
        self._seq = 0  # highest sequence number seen, to tell a restarted sender from a stale copy
        self._started = False
        self._prefill_ticks = max(delay_ms // 20 - 1, 0)  # empty pulls before the first frame
        self._wait = 0
        self._last: Frame | None = None
        self._misses = 0
        self._jitter = 0.0  # RFC 3550 interarrival jitter, in timestamp units
        self._transit: float | None = None

    @property
    def ssrc(self) -> int | None:
        return self._ssrc

    @property
    def jitter_ms(self) -> float:
        """RFC 3550 interarrival jitter estimate (for RTCP receiver reports and diagnostics)."""
        return self._jitter * 1000 / CLOCK_RATE

    @property
    def buffered_ms(self) -> float:
        """Audio buffered ahead of the playout point."""
        if self._play is None:
            return 0.0
        return max(ts_diff(self._high, self._play), 0) * 1000 / CLOCK_RATE

    def reset(self) -> None:
        """Forget everything buffered; the next packet starts a new stream."""
        self._pending.clear()
        self._play = None
        self._started = False
        self._last = None
        self._misses = 0
        self._transit = None

    def push(self, packet: RtpPacket, now: float) -> bool:
        """Buffer one received packet (`now` in seconds, any monotonic origin). True if it was kept."""
        return self.push_payload(
            packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc, packet.payload, now
        )

    def push_payload(
        self, payload_type: int, sequence: int, ts: int, ssrc: int, codes: bytes, now: float
    ) -> bool:
        """push() for a packet already taken apart (the receive path's fast lane skips RtpPacket)."""
        if payload_type not in self._payload_types:
            self.stats.ignored += 1
            return False
        if ssrc != self._ssrc:
            if self._ssrc is not None:
                self.stats.resets += 1
            self.reset()
            self._ssrc = ssrc
            self._jitter = 0.0
        self.stats.received += 1
        # RFC 3550 interarrival jitter (inlined: this runs for every packet of every leg).
        transit = now * CLOCK_RATE - ts
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < CLOCK_RATE * 10:  # ignore timestamp wrap and stream jumps
                self._jitter += (d - self._jitter) / 16
        self._transit = transit
        size = len(codes)  # G.711: one byte per sample
        newest = 0 < ((sequence - self._seq) & 0xFFFF) < 0x8000  # seq_newer, inlined
        if newest or self._play is None:
            self._seq = sequence
        if self._play is None:
            self._anchor(ts)
        elif ts in self._pending:
            self.stats.duplicate += 1
            return False
        play = self._play
        assert play is not None
        offset = ((ts - play + 0x8000_0000) & _TS_MASK) - 0x8000_0000  # ts_diff(ts, play), inlined
        if offset < 0 and not self._started and -offset <= self._max_delay:
            self._play = play = ts  # reordered start of stream while still buffering: play it too
            offset = 0
        elif offset + size <= 0:  # ends before the playout point (a partly late packet is still used)
            if newest and self._misses and not self._pending:
                self.stats.resets += 1  # starving, and the sender's clock is behind ours: follow it
                self._anchor(ts)
                play, offset = ts, 0
            else:
                self.stats.late += 1  # includes copies of packets already played
                return False
        if not size:
            return False
        end = (ts + size) & _TS_MASK
        if offset < 0:  # partly late: keep just the part still ahead of the playout point
            ts, codes = play, codes[-offset:]
            if ts in self._pending:
                self.stats.late += 1
                return False
        self._pending[ts] = (payload_type, codes)
        high = self._high
        if end != high and ((end - high) & _TS_MASK) < 0x8000_0000:  # ts_diff(end, high) > 0
            self._high = high = end
        if ((high - play + 0x8000_0000) & _TS_MASK) - 0x8000_0000 > self._max_delay:  # ts_diff, inlined
            self._skip_to((high - self._delay) & _TS_MASK)
        return True

    def pop_frame(self) -> NDArray[np.int16] | None:
        """The next 20 ms of audio, or None when there is nothing to play (treat as silence)."""
        frame = self.pop_payload()
        return None if frame is None else decode_frame(frame)

    def pop_payload(self) -> Frame | None:
        """Like pop_frame, but a frame that arrived as one whole 20 ms packet (the common case) comes
        back undecoded as (payload type, codes); reframed or concealed audio comes as samples."""
        if self._play is None:
            return None
        if not self._started:
            if self._wait:
                self._wait -= 1
                return None
            self._started = True
        play = self._play
        self._play = (play + FRAME_SAMPLES) & _TS_MASK
        frame: Frame | None = self._pending.get(play)
        if frame is not None and len(frame[1]) == FRAME_SAMPLES:
            del self._pending[play]  # the common case: one 20 ms packet per tick
        else:
            frame = self._assemble(play) if self._pending else None
        if frame is not None:
            if self._wideband is not None and type(frame) is tuple:
                frame = self._wideband(frame[1])
            self._last = frame
            self._misses = 0
            self.stats.played += 1
            return frame
        return self._conceal()

    def _anchor(self, ts: int) -> None:
        self._pending.clear()
        self._play = ts
        self._high = ts
        self._started = False
        self._wait = self._prefill_ticks
        self._misses = 0

    def _assemble(self, play: int) -> Frame | None:
        """Cut the frame starting at `play` out of whatever packets overlap it (10/30 ms ptime)."""
        if self._wideband is not None:
            return self._assemble_codes(play)
        frame: NDArray[np.int16] | None = None
        for start in list(self._pending):
            pt, codes = self._pending[start]
            offset = ts_diff(start, play)
            if offset >= FRAME_SAMPLES:
                continue  # entirely in the future
            del self._pending[start]
            end = offset + len(codes)
            if end <= 0:
                continue  # entirely in the past; stale leftovers
            if frame is None:
                frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            lo = max(offset, 0)
            hi = min(end, FRAME_SAMPLES)
            frame[lo:hi] = g711.decode(pt, codes[lo - offset : hi - offset])
            if end > FRAME_SAMPLES:  # keep the tail for the next tick
                tail_start = (play + FRAME_SAMPLES) & _TS_MASK
                self._pending.setdefault(tail_start, (pt, codes[FRAME_SAMPLES - offset :]))
        return frame

    def _assemble_codes(self, play: int) -> Codes | None:
        """_assemble for G.722: the codes are cut and joined, to be decoded in order. A gap (a lost
        10 ms packet) repeats the codes before it rather than feed the decoder arbitrary bytes."""
        codes = bytearray()
        for start in sorted(self._pending, key=lambda ts: ts_diff(ts, play)):
            pt, piece = self._pending[start]
            offset = ts_diff(start, play)
            if offset >= FRAME_SAMPLES:
                break  # this and the rest are entirely in the future
            del self._pending[start]
            end = offset + len(piece)
            if end <= len(codes):
                continue  # entirely before what is assembled; stale leftovers
            if offset > len(codes):
                codes += (codes[-1:] or piece[:1]) * (offset - len(codes))
            codes += piece[len(codes) - offset : FRAME_SAMPLES - offset]
            if end > FRAME_SAMPLES:  # keep the tail for the next tick
                tail_start = (play + FRAME_SAMPLES) & _TS_MASK
                self._pending.setdefault(tail_start, (pt, piece[FRAME_SAMPLES - offset :]))
        if not codes:
            return None
        if len(codes) < FRAME_SAMPLES:
            codes += codes[-1:] * (FRAME_SAMPLES - len(codes))
        return g722.PAYLOAD_TYPE, bytes(codes)

    def _conceal(self) -> NDArray[np.int16] | None:
        self._misses += 1
        if self._misses > self._idle_frames:
            self.reset()  # talkspurt over; the next packet re-anchors with a fresh prefill
            self.stats.silent += 1
            return None
        if self._last is not None and self._misses <= len(self._gains):
            self.stats.concealed += 1
            gain = self._gains[self._misses - 1]
            return (decode_frame(self._last) * gain).astype(np.int16)
        self.stats.silent += 1
        return None

    def _skip_to(self, ts: int) -> None:
        """Discard buffered audio before `ts` so the playout delay falls back to its target."""
        assert self._play is not None
        self.stats.dropped += 1
        for start in list(self._pending):
            pt, codes = self._pending[start]
            cut = ts_diff(ts, start)
            if cut <= 0:
                continue
            del self._pending[start]
            if cut < len(codes):
                self._pending[ts] = (pt, codes[cut:])
        self._play = ts
