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
    ("data", "status", "reason"),
    [
        (GOOD.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"), 505, "Version Not Supported"),
        (GOOD.replace(b"Call-ID: abc\r\n", b""), 400, "Missing Call-ID header"),
        (GOOD.replace(b"CSeq: 3 OPTIONS\r\n", b""), 400, "Missing CSeq header"),
        (GOOD.replace(b"From: <sip:a@example.org>;tag=1", b"From: <garbage"), 400, "Malformed From header"),
        (GOOD.replace(b"CSeq: 3 OPTIONS", b"CSeq: x"), 400, "Malformed CSeq header"),
        (GOOD.replace(b"CSeq: 3 OPTIONS", b"CSeq: 3 INVITE"), 400, "CSeq method does not match the request"),
        (
            GOOD.replace(b"To: <sip:bridge@192.0.2.10>", b"To: <sip:b@c>\r\nTo: <sip:d@e>"),
            400,
            "Multiple To headers",
        ),
        (GOOD.replace(b"sip:bridge@192.0.2.10 SIP", b"sip:@@ SIP"), 400, "Malformed Request-URI"),
        (GOOD.replace(b"Content-Length: 0", b"Content-Length: 99"), 400, "Body shorter than Content-Length"),
        (GOOD.replace(b"Content-Length: 0", b"Content-Length: zero"), 400, "Malformed Content-Length header"),
        (GOOD.replace(b"Max-Forwards: 70", b"Max-Forwards: 7\x010"), 400, "Control character in the headers"),
        (GOOD.replace(b"Max-Forwards: 70", b"Max-Forwards 70"), 400, "Malformed header line"),
        (GOOD.replace(b"\r\n\r\n", b"\r\n"), 400, "No blank line after the headers"),
    ],
)
def test_a_request_with_a_readable_via_gets_an_answer_naming_the_problem(
    data: bytes, status: int, reason: str
) -> None:
    result = bad_request(data, ("198.51.100.7", 40000), "t9")
    assert result is not None
    response, destination = result
    assert destination == ("198.51.100.7", 40000)
    again = parse_message(bytes(response))  # well-formed itself: placeholders stand in for broken lines
    assert isinstance(again, Response) and (again.status, again.reason) == (status, reason)
    sent_method = "INVITE" if b"CSeq: 3 INVITE" in data else "OPTIONS"  # the CSeq sent, else the method
    assert again.top_via.branch == "z9hG4bKx" and again.cseq.method == sent_method  # what the client matches
    assert again.to_addr.tag is not None


@pytest.mark.parametrize(
    "data",
    [
        GOOD.replace(b"OPTIONS sip", b"ACK sip").replace(b"3 OPTIONS", b"3 ACK"),  # never answer an ACK
        GOOD.replace(b"Via: SIP/2.0/UDP 198.51.100.7:5062", b"Via: garbage"),  # nowhere to answer
        GOOD.replace(b"Via: ", b"X-Via: "),
        GOOD,  # parses: not for this module
        b"SIP/2.0 200 OK\r\n\r\n",
        b"\xff\xfe\x00",
        b"",
        GOOD * 2000,
    ],
)
def test_unanswerable_input_is_dropped(data: bytes) -> None:
    assert bad_request(data, ("198.51.100.7", 5062), "t") is None
