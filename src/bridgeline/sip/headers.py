"""SIP header collection and parsers for the structured headers (RFC 3261 sections 7.3 and 20).

`Headers` stores raw `(name, value)` lines in wire order and never rewrites a value, so unknown
headers round-trip untouched. Lookups are case-insensitive and accept compact forms (`v` is
`Via`). The typed views (`Via`, `NameAddress`, `CSeq`) are parsed on demand from the raw values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from .syntax import (
    PARSE_CACHE_SIZE,
    Params,
    SipParseError,
    is_token,
    parse_hostport,
    parse_params,
    parse_uint,
    quote,
    scan_quoted,
    split_top_level,
    unquote,
)
from .uri import URI, parse_uri

# RFC 3261 7.3.3 and the IANA SIP parameters registry ("compact" column).
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}
# Spellings that str.capitalize() per dash-separated word would get wrong.
_SPECIAL_CASE = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
}
# The typed views are parsed on every read, and a message's Via, From, To and CSeq are read by
# several layers (transaction key, Via stamping, dialog, response building), while the ACK and BYE
# of a call repeat the INVITE's From. The parsers below therefore remember the values they parsed
# most recently: the results are immutable, so sharing one between readers is safe.
MAX_CSEQ = 2**31 - 1  # RFC 3261 8.1.1.5: the sequence number must be less than 2**31


_KEYS: dict[str, str] = {}  # header_key results for the names seen so far (bounded below)
_MAX_KEYS = 512
_WHITESPACE_RE = re.compile(r"\s")  # what str.isspace() calls whitespace


def header_key(name: str) -> str:
    """Lookup key for a header name: lower case, compact form expanded."""
    key = _KEYS.get(name)
    if key is None:
        lower = name.lower()
        key = COMPACT_FORMS.get(lower, lower)
        if len(_KEYS) < _MAX_KEYS:  # names come from the network: do not let them grow it forever
            _KEYS[name] = key
    return key


def canonical_name(name: str) -> str:
    """Conventional spelling of a header name: `v` and `VIA` both give `Via`."""
    key = header_key(name)
    return _SPECIAL_CASE.get(key) or "-".join(word.capitalize() for word in key.split("-"))


def check_header(name: str, value: str) -> None:
    """Refuse a header line that would not serialise as one line: ValueError."""
    if not is_token(name):
        raise ValueError(f"invalid header name: {name!r}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"header value contains CR/LF: {value!r}")


class Headers:
    """Ordered, multi-valued header lines. Mutating methods validate their input so a message
    built in code cannot inject extra lines when serialised.

    Lookups go through an index from lookup key to values, built on the first lookup and dropped
    by every mutation: a message's headers are read many times per transaction and rarely changed.
    Lines and index are tuples of strings, which the cyclic GC stops tracking: finished
    transactions keep their request for 32 s, so at hundreds of calls per second every tracked
    object per request adds to each full collection's pause."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: tuple[tuple[str, str], ...] = ()
        self._index: dict[str, tuple[str, ...]] | None = None
        lines = []
        for name, value in items:
            check_header(name, value)
            lines.append((name, value.strip()))
        self._items = tuple(lines)

    @classmethod
    def trusted(cls, items: Iterable[tuple[str, str]]) -> Headers:
        """Take lines the message parser has already checked (token names, stripped values free
        of CR/LF) without checking them again."""
        new = cls()
        new._items = tuple(items)
        return new

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self._lookup()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def copy(self) -> Headers:
        new = Headers()
        new._items = self._items
        new._index = self._index  # neither is mutated in place: a mutation of either copy replaces it
        return new

    def _lookup(self) -> dict[str, tuple[str, ...]]:
        # Tuples, not lists: the cyclic GC stops tracking tuples of strings (and then the dict),
        # which matters for the requests that finished transactions keep for 32 s.
        index = self._index
        if index is None:
            index = {}
            for n, v in self._items:
                key = header_key(n)
                values = index.get(key)
                index[key] = (v,) if values is None else (*values, v)
            self._index = index
        return index

    def get(self, name: str) -> str | None:
        """Value of the first line called name, or None."""
        values = self._lookup().get(header_key(name))
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """Values of every line called name, in order, one entry per line."""
        return list(self._lookup().get(header_key(name), ()))

    def get_list(self, name: str) -> list[str]:
        """Comma-separated elements across every line called name (RFC 3261 7.3.1). Only meaningful
        for list-valued headers (Via, Route, Contact, Allow...); WWW-Authenticate is not one."""
        items: list[str] = []
        for value in self._lookup().get(header_key(name), ()):
            items.extend(part for part in split_top_level(value, ",") if part)
        return items

    def add(self, name: str, value: str) -> None:
        """Append a line."""
        check_header(name, value)
        self._items = (*self._items, (name, value.strip()))
        self._index = None

    def prepend(self, name: str, value: str) -> None:
        """Insert a line at the very top (a proxy or client adding its Via)."""
        check_header(name, value)
        self._items = ((name, value.strip()), *self._items)
        self._index = None

    def set(self, name: str, value: str) -> None:
        """Replace every line called name by one line, at the position of the first, or append."""
        check_header(name, value)
        self._index = None
        key = header_key(name)
        index = next((i for i, (n, _) in enumerate(self._items) if header_key(n) == key), None)
        if index is None:
            self._items = (*self._items, (name, value.strip()))
            return
        kept = [(n, v) for i, (n, v) in enumerate(self._items) if i < index or header_key(n) != key]
        kept.insert(index, (name, value.strip()))
        self._items = tuple(kept)

    def remove(self, name: str) -> int:
        """Delete every line called name; returns how many there were."""
        self._index = None
        key = header_key(name)
        before = len(self._items)
        self._items = tuple((n, v) for n, v in self._items if header_key(n) != key)
        return before - len(self._items)

    def single(self, name: str) -> str:
        """The value of a header that must appear exactly once (From, To, Call-ID, CSeq)."""
        values = self._lookup().get(header_key(name), ())
        if len(values) != 1:
            raise SipParseError(f"expected exactly one {canonical_name(name)} header, got {len(values)}")
        return values[0]


