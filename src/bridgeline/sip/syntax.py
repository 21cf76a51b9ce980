"""Low-level SIP grammar pieces shared by the URI, header and message parsers (RFC 3261 section 25).

Every parser in this package reports malformed input with `SipParseError` and nothing else, so
the transport loop can catch exactly one exception and drop (or 400) the datagram.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator

PARSE_CACHE_SIZE = 256  # distinct texts each memoised parser (URIs, Via, name-addr, CSeq) remembers
_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?\.?")
# Characters no unquoted parameter value, URI or header value may carry: they end the element
# or would let a value smuggle extra structure (CR/LF header injection) into what we serialise.
_FORBIDDEN_RE = re.compile(r'[ \t"<>\x00-\x1f\x7f]')


class SipParseError(ValueError):
    """The input is not well-formed SIP (or a value in it is out of range)."""


def is_token(text: str) -> bool:
    """RFC 3261 25.1 `token`: one or more of alphanumerics and -.!%*_+`'~ (ASCII), nothing else."""
    return _TOKEN_RE.fullmatch(text) is not None


def has_forbidden_chars(text: str) -> bool:
    """True when text contains whitespace, quotes, angle brackets or control characters."""
    return _FORBIDDEN_RE.search(text) is not None


def parse_uint(text: str, what: str, maximum: int) -> int:
    """Parse a run of ASCII digits no larger than maximum.

    `str.isdigit` alone accepts digits from other scripts ("²", "٣") that int() then mishandles,
    so the ASCII check is what keeps odd bytes from turning into numbers."""
    if not text or len(text) > 10 or not (text.isascii() and text.isdigit()):
        raise SipParseError(f"invalid {what}: {text!r}")
    value = int(text)
    if value > maximum:
        raise SipParseError(f"{what} out of range: {value}")
    return value


def scan_quoted(text: str, start: int) -> int:
    """Return the index just past the quoted-string that opens at text[start] (RFC 3261 25.1)."""
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2  # quoted-pair: the next character is literal, even a quote
            continue
        if c == '"':
            return i + 1
        i += 1
    raise SipParseError("unterminated quoted string")


def unquote(text: str) -> str:
    """Strip the quotes and backslash escapes of a complete quoted-string; other text is returned as is."""
    if not text.startswith('"'):
        return text
    if scan_quoted(text, 0) != len(text):
        raise SipParseError(f"garbage after quoted string: {text!r}")
    return re.sub(r"\\(.)", r"\1", text[1:-1], flags=re.S)


def quote(text: str) -> str:
    """Make a quoted-string, escaping backslashes, quotes and control characters."""
    if any(c in "\r\n" for c in text):
        raise ValueError("quoted strings cannot contain CR or LF")
    return '"' + _QUOTED_PAIR_RE.sub(r"\\\g<0>", text) + '"'


# What a quoted-string must escape: the quote, the backslash, and control characters, which only a
# quoted-pair may carry (RFC 3261 25.1; CR and LF never).
_QUOTED_PAIR_RE = re.compile(r'[\\"\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def controls_only_quoted(line: str) -> bool:
    """True when every control character of a header line is escaped by a quoted-pair inside a
    quoted-string (RFC 3261 25.1 allows that in display names); a line without any is true too."""
    quoted = escaped = False
    for c in line:
        if escaped:
            if c == "\r":
                return False
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif (c < " " and c != "\t") or c == "\x7f":
            return False
    return True


def split_top_level(text: str, sep: str) -> list[str]:
    """Split on sep where it is not inside a quoted string or <...>, stripping each piece.

    Used for comma-separated header lists (RFC 3261 7.3.1) and for ;parameters, where a quoted
    display name or a bracketed URI may legitimately contain the separator."""
    if '"' not in text:  # fast paths; a quote must go through scan_quoted, which rejects an open one
        if sep not in text:
            return [text.strip()]
        if "<" not in text:
            return [part.strip() for part in text.split(sep)]
    parts: list[str] = []
    start = i = 0
    in_angle = False
    while i < len(text):
        c = text[i]
        if c == '"' and not in_angle:
            i = scan_quoted(text, i)
            continue
        if c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == sep and not in_angle:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    parts.append(text[start:].strip())
    return parts


class Params:
    """Ordered `;name[=value]` parameters with case-insensitive names (RFC 3261 7.3.1, 19.1.1).

    A flag parameter (`;lr`) has the value None, `;x=` has "". Values are kept as written,
    quotes included, so parse/serialise round-trips. Immutable and hashable."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str | None]] = ()) -> None:
        self._items = tuple(items)

    def get(self, name: str) -> str | None:
        """The value of the first parameter called name (None when absent or a flag)."""
        key = name.lower()
        for n, v in self._items:
            if n.lower() == key:
                return v
        return None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(n.lower() == key for n, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Params({list(self._items)!r})"

    def __str__(self) -> str:
        return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in self._items)

    def with_param(self, name: str, value: str | None = None) -> Params:
        """Copy with name set to value, in place if present, else appended."""
        if not is_token(name):
            raise ValueError(f"invalid parameter name: {name!r}")
        if value is not None:
            _check_param_value(value)  # SipParseError is a ValueError: the caller passed bad data
        if name in self:
            key = name.lower()
            done = False
            items: list[tuple[str, str | None]] = []
            for n, v in self._items:
                if n.lower() == key:
                    if not done:
                        items.append((n, value))
                        done = True
                    continue
                items.append((n, v))
            return Params(items)
        return Params((*self._items, (name, value)))

    def without(self, name: str) -> Params:
        """Copy without any parameter called name."""
        return Params((n, v) for n, v in self._items if n.lower() != name.lower())


def _check_param_value(value: str) -> None:
    if value.startswith('"'):
        if scan_quoted(value, 0) != len(value):
            raise SipParseError(f"garbage after quoted parameter value: {value!r}")
    elif has_forbidden_chars(value):
        raise SipParseError(f"invalid parameter value: {value!r}")


def parse_params(text: str) -> Params:
    """Parse `;a=1;b` (leading ';' required unless text is blank). Empty segments (`;;`) are
    skipped rather than rejected: some UAs emit a trailing ';' and nothing is lost by ignoring it."""
    text = text.strip()
    if not text:
        return Params()
    if text[0] != ";":
        raise SipParseError(f"expected ';' before parameters: {text!r}")
    items: list[tuple[str, str | None]] = []
    for part in split_top_level(text[1:], ";"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not is_token(name):
            raise SipParseError(f"invalid parameter name: {name!r}")
        if eq:
            value = value.strip()
            _check_param_value(value)
            items.append((name, value))
        else:
            items.append((name, None))
    return Params(items)


def check_host(host: str) -> str:
    """Validate a host as it appears in a URI or Via: hostname, IPv4 or bracketed IPv6."""
    if host.startswith("["):
        if not host.endswith("]"):
            raise SipParseError(f"invalid IPv6 reference: {host!r}")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise SipParseError(f"invalid IPv6 address: {host!r}") from exc
        return host
    if not _HOSTNAME_RE.fullmatch(host):
        raise SipParseError(f"invalid host: {host!r}")
    return host


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Split `host[:port]` (host may be `[v6]`), validating both."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference: {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"garbage after IPv6 reference: {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_raw = text.partition(":")
        port_text = port_text_raw if colon else None
    check_host(host)
    port = None if port_text is None else parse_uint(port_text, "port", 65535)
    return host, port


def unbracket(host: str) -> str:
    """`[::1]` -> `::1`, for handing a host to the socket layer."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def quotable(text: str, limit: int = 120) -> str:
    """Text fit for a quoted-string or a reason phrase (RFC 3261 25.1): printable ASCII, no quote
    or backslash, at most `limit` characters, so an error that names peer input never reflects it raw."""
    return "".join(c for c in text if " " <= c <= "~" and c not in '"\\')[:limit]
