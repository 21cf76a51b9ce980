"""SIP requests and responses: parsing, serialisation and builders (RFC 3261 sections 7, 8 and 18).

`parse_message` takes one datagram and returns a `Request` or `Response`, or raises
`SipParseError`; it never lets another exception type escape. Beyond framing it checks the headers
every transaction needs (Via, From, To, Call-ID, CSeq), so code holding a parsed message can use
`msg.cseq`, `msg.top_via` etc. without further error handling.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol

from .headers import (
    CSeq,
    Headers,
    NameAddress,
    Via,
    check_header,
    header_key,
    parse_call_id,
    parse_cseq,
    parse_name_address,
    parse_name_addresses,
    parse_via,
)
from .syntax import SipParseError as SipParseError  # re-exported: what parse_message raises
from .syntax import controls_only_quoted, is_token, parse_uint
from .uri import URI, parse_uri

MAX_MESSAGE_SIZE: Final = 65536
MAX_HEADERS: Final = 200
BRANCH_MAGIC_COOKIE: Final = "z9hG4bK"  # RFC 3261 8.1.1.7
_VERSION: Final = "SIP/2.0"
_HEAD_END_RE = re.compile(rb"\r?\n\r?\n")
_LINE_RE = re.compile(r"\r?\n")
_BAD_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_VERSION_RE = re.compile(r"SIP/\d+\.\d+", re.IGNORECASE)


class UnsupportedVersion(SipParseError):
    """A request in another SIP version than 2.0: answered 505 Version Not Supported (RFC 3261 21.5.7)."""


class Method(StrEnum):
    """Methods we know by name; requests carry a plain str so extension methods still parse."""

    INVITE = "INVITE"
    ACK = "ACK"
    BYE = "BYE"
    CANCEL = "CANCEL"
    OPTIONS = "OPTIONS"
    REGISTER = "REGISTER"
    PRACK = "PRACK"
    SUBSCRIBE = "SUBSCRIBE"
    NOTIFY = "NOTIFY"
    PUBLISH = "PUBLISH"
    INFO = "INFO"
    REFER = "REFER"
    MESSAGE = "MESSAGE"
    UPDATE = "UPDATE"


REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}
_CLASS_PHRASES = {1: "Provisional", 2: "Success", 3: "Redirection", 4: "Client Error", 5: "Server Error"}


def reason_phrase(status: int) -> str:
    """Default reason phrase for a status code, falling back to its class (RFC 3261 21)."""
    return REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Global Failure")


class _Message:
    """Typed views shared by requests and responses; each parses the raw header on access."""

    headers: Headers
    body: bytes

    @property
    def call_id(self) -> str:
        return parse_call_id(self.headers.single("Call-ID"))

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(self.headers.single("CSeq"))

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_list("Via")]

    @property
    def top_via(self) -> Via:
        first = self.headers.get("Via")
        if first is not None and "," not in first:  # the usual case: one Via per line
            return parse_via(first)
        values = self.headers.get_list("Via")
        if not values:
            raise SipParseError("no Via header")
        return parse_via(values[0])

    @property
    def from_addr(self) -> NameAddress:
        return parse_name_address(self.headers.single("From"))

    @property
    def to_addr(self) -> NameAddress:
        return parse_name_address(self.headers.single("To"))

    @property
    def contacts(self) -> list[NameAddress]:
        """Contact addresses; [] for both no Contact and the REGISTER wildcard `*` (check
        `contact_is_wildcard` first when that distinction matters)."""
        if self.contact_is_wildcard:
            return []
        return parse_name_addresses(self.headers.get_all("Contact"))

    @property
    def contact_is_wildcard(self) -> bool:
        items = self.headers.get_list("Contact")
        if "*" in items and len(items) > 1:
            raise SipParseError("Contact: * must be the only contact")
        return items == ["*"]

    @property
    def routes(self) -> list[NameAddress]:
        return parse_name_addresses(self.headers.get_all("Route"))

    @property
    def record_routes(self) -> list[NameAddress]:
        return parse_name_addresses(self.headers.get_all("Record-Route"))

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return None if value is None else parse_uint(value, "Max-Forwards", 255)

    @property
    def content_type(self) -> str | None:
        """Media type without parameters, lower-cased (`application/sdp`)."""
        value = self.headers.get("Content-Type")
        return value.split(";", 1)[0].strip().lower() if value else None

    def _serialise(self, start_line: str) -> bytes:
        if "\r" in start_line or "\n" in start_line:
            raise ValueError(f"CR/LF in start line: {start_line!r}")  # e.g. a reason phrase from input
        lines = [start_line]
        length_written = False
        for name, value in self.headers:
            if header_key(name) == "content-length":
                if length_written:
                    continue
                value = str(len(self.body))  # always tell the truth about the body we send
                length_written = True
            lines.append(f"{name}: {value}")
        if not length_written:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass(eq=True)
class Request(_Message):
    method: str
    uri: URI
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __bytes__(self) -> bytes:
        return self._serialise(f"{self.method} {self.uri} {_VERSION}")


@dataclass(eq=True)
class Response(_Message):
    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def __bytes__(self) -> bytes:
        return self._serialise(f"{_VERSION} {self.status} {self.reason}")

    @property
    def provisional(self) -> bool:
        return self.status < 200


Message = Request | Response


def is_keepalive(data: bytes) -> bool:
    """CRLF keep-alives (RFC 5626 section 3.5.1) are blank lines, not messages."""
    return not data.strip(b"\r\n")


def parse_message(data: bytes) -> Message:
    """Parse one SIP message from a datagram (RFC 3261 7 and 18.3).

    Leading blank lines are skipped (7.5), folded header lines are joined with a space, bare LF
    line ends are tolerated, and so are runs of spaces in the request line. With Content-Length the
    body is exactly that many bytes (excess is discarded, as 18.3 prescribes for UDP); without it,
    the body is the rest of the datagram. The error's text is fit for a 400's reason phrase: it
    names what is wrong and never quotes the input."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError("Message too large")
    data = bytes(data).lstrip(b"\r\n")
    match = _HEAD_END_RE.search(data)
    if match is None:
        raise SipParseError("No blank line after the headers")
    try:
        head = data[: match.start()].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("Headers are not valid UTF-8") from exc
    lines = _LINE_RE.split(head)
    start = _start_line(lines[0])
    if _BAD_CONTROL_RE.search("".join(lines)) and not all(map(controls_only_quoted, lines)):
        raise SipParseError("Control character in the headers")
    headers = Headers.trusted(_header_lines(lines[1:]))
    body = data[match.end() :]
    lengths = headers.get_all("Content-Length")
    if lengths:
        if len(set(lengths)) > 1:
            raise SipParseError("Conflicting Content-Length headers")
        try:
            length = parse_uint(lengths[0], "Content-Length", MAX_MESSAGE_SIZE)
        except SipParseError as exc:
            raise SipParseError("Malformed Content-Length header") from exc
        if length > len(body):
            raise SipParseError("Body shorter than Content-Length")
        body = body[:length]
    message = start(headers, body)
    _check_mandatory(message)
    return message


