"""RTP (RFC 3550) packet parsing and serialisation, plus RTCP demultiplexing (RFC 5761).

Everything arriving on a media socket goes through `RtpPacket.parse`, so it must reject garbage with
`RtpParseError` and nothing else: the receive loop catches exactly that one exception.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

RTP_VERSION: Final = 2
_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")
_RTCP_HEADER = struct.Struct("!BBH")
_SEQ_MOD: Final = 1 << 16
_TS_MOD: Final = 1 << 32


class RtpParseError(ValueError):
    """The datagram is not a well-formed RTP (or RTCP) packet."""


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b between 16-bit sequence numbers, in [-32768, 32767]."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_newer(a: int, b: int) -> bool:
    """True when sequence number a comes after b, allowing for wrap-around at 65535 -> 0."""
    return seq_diff(a, b) > 0


def ts_diff(a: int, b: int) -> int:
    """Signed distance a - b between 32-bit RTP timestamps, in [-2**31, 2**31 - 1]."""
    return ((a - b + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000


def ts_newer(a: int, b: int) -> bool:
    """True when timestamp a comes after b, allowing for wrap-around at 2**32."""
    return ts_diff(a, b) > 0


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet. `padding` is the number of padding bytes (0 = none) and is kept so that
    parse/serialise round-trips; the header extension is kept opaque for the same reason."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    padding: int = 0
    extension: tuple[int, bytes] | None = None  # (profile-defined id, data whose length is a multiple of 4)

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> RtpPacket:
        """Parse one datagram; raise RtpParseError (only) when it is malformed."""
        size = len(data)
        if size < 12:
            raise RtpParseError(f"RTP packet too short: {size} bytes")
        b0, b1, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        if b0 == 0x80:  # the usual packet: version 2, no padding, extension or CSRCs
            return cls(b1 & 0x7F, sequence, timestamp, ssrc, bytes(data[12:]), b1 > 0x7F)
        if b0 >> 6 != RTP_VERSION:
            raise RtpParseError(f"unsupported RTP version {b0 >> 6}")
        offset = 12
        csrcs: tuple[int, ...] = ()
        cc = b0 & 0x0F
        if cc:
            offset += 4 * cc
            if offset > size:
                raise RtpParseError(f"CSRC count {cc} exceeds packet length {size}")
            csrcs = struct.unpack_from(f"!{cc}I", data, 12)
        extension = None
        if b0 & 0x10:
            if offset + 4 > size:
                raise RtpParseError("truncated RTP header extension")
            profile, words = _EXT_HEADER.unpack_from(data, offset)
            end = offset + 4 + 4 * words
            if end > size:
                raise RtpParseError("RTP header extension exceeds packet length")
            extension = (profile, bytes(data[offset + 4 : end]))
            offset = end
        padding = 0
        if b0 & 0x20:
            padding = data[size - 1]
            if padding == 0 or offset + padding > size:
                raise RtpParseError(f"bad RTP padding length {padding}")
        return cls(
            payload_type=b1 & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset : size - padding]),
            marker=bool(b1 & 0x80),
            csrcs=csrcs,
            padding=padding,
            extension=extension,
        )

    def serialize(self) -> bytes:
        """Wire form; ValueError when a field is outside its range."""
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type out of range: {self.payload_type}")
        if len(self.csrcs) > 15:
            raise ValueError("at most 15 CSRCs fit in an RTP header")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"padding length out of range: {self.padding}")
        b0 = (RTP_VERSION << 6) | len(self.csrcs)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        b1 = self.payload_type | (0x80 if self.marker else 0)
        try:
            parts = [_HEADER.pack(b0, b1, self.sequence, self.timestamp, self.ssrc)]
            if self.csrcs:
                parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
            if self.extension is not None:
                profile, ext = self.extension
                if len(ext) % 4:
                    raise ValueError("RTP header extension data must be a multiple of 4 bytes")
                parts.append(_EXT_HEADER.pack(profile, len(ext) // 4))
                parts.append(ext)
        except struct.error as exc:
            raise ValueError(f"RTP header field out of range: {exc}") from None
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)

    def __bytes__(self) -> bytes:
        return self.serialize()


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192-223 sit where RTP has marker + payload type.

    Only the first two bytes are looked at, so a True result does not mean the packet is well formed,
    and RTP sharing the port must not use payload types 64-95 (which is why RFC 5761 reserves them).
    """
    return len(data) >= 2 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


@dataclass(frozen=True, slots=True)
class RtcpHeader:
    """The common header of one RTCP packet; `size` is its length in bytes including the header."""

    packet_type: int  # 200 SR, 201 RR, 202 SDES, 203 BYE, 204 APP, ...
    count: int  # report count / source count, depending on the packet type
    size: int
    padding: bool


def parse_rtcp(data: bytes | bytearray | memoryview) -> Iterator[RtcpHeader]:
    """Walk the packets of a compound RTCP datagram; RtpParseError if any header is inconsistent."""
    offset, total = 0, len(data)
    if total < 4:
        raise RtpParseError(f"RTCP packet too short: {total} bytes")
    while offset < total:
        if offset + 4 > total:
            raise RtpParseError("trailing bytes after RTCP packet")
        b0, packet_type, words = _RTCP_HEADER.unpack_from(data, offset)
        if b0 >> 6 != RTP_VERSION:
            raise RtpParseError(f"unsupported RTCP version {b0 >> 6}")
        size = 4 * (words + 1)
        if offset + size > total:
            raise RtpParseError("RTCP length field exceeds datagram")
        yield RtcpHeader(packet_type=packet_type, count=b0 & 0x1F, size=size, padding=bool(b0 & 0x20))
        offset += size
