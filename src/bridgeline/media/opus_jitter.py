"""An Opus leg's jitter buffer: whole packets placed on the 48 kHz RTP timeline, decoded in order
and pulled as 20 ms frames of 16 kHz samples (what the wideband mix takes).

`jitter.py`'s buffer cuts G.711 and G.722 codes by timestamp (one byte per timestamp unit); an Opus
packet cannot be cut before it is decoded, its size says nothing of its duration, and its decoder
carries state, so this one keeps packets whole, reads each one's duration from its TOC byte, decodes
them in timestamp order and keeps what a long packet (40, 60... ms) decoded beyond the current
tick for the next ones; two 10 ms packets fill one tick.

A stretch of the timeline with no packet is concealed by the decoder (`OpusStream.conceal`): from
the next packet's in-band FEC when that packet is already here, else libopus's loss concealment, for
up to `conceal_ticks` ticks in a row; then silence, and after `idle_frames` silent ticks the
talkspurt is over and the next packet re-anchors playout. Same interface as `JitterBuffer` (push,
pop_payload, stats), so the leg and the tick need not know which they hold; frames always come out
decoded (320 samples), never as codes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from bridgeline.media.jitter import Frame, JitterStats
from bridgeline.media.opus import CODEC_ID, FRAME_SAMPLES, RTP_CLOCK, TICK_TS, TS_PER_SAMPLE, OpusStream
from bridgeline.media.rtp import RtpPacket, ts_diff

_TS_MASK = 0xFFFF_FFFF
_PLC_STEP = 40  # libopus conceals whole 2.5 ms steps: 40 samples at 16 kHz
_EMPTY = np.zeros(0, dtype=np.int16)


class OpusJitterBuffer:
    """Reorders, de-duplicates, decodes and conceals one inbound Opus stream (see the module
    docstring). delay_ms / max_delay_ms / idle_frames as `JitterBuffer`'s; `max_packets` bounds
    what a sender may park ahead (a flood of tiny packets at distinct timestamps); `fec=False`
    leaves the next packet's FEC unused (for comparison)."""

    def __init__(
        self,
        stream: OpusStream,
        *,
        delay_ms: int = 60,
        max_delay_ms: int = 200,
        conceal_ticks: int = 3,
        idle_frames: int = 10,
        max_packets: int = 64,
        fec: bool = True,
    ) -> None:
        if not 0 <= delay_ms < max_delay_ms:
            raise ValueError("need 0 <= delay_ms < max_delay_ms")
        self._stream = stream
        self._delay = delay_ms * RTP_CLOCK // 1000
        self._max_delay = max_delay_ms * RTP_CLOCK // 1000
        self._conceal_ticks = conceal_ticks
        self._idle_frames = max(idle_frames, conceal_ticks + 1)
        self._max_packets = max_packets
        self._fec = fec  # repair a loss from the next packet's in-band FEC when it is here
        self.stats = JitterStats()
        self._ssrc: int | None = None
        self._pending: dict[int, tuple[bytes, int]] = {}  # start timestamp -> (packet, duration)
        self._cursor: int | None = None  # timestamp of the next audio to decode; None = idle
        self._ready: NDArray[np.int16] = _EMPTY  # decoded beyond the last tick, played next
        self._ready_heard = False  # ... from a received packet (else from concealment)
        self._high = 0  # timestamp just past the newest buffered packet
        self._seq = 0
        self._started = False
        self._prefill_ticks = max(delay_ms // 20 - 1, 0)
        self._wait = 0
        self._misses = 0  # ticks in a row without received audio
        self._jitter = 0.0  # RFC 3550 interarrival jitter, in 48 kHz units
        self._transit: float | None = None

    @property
    def ssrc(self) -> int | None:
        return self._ssrc

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000 / RTP_CLOCK

    @property
    def buffered_ms(self) -> float:
        if self._cursor is None:
            return 0.0
        ahead = max(ts_diff(self._high, self._cursor), 0) + len(self._ready) * TS_PER_SAMPLE
        return ahead * 1000 / RTP_CLOCK

    def reset(self) -> None:
        self._pending.clear()
        self._cursor = None
        self._ready = _EMPTY
        self._started = False
        self._misses = 0
        self._transit = None

    def push(self, packet: RtpPacket, now: float) -> bool:
        return self.push_payload(
            packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc, packet.payload, now
        )

    def push_payload(
        self, payload_type: int, sequence: int, ts: int, ssrc: int, payload: bytes, now: float
    ) -> bool:
        """Buffer one packet (`payload_type` is the leg's codec key once mapped: `opus.CODEC_ID`)."""
        if payload_type != CODEC_ID:
            self.stats.ignored += 1
            return False
        duration = self._stream.duration(payload)
        if duration < 0:
            self.stats.ignored += 1  # not an Opus packet: never reaches the decoder
            return False
        if ssrc != self._ssrc:
            if self._ssrc is not None:
                self.stats.resets += 1
            self.reset()
            self._ssrc = ssrc
            self._jitter = 0.0
        self.stats.received += 1
        transit = now * RTP_CLOCK - ts
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < RTP_CLOCK * 10:
                self._jitter += (d - self._jitter) / 16
        self._transit = transit
        newest = 0 < ((sequence - self._seq) & 0xFFFF) < 0x8000
        if newest or self._cursor is None:
            self._seq = sequence
        if self._cursor is None:
            self._anchor(ts)
        elif ts in self._pending:
            self.stats.duplicate += 1
            return False
        cursor = self._cursor
        assert cursor is not None
        offset = ts_diff(ts, cursor)
        if offset < 0 and not self._started and -offset <= self._max_delay:
            self._cursor = cursor = ts  # reordered start of stream while still buffering
        elif offset + duration <= 0:  # ends before the decode point (a partly late one is trimmed)
            if newest and self._misses and not self._pending:
                self.stats.resets += 1  # starving, and the sender's clock is behind ours: follow it
                self._anchor(ts)
                cursor = ts
            else:
                self.stats.late += 1  # includes copies of packets already played
                return False
        if len(self._pending) >= self._max_packets:
            self.stats.dropped += 1
            return False
        self._pending[ts] = (payload, duration)
        end = (ts + duration) & _TS_MASK
        if ts_diff(end, self._high) > 0:
            self._high = end
        if ts_diff(self._high, cursor) > self._max_delay:
            self._skip_to((self._high - self._delay) & _TS_MASK)
        return True

    def pop_frame(self) -> NDArray[np.int16] | None:
        frame = self.pop_payload()
        return None if frame is None else np.asarray(frame)

    def pop_payload(self) -> Frame | None:
        """The next 20 ms as 320 samples at 16 kHz, or None when there is nothing to play."""
        cursor = self._cursor
        if cursor is None:
            return None
        if not self._started:
            if self._wait:
                self._wait -= 1
                return None
            self._started = True
        pieces = [self._ready] if self._ready.size else []
        have = self._ready.size
        heard = have > 0 and self._ready_heard  # the rest of a long packet is received audio too
        concealed = have > 0 and not self._ready_heard
        real = self._ready_heard
        while have < FRAME_SAMPLES:
            piece, real = self._next_piece(cursor, FRAME_SAMPLES - have)
            pieces.append(piece)
            have += piece.size
            cursor = (cursor + piece.size * TS_PER_SAMPLE) & _TS_MASK
            heard = heard or real
            concealed = concealed or not real
        self._cursor = cursor
        if not pieces:
            return None
        if heard:
            self._misses = 0
        else:
            self._misses += 1
            if self._misses > self._idle_frames:
                self.reset()  # talkspurt over; the next packet re-anchors with a fresh prefill
                self.stats.silent += 1
                return None
        joined = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        self._ready, self._ready_heard = joined[FRAME_SAMPLES:], real
        if not heard and self._misses > self._conceal_ticks:
            self.stats.silent += 1
            return None
        if concealed and not heard:
            self.stats.concealed += 1
        else:
            self.stats.played += 1
        return joined[:FRAME_SAMPLES]

    def _next_piece(self, cursor: int, need: int) -> tuple[NDArray[np.int16], bool]:
        """The audio at `cursor`: (samples, True) decoded from the packet there, or (samples,
        False) concealing a missing stretch of at most `need` samples (rounded up to 2.5 ms)."""
        following: tuple[int, bytes] | None = None  # the nearest packet ahead: (distance, packet)
        for start in list(self._pending):
            payload, duration = self._pending[start]
            offset = ts_diff(start, cursor)
            if offset + duration <= 0:
                del self._pending[start]  # entirely played over (concealed meanwhile): stale
            elif offset <= 0:
                del self._pending[start]
                pcm = self._stream.decode(payload)
                if pcm is None:  # libopus refused it: conceal its duration instead
                    return self._stream.conceal(_plc_size(duration // TS_PER_SAMPLE)), False
                return pcm[-offset // TS_PER_SAMPLE :], True
            elif following is None or offset < following[0]:
                following = (offset, payload)
        if self._misses >= self._conceal_ticks:
            return np.zeros(need, dtype=np.int16), False  # concealment ran out: silence
        size = _plc_size(need)
        if following is not None and self._fec:
            gap = following[0] // TS_PER_SAMPLE
            if gap <= size:  # the loss ends where that packet starts: its FEC may cover it
                return self._stream.conceal(_plc_size(gap), following[1]), False
        return self._stream.conceal(size), False

    def _anchor(self, ts: int) -> None:
        self._pending.clear()
        self._cursor = ts
        self._high = ts
        self._ready = _EMPTY
        self._started = False
        self._wait = self._prefill_ticks
        self._misses = 0

    def _skip_to(self, ts: int) -> None:
        """Drop buffered audio before `ts` so the playout delay falls back to its target."""
        self.stats.dropped += 1
        for start in list(self._pending):
            duration = self._pending[start][1]
            if ts_diff((start + duration) & _TS_MASK, ts) <= 0:
                del self._pending[start]
        self._cursor = ts
        self._ready = _EMPTY


def _plc_size(samples: int) -> int:
    return max(-(-samples // _PLC_STEP) * _PLC_STEP, _PLC_STEP)


__all__ = ["TICK_TS", "OpusJitterBuffer"]
