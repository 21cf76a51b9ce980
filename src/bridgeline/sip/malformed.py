"""400 Bad Request for requests too malformed to parse (RFC 3261 8.2.1 ... 8.2.6, 21.4.1).

`parse_message` rejects a datagram as a whole, but a request whose Via, From, To, Call-ID and
CSeq lines are intact can still be answered: a 400 built from those raw lines tells the sender
why its request fails instead of leaving it to retransmit for 32 seconds. Anything less intact
is dropped. Never raises.
"""

from __future__ import annotations

import re
from typing import Final

from .headers import Headers, header_key, parse_call_id, parse_cseq, parse_name_address, parse_via
from .message import MAX_MESSAGE_SIZE, Response
from .syntax import SipParseError, is_token, split_top_level
from .transaction import Address, response_address

_HEAD_END_RE: Final = re.compile(rb"\r?\n\r?\n")
_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_COPIED: Final = ("via", "from", "to", "call-id", "cseq")


def bad_request(data: bytes, source: Address, to_tag: str) -> tuple[Response, Address] | None:
    """The 400 to send back for a malformed request, and where; None if it cannot be answered
    (a response, an ACK, or a request without usable transaction headers)."""
    try:
        return _bad_request(data, source, to_tag)
    except (SipParseError, ValueError, UnicodeError):
        return None


def _bad_request(data: bytes, source: Address, to_tag: str) -> tuple[Response, Address] | None:
    if len(data) > MAX_MESSAGE_SIZE:
        return None
    data = data.lstrip(b"\r\n")
    match = _HEAD_END_RE.search(data)
    head = (data[: match.start()] if match else data).decode("utf-8", errors="strict")
    lines = re.split(r"\r?\n", head)
    parts = lines[0].split(" ")
    if len(parts) != 3 or not is_token(parts[0]) or parts[2].upper() != "SIP/2.0" or parts[0] == "ACK":
        return None
    found: dict[str, list[str]] = {name: [] for name in _COPIED}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = header_key(name.strip())
        if colon and key in found and not _CONTROL_RE.search(value):
            found[key].append(value.strip())
    if any(not values for values in found.values()) or any(len(found[k]) != 1 for k in _COPIED[1:]):
        return None
    # Only these lines are echoed, so each must parse: the sender matches the 400 to its
    # transaction by them, and a copy of a broken line would make the 400 malformed in turn.
    vias = [parse_via(v) for value in found["via"] for v in split_top_level(value, ",")]
    top = vias[0]
    parse_name_address(found["from"][0])
    to = parse_name_address(found["to"][0])
    parse_call_id(found["call-id"][0])
    parse_cseq(found["cseq"][0])
    host, port = source
    stamped = top.with_param("received", host)
    if top.wants_rport:
        stamped = stamped.with_param("rport", str(port))
    headers = Headers()
    for i, value in enumerate(found["via"]):
        if i == 0:
            value = ", ".join([str(stamped), *split_top_level(value, ",")[1:]])
        headers.add("Via", value)
    headers.add("From", found["from"][0])
    headers.add("To", found["to"][0] if to.tag else f"{found['to'][0]};tag={to_tag}")
    headers.add("Call-ID", found["call-id"][0])
    headers.add("CSeq", found["cseq"][0])
    headers.add("Content-Length", "0")
    return Response(400, "Bad Request", headers), response_address(stamped)
