"""A running server answers every request whose Via it can read, over a real UDP socket: 400 with a
reason phrase naming the problem, 505, 501 with Allow; and accepts what RFC 3261 lets it accept
(an RFC 2543 INVITE without From tag or Contact, quoted control characters in a display name, a
broken video stream), which here reaches routing: 404, since no inbound route has that number."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from sipkit import Ports, SipServer
from test_sip_robustness import invite

ALLOW = b"\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER, PRACK, REFER\r\n"


def sip_config(ports: Ports) -> dict[str, Any]:
    # A trunk on loopback makes INVITEs from 127.0.0.1 trusted (no digest challenge first).
    return {"domain": "answers.test", "trunk": {"proxy": f"127.0.0.1:{ports.take()}", "domain": "trunk.test"}}


def ask(server: SipServer, datagram: bytes) -> list[bytes]:
    """Send one datagram; every answer that arrives within a second (provisional ones included)."""
    host, port = server.sip_address.rsplit(":", 1)
    answers: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        sock.sendto(datagram.replace(b"SOURCE_PORT", str(sock.getsockname()[1]).encode()), (host, int(port)))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                answers.append(sock.recv(65535))
            except TimeoutError:
                if answers and not answers[-1].startswith(b"SIP/2.0 1"):
                    break
    return answers


def final(answers: list[bytes]) -> bytes:
    finals = [a for a in answers if not a.startswith(b"SIP/2.0 1")]
    assert len(finals) == 1, answers
    return finals[0]


def request(server: SipServer, call_id: str, **kwargs: Any) -> bytes:
    return invite(server.sip_address, 0, call_id=call_id, **kwargs).replace(
        b"127.0.0.1:0;", b"127.0.0.1:SOURCE_PORT;"
    )


@pytest.mark.parametrize(
    ("old", "new", "status_line"),
    [
        (b"CSeq: 1 INVITE\r\n", b"", b"SIP/2.0 400 Missing CSeq header\r\n"),
        (
            b"From: <sip:+14155550000@127.0.0.1>",
            b"From: <sip:+1415 garbage",
            b"SIP/2.0 400 Malformed From header\r\n",
        ),
        (b" SIP/2.0\r\nVia", b" SIP/2.1\r\nVia", b"SIP/2.0 505 Version Not Supported\r\n"),
        (b"Content-Length: ", b"Content-Length: 9", b"SIP/2.0 400 Body shorter than Content-Length\r\n"),
    ],
)
def test_malformed_requests_get_an_answer_naming_the_problem(
    server: SipServer, old: bytes, new: bytes, status_line: bytes
) -> None:
    data = request(server, f"bad-{len(old)}-{len(new)}")
    assert old in data
    answer = final(ask(server, data.replace(old, new, 1)))
    assert answer.startswith(status_line), answer
    assert server.proc is not None and server.proc.running


def test_an_unknown_method_is_501_with_allow(server: SipServer) -> None:
    data = request(server, "brew-1").replace(b"INVITE", b"BREW")
    answer = final(ask(server, data))
    assert answer.startswith(b"SIP/2.0 501 Not Implemented\r\n") and ALLOW in answer, answer


VIDEO_BROKEN = (
    b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    b"m=video 5002 RTP/AVP 31\r\na=rtpmap:31\r\nnot an SDP line\r\n"
)


@pytest.mark.parametrize(
    ("old", "new", "body"),
    [
        (b";tag=frfc2543", b"", None),  # RFC 2543: no From tag
        (b"Contact: <sip:x@127.0.0.1:0>\r\n", b"", None),  # no Contact
        (b"INVITE sip:", b"INVITE   sip:", None),  # extra spaces in the request line
        (b"From: <", b'From: "Bob \\\x01\\\x7f" <', None),  # quoted control characters in a display name
        (b"", b"", VIDEO_BROKEN),  # a broken stream we decline anyway
    ],
)
def test_what_rfc_3261_allows_is_accepted(
    server: SipServer, old: bytes, new: bytes, body: bytes | None
) -> None:
    data = request(server, "rfc2543", body=body)
    assert old in data, data
    answer = final(ask(server, data.replace(old, new, 1)))
    assert answer.startswith(b"SIP/2.0 404 "), answer  # past every check, to routing
