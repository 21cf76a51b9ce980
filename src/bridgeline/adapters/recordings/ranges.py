"""HTTP Range requests for recording downloads (RFC 9110 §14): one range, or the whole file.

Decisions: a single `bytes=` range (first-last, first-, or -suffix) is served as 206; a header that
is not valid syntax, names another unit, or asks for several ranges is ignored and the whole file is
served with 200 (RFC 9110 lets a server ignore Range; multipart/byteranges is not worth its cost for
audio players, which ask for one range); a valid range that no byte of the file satisfies is 416 with
`Content-Range: bytes */<size>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEADER_CHARS = 200  # longer Range headers are ignored (a player's is ~30 characters)
_SPEC = re.compile(r"bytes=([0-9]{0,19})-([0-9]{0,19})", re.ASCII)


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # included
    total: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.total}"


class RangeNotSatisfiable(ValueError):
    """416: answer with `Content-Range: bytes */<total>`."""

    def __init__(self, total: int) -> None:
        super().__init__(f"no byte of the {total}-byte recording is in the requested range")
        self.total = total

    @property
    def content_range(self) -> str:
        return f"bytes */{self.total}"


def parse_range(header: str | None, total: int) -> ByteRange | None:
    """The range to serve (206), None to serve everything (200), or RangeNotSatisfiable (416)."""
    if header is None or len(header) > MAX_HEADER_CHARS:
        return None
    match = _SPEC.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None  # other units, several ranges, bad syntax: ignored
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or total == 0:
            raise RangeNotSatisfiable(total)
        return ByteRange(max(0, total - suffix), total - 1, total)
    start = int(first)
    if last and int(last) < start:
        return None  # an invalid range-spec: RFC 9110 says ignore the header
    if start >= total:
        raise RangeNotSatisfiable(total)
    end = min(int(last), total - 1) if last else total - 1
    return ByteRange(start, end, total)
