"""SDP session descriptions (RFC 4566), modelled closely enough to negotiate audio calls.

Lines we do not model (i=, u=, e=, p=, r=, z=, k=, unknown types) are kept and written back in
the order RFC 4566 section 5 prescribes, so a parsed description round-trips. Offer/answer lives
in `offer_answer`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from .syntax import is_token

# Line types by where RFC 4566 places them relative to the ones we model.
_SESSION_BEFORE_C: Final = "iuep"
_SESSION_AFTER_T: Final = "rzk"
_MEDIA_AFTER_B: Final = "k"
HOLD_ADDRESS: Final = "0.0.0.0"  # RFC 2543-style hold (RFC 3264 section 8.4)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f]")  # control characters other than tab


class SdpParseError(ValueError):
    """The body is not a well-formed session description."""


class Direction(StrEnum):
    """Stream direction attributes (RFC 4566 section 6; RFC 3264 section 5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @classmethod
    def of(cls, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    def reversed(self) -> Direction:
        """The same stream seen from the other end: sendonly <-> recvonly."""
        return Direction.of(self.receives, self.sends)

    def __and__(self, other: Direction) -> Direction:
        """What both sides allow."""
        return Direction.of(self.sends and other.sends, self.receives and other.receives)


@dataclass(slots=True)
class Origin:
    """`o=` (RFC 4566 5.2). Session id and version are numbers; some stacks exceed 64 bits."""

    session_id: int
    version: int
    address: str
    username: str = "-"
    nettype: str = "IN"
    addrtype: str = "IP4"

    def __str__(self) -> str:
        fields = (self.username, self.session_id, self.version, self.nettype, self.addrtype, self.address)
        return " ".join(map(str, fields))


@dataclass(slots=True)
class Connection:
    """`c=` (RFC 4566 5.7); multicast TTL suffixes stay inside `address`."""

    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls(address, addrtype="IP6" if ":" in address else "IP4")

    @property
    def is_hold(self) -> bool:
        return self.address == HOLD_ADDRESS

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """`a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]` (RFC 4566 6)."""

    encoding: str
    clock_rate: int
    channels: int = 1

    def __str__(self) -> str:
        channels = f"/{self.channels}" if self.channels != 1 else ""
        return f"{self.encoding}/{self.clock_rate}{channels}"


# RFC 3551 table 4: static audio payload types usable without an rtpmap.
STATIC_RTPMAPS: Final[dict[int, RtpMap]] = {
    0: RtpMap("PCMU", 8000),
    3: RtpMap("GSM", 8000),
    4: RtpMap("G723", 8000),
    5: RtpMap("DVI4", 8000),
    6: RtpMap("DVI4", 16000),
    7: RtpMap("LPC", 8000),
    8: RtpMap("PCMA", 8000),
    9: RtpMap("G722", 8000),
    10: RtpMap("L16", 44100, 2),
    11: RtpMap("L16", 44100),
    12: RtpMap("QCELP", 8000),
    13: RtpMap("CN", 8000),
    15: RtpMap("G728", 8000),
    18: RtpMap("G729", 8000),
}


@dataclass(slots=True)
class Media:
    """One `m=` section and the lines under it (RFC 4566 5.14)."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)
    # Why a line under this m= did not parse (the line is left out). Such a stream is never used,
    # but only refuses the session if it is one we would use (`offer_answer.check_offer`).
    invalid: str | None = field(default=None, compare=False)

    def attribute(self, name: str) -> str | None:
        """Value of the first `a=name:value`, or None."""
        return next((v for n, v in self.attributes if n == name and v is not None), None)

    def attribute_values(self, name: str) -> list[str]:
        return [v for n, v in self.attributes if n == name and v is not None]

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, if any (None: inherit from the session)."""
        return _direction_of(self.attributes)

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        return None if value is None else _parse_ptime(value)

    def rtpmap(self, payload_type: str) -> RtpMap | None:
        """Encoding of a format, from its rtpmap or else the static table."""
        for value in self.attribute_values("rtpmap"):
            pt, _, rest = value.partition(" ")
            if pt == payload_type:
                return _parse_rtpmap(rest)
        if payload_type.isascii() and payload_type.isdigit():
            return STATIC_RTPMAPS.get(int(payload_type))
        return None

    def fmtp(self, payload_type: str) -> str | None:
        for value in self.attribute_values("fmtp"):
            pt, _, params = value.partition(" ")
            if pt == payload_type:
                return params.strip()
        return None

    def lines(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out = [f"m={' '.join([self.media, port, self.proto, *self.formats])}"]
        out += [f"i={v}" for t, v in self.extra if t == "i"]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        out += [f"{t}={v}" for t, v in self.extra if t in _MEDIA_AFTER_B]
        out += _attribute_lines(self.attributes)
        out += [f"{t}={v}" for t, v in self.extra if t not in "i" + _MEDIA_AFTER_B]
        return out


@dataclass(slots=True)
class SessionDescription:
    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    times: list[str] = field(default_factory=lambda: ["0 0"])
    bandwidths: list[str] = field(default_factory=list)
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)
    version: int = 0

    @property
    def direction(self) -> Direction | None:
        return _direction_of(self.attributes)

    def attribute(self, name: str) -> str | None:
        return next((v for n, v in self.attributes if n == name and v is not None), None)

    def connection_for(self, media: Media) -> Connection | None:
        """Media-level c= overrides the session-level one (RFC 4566 5.7)."""
        return media.connection or self.connection

    def direction_for(self, media: Media) -> Direction:
        """Media-level direction, else session-level, else sendrecv (RFC 3264 5.1)."""
        return media.direction or self.direction or Direction.SENDRECV

    def ptime_for(self, media: Media) -> int | None:
        session = self.attribute("ptime")
        return media.ptime or (None if session is None else _parse_ptime(session))

    def __str__(self) -> str:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        out += [f"{t}={v}" for t, v in self.extra if t in _SESSION_BEFORE_C]
        if self.connection is not None:
            out.append(f"c={self.connection}")
        out += [f"b={b}" for b in self.bandwidths]
        out += [f"t={t}" for t in self.times]
        out += [f"{t}={v}" for t, v in self.extra if t in _SESSION_AFTER_T]
        out += _attribute_lines(self.attributes)
        out += [f"{t}={v}" for t, v in self.extra if t not in _SESSION_BEFORE_C + _SESSION_AFTER_T]
        for media in self.media:
            out += media.lines()
        return "\r\n".join(out) + "\r\n"

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")


def _attribute_lines(attributes: list[tuple[str, str | None]]) -> list[str]:
    return [f"a={n}" if v is None else f"a={n}:{v}" for n, v in attributes]


_DIRECTIONS: Final = frozenset(d.value for d in Direction)


def _direction_of(attributes: list[tuple[str, str | None]]) -> Direction | None:
    for name, value in attributes:
        if value is None and name in _DIRECTIONS:
            return Direction(name)
    return None


def _int(text: str, what: str, maximum: int | None = None) -> int:
    # The length cap also keeps int() away from its 4300-digit limit (a ValueError of its own).
    if not text or len(text) > 30 or not (text.isascii() and text.isdigit()):
        raise SdpParseError(f"invalid {what}: {text!r}")
    if maximum is not None and int(text) > maximum:
        raise SdpParseError(f"invalid {what}: {text!r}")
    return int(text)


def _parse_ptime(value: str) -> int:
    # ptime is whole milliseconds, but "20.0" is seen in the wild.
    whole, dot, frac = value.strip().partition(".")
    if dot and frac and not (frac.isascii() and frac.isdigit()):
        raise SdpParseError(f"invalid ptime: {value!r}")
    ptime = _int(whole, "ptime", 1000)
    if ptime == 0:
        raise SdpParseError("ptime of 0")
    return ptime


def _parse_rtpmap(text: str) -> RtpMap:
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        raise SdpParseError(f"invalid rtpmap: {text!r}")
    channels = _int(parts[2], "rtpmap channels", 255) if len(parts) == 3 else 1
    return RtpMap(parts[0], _int(parts[1], "rtpmap clock rate", 10**7), channels)


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpParseError(f"invalid c= line: {value!r}")
    return Connection(parts[2], parts[0], parts[1])


def _parse_media(value: str) -> Media:
    parts = value.split()
    if len(parts) < 3 or not is_token(parts[0]):
        raise SdpParseError(f"invalid m= line: {value!r}")
    port_text, slash, count = parts[1].partition("/")
    port = _int(port_text, "media port", 65535)
    return Media(parts[0], port, parts[2], parts[3:], _int(count, "port count") if slash else None)


def _parse_attribute(value: str) -> tuple[str, str | None]:
    name, colon, rest = value.partition(":")
    if not is_token(name):
        raise SdpParseError(f"invalid attribute: {value!r}")
    if not colon:
        return name, None
    # Check the attributes we interpret now, so later reads cannot fail.
    if name == "rtpmap":
        pt, _, encoding = rest.partition(" ")
        _int(pt, "rtpmap payload type", 127)
        _parse_rtpmap(encoding)
    elif name == "ptime":
        _parse_ptime(rest)
    return name, rest


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse a session description; raises SdpParseError (and nothing else) on bad input."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpParseError("SDP is not valid UTF-8") from exc
    lines = [line.rstrip("\r") for line in data.split("\n")]
    lines = [line for line in lines if line]
    if not lines or lines[0].strip() != "v=0":
        raise SdpParseError("SDP must start with v=0")
    session: SessionDescription | None = None
    media: Media | None = None
    for line in lines[1:]:
        if media is not None and line[:2] != "m=":
            try:
                _media_line(media, line)
            except SdpParseError as exc:
                media.invalid = media.invalid or str(exc)
            continue
        kind, value = _split_line(line)
        if session is None:
            if kind != "o":
                raise SdpParseError("o= must follow v=")
            session = SessionDescription(_parse_origin(value), times=[])
            continue
        if kind == "m":
            media = _parse_media(value)
            session.media.append(media)
        elif _common_line(session, kind, value):
            pass
        elif kind == "s":
            session.session_name = value
        elif kind == "t":
            session.times.append(value)
        else:
            session.extra.append((kind, value))
    if session is None:
        raise SdpParseError("SDP has no o= line")
    if not session.times:
        session.times.append("0 0")
    return session


def _split_line(line: str) -> tuple[str, str]:
    kind, eq, value = line[:1], line[1:2], line[2:]
    if eq != "=" or not ("a" <= kind <= "z"):
        raise SdpParseError(f"invalid SDP line: {line[:60]!r}")
    if _CONTROL_RE.search(value):
        raise SdpParseError("control character in SDP")
    return kind, value


def _media_line(media: Media, line: str) -> None:
    """A line under an m= line."""
    kind, value = _split_line(line)
    if not _common_line(media, kind, value):
        media.extra.append((kind, value))


def _common_line(section: SessionDescription | Media, kind: str, value: str) -> bool:
    """Apply a c=, a= or b= line, which mean the same at session and media level; False for others."""
    if kind == "c":
        section.connection = _parse_connection(value)
    elif kind == "a":
        section.attributes.append(_parse_attribute(value))
    elif kind == "b":
        section.bandwidths.append(value)
    else:
        return False
    return True


def _parse_origin(value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise SdpParseError(f"invalid o= line: {value!r}")
    return Origin(
        session_id=_int(parts[1], "session id"),
        version=_int(parts[2], "session version"),
        address=parts[5],
        username=parts[0],
        nettype=parts[3],
        addrtype=parts[4],
    )
