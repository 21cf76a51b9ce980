"""400 Bad Request salvaged from requests that do not parse."""

from __future__ import annotations

import pytest

from bridgeline.sip.malformed import bad_request
from bridgeline.sip.message import Response, parse_message

GOOD = (
    b"OPTIONS sip:bridge@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKx;rport, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKy\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:a@example.org>;tag=1\r\n"
    b"To: <sip:bridge@192.0.2.10>\r\n"
    b"Call-ID: abc\r\n"
    b"CSeq: 3 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_answerable_request_gets_a_well_formed_400() -> None:
    broken = GOOD.replace(b"Max-Forwards: 70", b"Max-Forwards: many")
    result = bad_request(broken, ("198.51.100.7", 40000), "t9")
    assert result is not None
    response, destination = result
    assert destination == ("198.51.100.7", 40000)  # rport: the source port, not the Via port
    again = parse_message(bytes(response))
    assert isinstance(again, Response) and again.status == 400
    assert again.to_addr.tag == "t9" and again.call_id == "abc" and str(again.cseq) == "3 OPTIONS"
    assert len(again.vias) == 2 and again.top_via.received == "198.51.100.7"


@pytest.mark.parametrize(
    "data",
    [
        GOOD.replace(b"OPTIONS sip", b"ACK sip").replace(b"3 OPTIONS", b"3 ACK"),  # never answer an ACK
        GOOD.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"),
        GOOD.replace(b"Call-ID: abc\r\n", b""),
        GOOD.replace(b"From: <sip:a@example.org>;tag=1", b"From: <garbage"),
        GOOD.replace(b"CSeq: 3 OPTIONS", b"CSeq: x"),
        GOOD.replace(b"To: <sip:bridge@192.0.2.10>", b"To: <sip:b@c>\r\nTo: <sip:d@e>"),
        b"SIP/2.0 200 OK\r\n\r\n",
        b"\xff\xfe\x00",
        b"",
        GOOD * 2000,
    ],
)
def test_unanswerable_input_is_dropped(data: bytes) -> None:
    assert bad_request(data, ("198.51.100.7", 5062), "t") is None
