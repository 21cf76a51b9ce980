"""Cutting a TCP/TLS byte stream into SIP messages (RFC 3261 18.3), sans-I/O.

Over a stream the only message boundary is Content-Length, so it is mandatory: a message without
one (or with a malformed or conflicting one) cannot be framed, and neither can anything after it.
Such errors are final: `feed` returns the messages framed before the error and sets `error`; the
connection must then be closed (after answering 400 when the head is a request). CRLF
keep-alives between messages are RFC 5626 pings (CRLFCRLF, answered with one CRLF) and pongs
(CRLF). The limits bound what one connection can make us buffer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

_HEAD_END_RE: Final = re.compile(rb"\r?\n\r?\n")
# Content-Length or its compact form `l` (RFC 3261 7.3.3), at the start of a header line.
_LENGTH_RE: Final = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.I | re.M)
PING: Final = b"\r\n\r\n"
PONG: Final = b"\r\n"


class FramingErrorKind(StrEnum):
    """Why a stream could not be framed; also the suffix of the endpoint's stats counter."""

    HEADER_TOO_LARGE = "header_too_large"
    BODY_TOO_LARGE = "body_too_large"
    MISSING_CONTENT_LENGTH = "missing_content_length"
    BAD_CONTENT_LENGTH = "bad_content_length"


_REASONS: Final = {
    FramingErrorKind.HEADER_TOO_LARGE: "Header block too large",
    FramingErrorKind.BODY_TOO_LARGE: "Body too large",
    FramingErrorKind.MISSING_CONTENT_LENGTH: "Missing Content-Length header",
    FramingErrorKind.BAD_CONTENT_LENGTH: "Malformed Content-Length header",
}


class FramingError(ValueError):
    """Why the stream cannot be framed any further. `head` is the header block when one was read
    whole (so a request can still be answered 400); `reason` is fit for a reason phrase."""

    def __init__(self, kind: FramingErrorKind, head: bytes | None = None) -> None:
        super().__init__(_REASONS[kind])
        self.kind = kind
        self.head = head

    @property
    def reason(self) -> str:
        return _REASONS[self.kind]


@dataclass(frozen=True, slots=True)
class FramingLimits:
    max_header_bytes: int = 16384  # start line and headers, up to the blank line
    max_body_bytes: int = 32768


class StreamFramer:
    """Feed bytes as they arrive; get whole messages (head and body) back, in order."""

    def __init__(self, limits: FramingLimits = FramingLimits()) -> None:
        self.limits = limits
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the current head already searched for its end
        self.error: FramingError | None = None  # set once; nothing more is framed after it
        self.pings = 0  # CRLFCRLF keep-alives received and not yet taken (each wants a pong)

    @property
    def pending(self) -> int:
        """Bytes of a message started but not finished: non-zero when the peer closes mid-message."""
        return len(self._buffer)

    def take_pings(self) -> int:
        pings, self.pings = self.pings, 0
        return pings

    def feed(self, data: bytes) -> list[bytes]:
        """The messages `data` completes, in order. Check `error` afterwards: once it is set, the
        rest of the stream is unusable and later calls return nothing."""
        if self.error is not None:
            return []
        self._buffer += data
        messages: list[bytes] = []
        try:
            while (message := self._next()) is not None:
                messages.append(message)
        except FramingError as exc:
            self.error = exc
            self._buffer.clear()
        return messages

    def _next(self) -> bytes | None:
        buffer = self._buffer
        self._skip_keepalives()
        if not buffer:
            return None
        limit = self.limits.max_header_bytes
        match = _HEAD_END_RE.search(buffer, max(0, self._scanned - 3), limit + 4)
        if match is None:
            if len(buffer) > limit:
                raise FramingError(FramingErrorKind.HEADER_TOO_LARGE)
            self._scanned = len(buffer)
            return None
        head = bytes(buffer[: match.end()])
        length = self._content_length(head)
        end = match.end() + length
        if len(buffer) < end:
            self._scanned = match.start()  # found again cheaply next time
            return None
        message = bytes(buffer[:end])
        del buffer[:end]
        self._scanned = 0
        return message

    def _skip_keepalives(self) -> None:
        buffer = self._buffer
        while buffer and buffer[0] in b"\r\n":
            if buffer.startswith(PING):
                self.pings += 1
                del buffer[:4]
            elif len(buffer) < len(PING) and PING.startswith(buffer):
                return  # maybe the start of a ping: wait for the rest
            elif buffer.startswith(PONG):
                del buffer[:2]
            else:
                del buffer[:1]  # a bare LF: tolerated, like the blank lines RFC 3261 7.5 allows
        self._scanned = min(self._scanned, len(buffer))

    def _content_length(self, head: bytes) -> int:
        values = {value.strip() for value in _LENGTH_RE.findall(head)}
        if not values:
            raise FramingError(FramingErrorKind.MISSING_CONTENT_LENGTH, head)
        if len(values) > 1:
            raise FramingError(FramingErrorKind.BAD_CONTENT_LENGTH, head)
        (text,) = values
        if not text.isdigit() or len(text) > 9:
            raise FramingError(FramingErrorKind.BAD_CONTENT_LENGTH, head)
        length = int(text)
        if length > self.limits.max_body_bytes:
            raise FramingError(FramingErrorKind.BODY_TOO_LARGE, head)
        return length
