"""RFC 4733 telephone-event payloads: parse, serialise, the packet train for one digit, and a receiver
that reports each digit once although every event is carried by several packets."""

from __future__ import annotations

import math
import struct
from collections import deque
from dataclasses import dataclass
from typing import Final

from bridgeline.media.rtp import RtpPacket, RtpParseError

DEFAULT_PAYLOAD_TYPE: Final = 101  # conventional dynamic payload type for telephone-event
_PAYLOAD = struct.Struct("!BBH")
DIGITS: Final = "0123456789*#ABCD"  # event codes 0-15, in order


def digit_to_event(digit: str) -> int:
    """Event code for a DTMF character (case-insensitive A-D); ValueError otherwise."""
    code = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return code


def event_to_digit(event: int) -> str | None:
    """The DTMF character for an event code, or None for non-DTMF events (flash, tones, ...)."""
    return DIGITS[event] if 0 <= event < len(DIGITS) else None


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool = False
    volume: int = 10  # power level as -dBm0, 0..63
    duration: int = 0  # in timestamp units since the event's start

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Parse the first event block; RtpParseError if the payload is too short."""
        if len(payload) < 4:
            raise RtpParseError(f"telephone-event payload too short: {len(payload)} bytes")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def serialize(self) -> bytes:
        if not (0 <= self.event <= 255 and 0 <= self.volume <= 63 and 0 <= self.duration <= 0xFFFF):
            raise ValueError(f"telephone-event field out of range: {self}")
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    def __bytes__(self) -> bytes:
        return self.serialize()


def dtmf_packets(
    digit: str,
    *,
    ssrc: int,
    sequence: int,
    timestamp: int,
    payload_type: int = DEFAULT_PAYLOAD_TYPE,
    duration_ms: int = 100,
    ptime_ms: int = 20,
    volume: int = 10,
    end_repeats: int = 3,
    clock_rate: int = 8000,
) -> list[tuple[int, RtpPacket]]:
    """The packets that send one digit, each with its send time in ms after the first.

    All packets share the event's start `timestamp`; the first has the marker bit; durations grow
    by one ptime per packet; the final (end) packet is sent `end_repeats` times, one ptime apart,
    because it is the one that must not be lost. Sequence numbers continue from `sequence`; the
    caller resumes audio at sequence + len(result) and timestamp + the event duration.
    """
    event = digit_to_event(digit)
    step = ptime_ms * clock_rate // 1000
    total = duration_ms * clock_rate // 1000
    if step <= 0 or total <= 0 or total > 0xFFFF or end_repeats < 1:
        raise ValueError("need positive ptime and duration (at most 65535 samples) and end_repeats >= 1")
    updates = math.ceil(total / step)
    out: list[tuple[int, RtpPacket]] = []
    for i in range(updates + end_repeats - 1):
        end = i >= updates - 1
        body = TelephoneEvent(event, end=end, volume=volume, duration=min((i + 1) * step, total))
        packet = RtpPacket(
            payload_type=payload_type,
            sequence=(sequence + i) & 0xFFFF,
            timestamp=timestamp & 0xFFFF_FFFF,
            ssrc=ssrc,
            payload=body.serialize(),
            marker=i == 0,
        )
        out.append((i * ptime_ms, packet))
    return out


def dtmf_events(
    digit: str,
    *,
    duration_ms: int = 100,
    ptime_ms: int = 20,
    volume: int = 10,
    end_repeats: int = 3,
    clock_rate: int = 8000,
) -> list[TelephoneEvent]:
    """The event payloads of one digit, one per packet (a sender with its own RTP stream numbers them).

    Durations grow by one ptime per packet (in units of `clock_rate`: the audio codec's RTP
    clock, 48 kHz beside Opus); the end packet is repeated, as in `dtmf_packets`."""
    return [
        TelephoneEvent.parse(packet.payload)
        for _, packet in dtmf_packets(
            digit,
            ssrc=0,
            sequence=0,
            timestamp=0,
            duration_ms=duration_ms,
            ptime_ms=ptime_ms,
            volume=volume,
            end_repeats=end_repeats,
            clock_rate=clock_rate,
        )
    ]


class DtmfReceiver:
    """Turns a stream of telephone-event packets into digits, each reported exactly once.

    An event is identified by its RTP timestamp; the digit is reported on the first packet seen for
    it (start, update or end alike, so losing the first packets does not lose the digit).
    """

    def __init__(self, payload_type: int = DEFAULT_PAYLOAD_TYPE) -> None:
        self.payload_type = payload_type
        # (ssrc, timestamp) of recent events: a late end-packet retransmission must not repeat a digit
        self._recent: deque[tuple[int, int]] = deque(maxlen=8)

    def push(self, packet: RtpPacket) -> str | None:
        """The digit if this packet starts a new DTMF event, else None (also for malformed payloads)."""
        if packet.payload_type != self.payload_type:
            return None
        key = (packet.ssrc, packet.timestamp)
        if key in self._recent:
            return None
        try:
            event = TelephoneEvent.parse(packet.payload)
        except RtpParseError:
            return None
        self._recent.append(key)
        return event_to_digit(event.event)
