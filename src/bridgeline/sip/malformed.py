"""Answers for requests too malformed to parse (RFC 3261 8.2.1 ... 8.2.6, 21.4.1, 21.5.7).

`parse_message` rejects a datagram as a whole, but any request whose top Via can be read can be
answered, and must be: silence leaves the sender retransmitting for 32 seconds. The answer is 505
for another SIP version, else 400 whose reason phrase is `parse_message`'s diagnosis ("Missing
CSeq header", "Malformed From header"...), which names the problem without quoting the input.
It echoes the Via, From, To, Call-ID and CSeq lines that are present once and parse, so the sender
can match it to its transaction; a missing or broken one is replaced by a placeholder (CSeq by
`1 <method>`, which with the top Via's branch is what the client matches on) rather than copied,
so the answer is itself well-formed.
Nothing is answered without a readable Via, nor to an ACK or a response. Never raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from .headers import Headers, Via, header_key, parse_call_id, parse_cseq, parse_name_address, parse_via
from .message import MAX_MESSAGE_SIZE, Response, UnsupportedVersion, parse_message, reason_phrase
from .syntax import SipParseError, controls_only_quoted, is_token, split_top_level
from .transaction import Destination, address_of, response_address, transport_of

_HEAD_END_RE: Final = re.compile(rb"\r?\n\r?\n")
_COPIED: Final = ("via", "from", "to", "call-id", "cseq")
_ANONYMOUS: Final = "<sip:anonymous@anonymous.invalid>"  # stands in for a missing or broken From/To
_CHECKS: Final[dict[str, Callable[[str], object]]] = {
    "from": parse_name_address,
    "to": parse_name_address,
    "call-id": parse_call_id,
    "cseq": parse_cseq,
}


def bad_request(data: bytes, source: Destination, to_tag: str) -> tuple[Response, Destination] | None:
    """The 400 (or 505) to send back for a request that does not parse, and where; None if it
    cannot be answered (a response, an ACK, no readable Via) or does parse."""
    try:
        return _bad_request(data, source, to_tag)
    except (SipParseError, ValueError, UnicodeError):
        return None


def _via(text: str) -> Via | None:
    try:
        return parse_via(text)
    except SipParseError:
        return None


def _diagnosis(data: bytes) -> tuple[int, str] | None:
    try:
        parse_message(data)
    except UnsupportedVersion:
        return 505, reason_phrase(505)
    except SipParseError as exc:
        return 400, str(exc)
    return None


def bad_stream_request(
    head: bytes, reason: str, source: Destination, to_tag: str
) -> tuple[Response, Destination] | None:
    """The 400 for a TCP/TLS message whose framing failed (`stream_framing`), e.g. one without
    Content-Length: `head` is its header block, `reason` the framing error. It goes back over the
    connection, which the transport then closes. None when there is nothing to answer."""
    try:
        return _bad_request(head, source, to_tag, diagnosis=(400, reason))
    except (SipParseError, ValueError, UnicodeError):
        return None


def _bad_request(
    data: bytes, source: Destination, to_tag: str, diagnosis: tuple[int, str] | None = None
) -> tuple[Response, Destination] | None:
    if len(data) > MAX_MESSAGE_SIZE:
        return None
    data = data.lstrip(b"\r\n")
    match = _HEAD_END_RE.search(data)
    lines = re.split(rb"\r?\n", data[: match.start()] if match else data)
    parts = lines[0].decode("utf-8").split()
    if not parts or not is_token(parts[0]) or parts[0] == "ACK" or parts[0].upper().startswith("SIP/"):
        return None
    found: dict[str, list[str]] = {name: [] for name in _COPIED}
    for raw in lines[1:]:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        name, colon, value = line.partition(":")
        key = header_key(name.strip())
        if colon and key in found and controls_only_quoted(value):
            found[key].append(value.strip())
    vias = [_via(v) for value in found["via"] for v in split_top_level(value, ",")]
    if not vias or vias[0] is None:
        return None
    diagnosis = diagnosis or _diagnosis(data)
    if diagnosis is None:
        return None
    status, reason = diagnosis
    if not (reason.isascii() and reason.isprintable() and len(reason) <= 80):  # never reflect input
        reason = reason_phrase(status)
    top = vias[0]
    host, port = address_of(source)
    stamped = top.with_param("received", host)
    if top.wants_rport:
        stamped = stamped.with_param("rport", str(port))
    headers = Headers()
    headers.add("Via", ", ".join(str(via) for via in [stamped, *vias[1:]] if via is not None))
    method = parts[0]
    placeholders = {
        "from": _ANONYMOUS,
        "to": f"{_ANONYMOUS};tag={to_tag}",
        "call-id": "invalid",
        "cseq": f"1 {method}",  # the client matches by top Via branch and CSeq method (17.1.3)
    }
    for key, name in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq")):
        values = found[key]
        value = placeholders[key]
        if len(values) == 1:
            try:
                _CHECKS[key](values[0])
                untagged_to = key == "to" and parse_name_address(values[0]).tag is None
                value = f"{values[0]};tag={to_tag}" if untagged_to else values[0]
            except SipParseError:
                pass
        headers.add(name, value)
    headers.add("Content-Length", "0")
    reply_to = source if transport_of(source).reliable else response_address(stamped)
    return Response(status, reason, headers), reply_to