@dataclass(frozen=True, slots=True)
class Via:
    """One Via element (RFC 3261 20.42, 18.2.1; `rport` from RFC 3581)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=Params)

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {self.host}{port}{self.params}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value a server filled in; None when absent or still an empty flag."""
        value = self.params.get("rport")
        return None if value is None else int(value)

    @property
    def wants_rport(self) -> bool:
        """The client asked for symmetric response routing (RFC 3581 section 3)."""
        return "rport" in self.params

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def with_param(self, name: str, value: str | None = None) -> Via:
        return Via(self.transport, self.host, self.port, self.params.with_param(name, value))


_VIA_PROTOCOL_RE = re.compile(r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9.!%*_+`'~-]+)\s+", re.I)


def parse_via(text: str) -> Via:
    """Parse one Via element (already split from its comma list)."""
    return _parse_via_cached(text)


def _parse_via(text: str) -> Via:
    text = text.strip()
    m = _VIA_PROTOCOL_RE.match(text)
    if not m:
        raise SipParseError(f"invalid Via protocol: {text!r}")
    rest = text[m.end() :]
    sent_by, semi, params_text = rest.partition(";")
    # RFC 3261 allows whitespace around the ':' of sent-by.
    host, port = parse_hostport(re.sub(r"\s*:\s*", ":", sent_by.strip()))
    params = parse_params(";" + params_text) if semi else Params()
    rport = params.get("rport")
    if rport is not None:
        parse_uint(rport, "Via rport", 65535)
    if "branch" in params and not params.get("branch"):
        raise SipParseError("empty Via branch")
    if params.get("received") == "":
        raise SipParseError("empty Via received")
    return Via(m.group(1).upper(), host, port, params)


_parse_via_cached = lru_cache(maxsize=PARSE_CACHE_SIZE)(_parse_via)


@dataclass(frozen=True, slots=True)
class NameAddress:
    """`"Display" <uri>;params` as used by From, To, Contact, Route, Record-Route (RFC 3261 20.10).

    `display_name` is unquoted; params are header parameters (tag, expires...), not URI ones."""

    uri: URI
    display_name: str | None = None
    params: Params = field(default_factory=Params)

    def __str__(self) -> str:
        name = f"{quote(self.display_name)} " if self.display_name else ""
        return f"{name}<{self.uri}>{self.params}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def with_tag(self, tag: str) -> NameAddress:
        return NameAddress(self.uri, self.display_name, self.params.with_param("tag", tag))


def parse_name_address(text: str) -> NameAddress:
    """Parse name-addr (`"Bob" <sip:bob@b>;tag=x`) or addr-spec (`sip:bob@b;tag=x`); in the latter
    form everything after the first ';' is a header parameter (RFC 3261 20.10)."""
    return _parse_name_address_cached(text)


def _parse_name_address(text: str) -> NameAddress:
    s = text.strip()
    display: str | None = None
    if s.startswith('"'):
        end = scan_quoted(s, 0)
        display = unquote(s[:end])
        s = s[end:].lstrip()
        if not s.startswith("<"):
            raise SipParseError(f"expected <uri> after display name: {text!r}")
    lt = s.find("<")
    if lt < 0:
        uri_text, semi, params_text = s.partition(";")
        if "?" in uri_text or "," in uri_text:
            raise SipParseError(f"addr-spec with headers or comma needs <>: {text!r}")
        params = parse_params(";" + params_text) if semi else Params()
        return NameAddress(parse_uri(uri_text), None, params)
    if display is None:
        words = s[:lt].split()
        if any('"' in w or ">" in w for w in words):
            raise SipParseError(f"invalid display name: {text!r}")
        display = " ".join(words) or None
    gt = s.find(">", lt)
    if gt < 0:
        raise SipParseError(f"unterminated <uri>: {text!r}")
    return NameAddress(parse_uri(s[lt + 1 : gt]), display, parse_params(s[gt + 1 :]))


_parse_name_address_cached = lru_cache(maxsize=PARSE_CACHE_SIZE)(_parse_name_address)


def parse_name_addresses(values: Iterable[str]) -> list[NameAddress]:
    """Parse a comma list of name-addrs (Route, Record-Route, Contact) spread over header lines."""
    result: list[NameAddress] = []
    for value in values:
        result.extend(parse_name_address(part) for part in split_top_level(value, ",") if part)
    return result


@dataclass(frozen=True, slots=True)
class CSeq:
    """`CSeq: 4711 INVITE` (RFC 3261 20.16)."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(text: str) -> CSeq:
    return _parse_cseq_cached(text)


def _parse_cseq(text: str) -> CSeq:
    parts = text.split()
    if len(parts) != 2:
        raise SipParseError(f"invalid CSeq: {text!r}")
    seq = parse_uint(parts[0], "CSeq number", MAX_CSEQ)
    if not is_token(parts[1]):
        raise SipParseError(f"invalid CSeq method: {text!r}")
    return CSeq(seq, parts[1])


_parse_cseq_cached = lru_cache(maxsize=PARSE_CACHE_SIZE)(_parse_cseq)


def parse_call_id(text: str) -> str:
    """Call-ID is `word["@"word]`; we only insist on non-empty and no whitespace (RFC 3261 20.8)."""
    text = text.strip()
    if not text or _WHITESPACE_RE.search(text):
        raise SipParseError(f"invalid Call-ID: {text!r}")
    return text