def _header_lines(lines: list[str]) -> list[tuple[str, str]]:
    raw: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not raw:
                raise SipParseError("Continuation line before any header")
            name, value = raw[-1]
            raw[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            raise SipParseError("Malformed header line")
        raw.append((name, value.strip()))
        if len(raw) > MAX_HEADERS:
            raise SipParseError("Too many headers")
    return raw


def _start_line(line: str) -> Callable[[Headers, bytes], Message]:
    """Check the start line; what it returns builds the message once headers and body are known."""
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if version.upper() != _VERSION:
            raise SipParseError("Unsupported SIP version")
        status = parse_uint(code, "status code", 699) if len(code) == 3 and code.isdigit() else 0
        if status < 100:
            raise SipParseError("Invalid status code")
        return lambda headers, body: Response(status, reason.strip(), headers, body)
    parts = line.split()  # liberal: RFC 3261 asks for single spaces, some senders pad with more
    if len(parts) != 3 or not is_token(parts[0]):
        raise SipParseError("Malformed Request-Line")
    method, uri_text, version = parts
    if version.upper() != _VERSION:
        if _VERSION_RE.fullmatch(version):
            raise UnsupportedVersion("Version Not Supported")
        raise SipParseError("Malformed Request-Line")
    try:
        uri = parse_uri(uri_text)
    except SipParseError as exc:
        raise SipParseError("Malformed Request-URI") from exc
    return lambda headers, body: Request(method, uri, headers, body)


# The header each property parses: (property, header name); From to CSeq must appear exactly once.
_MANDATORY: Final = (
    ("from_addr", "From"),
    ("to_addr", "To"),
    ("call_id", "Call-ID"),
    ("cseq", "CSeq"),
    ("max_forwards", "Max-Forwards"),
)


def _check_mandatory(message: Message) -> None:
    """RFC 3261 8.1.1: every message carries Via, From, To, Call-ID and CSeq; parse them now so a
    malformed one is a parse error rather than a surprise deep inside a transaction. Which
    problem it is (missing, repeated, malformed) is only worked out on the error path."""
    try:
        vias = message.vias
    except SipParseError as exc:
        raise SipParseError("Malformed Via header") from exc
    if not vias:
        raise SipParseError("Missing Via header")
    for attribute, name in _MANDATORY:
        try:
            getattr(message, attribute)
        except SipParseError as exc:
            count = len(message.headers.get_all(name))
            problem = (
                "Missing"
                if not count
                else "Multiple"
                if count > 1 and name != "Max-Forwards"
                else "Malformed"
            )
            raise SipParseError(f"{problem} {name} header{'s' if problem == 'Multiple' else ''}") from exc
    if isinstance(message, Request) and message.cseq.method != message.method:
        raise SipParseError("CSeq method does not match the request")


class RandomSource(Protocol):
    """What the id generators need; `random.Random` and `random.SystemRandom` both fit."""

    def getrandbits(self, k: int, /) -> int: ...


def new_branch(rng: RandomSource) -> str:
    """A fresh Via branch with the RFC 3261 magic cookie."""
    return f"{BRANCH_MAGIC_COOKIE}{rng.getrandbits(80):020x}"


def new_tag(rng: RandomSource) -> str:
    """A From/To tag: 32 random bits is the minimum RFC 3261 19.3 asks for; we use 64."""
    return f"{rng.getrandbits(64):016x}"


def new_call_id(rng: RandomSource, host: str | None = None) -> str:
    call_id = f"{rng.getrandbits(128):032x}"
    return f"{call_id}@{host}" if host else call_id


def make_request(
    method: str,
    uri: URI,
    *,
    via: Via,
    from_addr: NameAddress,
    to_addr: NameAddress,
    call_id: str,
    cseq: int,
    contact: NameAddress | None = None,
    routes: Iterable[NameAddress] = (),
    max_forwards: int = 70,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Request:
    """Build a request with the header set of RFC 3261 8.1.1 (To, From, CSeq, Call-ID, Max-Forwards,
    Via, plus Contact and Route when given); extra headers are appended in order."""
    h = Headers()
    h.add("Via", str(via))
    h.add("Max-Forwards", str(max_forwards))
    for route in routes:
        h.add("Route", str(route))
    h.add("From", str(from_addr))
    h.add("To", str(to_addr))
    h.add("Call-ID", call_id)
    h.add("CSeq", f"{cseq} {method}")
    if contact is not None:
        h.add("Contact", str(contact))
    for name, value in headers:
        h.add(name, value)
    h.set("Content-Length", str(len(body)))  # so parse(bytes(req)) == req
    return Request(method, uri, h, body)


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build a response per RFC 3261 8.2.6: Via (all, in order), From, To, Call-ID and CSeq copied
    verbatim; `to_tag` is added to To unless it already has a tag or the status is 100 (8.2.6.2).
    A 100 also echoes Timestamp (8.2.6.1); a 101-299 to an INVITE, Record-Route (12.1.1)."""
    req = request.headers
    # Values copied from the request are as valid as they were there; only ours are checked.
    items = [("Via", via) for via in req.get_all("Via")]
    to = req.single("To")
    if to_tag is not None and status != 100 and parse_name_address(to).tag is None:
        if "\r" in to_tag or "\n" in to_tag:
            raise ValueError(f"To tag contains CR/LF: {to_tag!r}")
        to = f"{to};tag={to_tag}"
    items += [("From", req.single("From")), ("To", to), ("Call-ID", req.single("Call-ID"))]
    items.append(("CSeq", req.single("CSeq")))
    if request.method == "INVITE" and 100 < status < 300:
        # RFC 3261 12.1.1: a response that may establish a dialog carries the request's
        # Record-Route, so the caller's ACK, BYE and re-INVITEs pass through the same proxies.
        items += [("Record-Route", value) for value in req.get_all("Record-Route")]
    timestamp = req.get("Timestamp")
    if status == 100 and timestamp is not None:
        items.append(("Timestamp", timestamp))
    length_given = False
    for name, value in headers:
        check_header(name, value)
        items.append((name, value.strip()))
        length_given = length_given or header_key(name) == "content-length"
    h = Headers.trusted(items)
    if length_given:
        h.set("Content-Length", str(len(body)))  # replaces the caller's, where it stood
    else:
        h = Headers.trusted([*items, ("Content-Length", str(len(body)))])
    return Response(status, reason if reason is not None else reason_phrase(status), h, body)


def make_cancel(invite: Request) -> Request:
    """CANCEL for a pending INVITE (RFC 3261 9.1): same Request-URI, Call-ID, From, To, CSeq number
    and top Via (so it reaches the same server transaction), Route copied, no body."""
    h = Headers()
    h.add("Via", str(invite.top_via))
    h.add("Max-Forwards", "70")
    for route in invite.headers.get_all("Route"):
        h.add("Route", route)
    h.add("From", invite.headers.single("From"))
    h.add("To", invite.headers.single("To"))
    h.add("Call-ID", invite.headers.single("Call-ID"))
    h.add("CSeq", f"{invite.cseq.seq} CANCEL")
    h.add("Content-Length", "0")
    return Request(Method.CANCEL.value, invite.uri, h)
