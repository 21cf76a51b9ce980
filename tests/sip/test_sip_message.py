"""SIP message model: fixtures round-trip, typed header views, builders and malformed input."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bridgeline.sip.headers import Headers, canonical_name, parse_cseq, parse_name_address, parse_via
from bridgeline.sip.message import (
    MAX_HEADERS,
    MAX_MESSAGE_SIZE,
    Request,
    Response,
    SipParseError,
    is_keepalive,
    make_cancel,
    make_request,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    reason_phrase,
)
from bridgeline.sip.uri import AbsoluteURI, SipURI, TelURI, parse_uri

DATA = Path(__file__).parent / "data"
FIXTURES = sorted(p.name for p in DATA.glob("*.sip"))


def load(name: str) -> bytes:
    """Fixtures are stored with LF line ends for readability; SIP wants CRLF (headers and SDP)."""
    return (DATA / name).read_bytes().replace(b"\n", b"\r\n")


def parse_request(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def parse_response(data: bytes) -> Response:
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_round_trip(name: str) -> None:
    raw = load(name)
    msg = parse_message(raw)
    out = bytes(msg)
    if name != "folded_headers.sip":
        assert out == raw
    assert parse_message(out) == msg


def test_invite_from_softphone() -> None:
    msg = parse_request(load("invite_baresip.sip"))
    assert msg.method == "INVITE"
    assert msg.uri == SipURI("192.0.2.10", user="bridge")
    via = msg.top_via
    assert (via.transport, via.host, via.port) == ("UDP", "198.51.100.7", 5060)
    assert via.branch == "z9hG4bK7f3c21a9d0e5b84c"
    assert via.wants_rport and via.rport is None
    assert msg.from_addr.display_name == "Alice Liddell"
    assert msg.from_addr.tag == "5c2b8e41f0a39d77"
    assert msg.to_addr.tag is None
    assert msg.cseq.seq == 28512 and msg.cseq.method == "INVITE"
    assert msg.max_forwards == 70
    assert msg.content_type == "application/sdp"
    assert msg.body.startswith(b"v=0\r\n") and msg.body.endswith(b"a=sendrecv\r\n")
    (contact,) = msg.contacts
    assert contact.params.get("+sip.instance") == '"<urn:uuid:6a1f9d2e-3b4c-4e5f-8a9b-0c1d2e3f4a5b>"'
    assert isinstance(contact.uri, SipURI) and contact.uri.transport == "udp"
    assert "REFER" in msg.headers.get_list("Allow")


def test_response_with_record_route() -> None:
    msg = parse_response(load("ok_record_route.sip"))
    assert (msg.status, msg.reason) == (200, "OK")
    assert [v.branch for v in msg.vias] == ["z9hG4bK4c1a9e03", "z9hG4bK88a7d2f1"]
    assert msg.vias[0].received == "203.0.113.9" and msg.vias[0].rport == 40123
    hosts = [r.uri.host for r in msg.record_routes if isinstance(r.uri, SipURI)]
    assert hosts == ["203.0.113.1", "proxy2.example.net", "proxy3.example.net"]
    assert all("lr" in r.uri.params for r in msg.record_routes if isinstance(r.uri, SipURI))
    assert msg.to_addr.tag == "314159"


def test_compact_forms_are_the_long_names() -> None:
    msg = parse_request(load("compact_forms.sip"))
    assert msg.headers.get("Via") == msg.headers.get("v")
    assert msg.call_id == "compact-1@198.51.100.7"
    assert msg.from_addr.tag == "77aa"
    assert msg.to_addr.uri == SipURI("192.0.2.10", user="bridge")  # addr-spec without <>
    assert msg.headers.get("Supported") == "timer"
    assert msg.content_type == "text/plain" and msg.body == b"ping\r\n"
    assert canonical_name("i") == "Call-ID" and canonical_name("CSEQ") == "CSeq"
    assert canonical_name("www-authenticate") == "WWW-Authenticate"


def test_folded_headers_are_joined() -> None:
    msg = parse_request(load("folded_headers.sip"))
    assert len(msg.vias) == 2
    assert [str(r) for r in msg.routes] == [
        "<sip:proxy2.example.net;lr>",
        "<sip:proxy3.example.net:5070;lr;transport=udp>",
    ]
    assert msg.to_addr.display_name == "Bob"
    assert msg.headers.get("Subject") == "I know you are there, pick up the phone"


def test_lf_line_ends_and_leading_blank_lines_are_tolerated() -> None:
    raw = b"\r\n\r\n" + load("register_auth.sip").replace(b"\r\n", b"\n")
    msg = parse_request(raw)
    assert msg.method == "REGISTER"
    assert msg.contacts[0].params.get("expires") == "600"


# --- body framing -------------------------------------------------------------------------------

OPTIONS_HEAD = (
    b"OPTIONS sip:b@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n"
    b"From: <sip:a@example.com>;tag=1\r\n"
    b"To: <sip:b@example.com>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
)


def test_body_is_exactly_content_length_and_excess_is_dropped() -> None:
    msg = parse_request(OPTIONS_HEAD + b"Content-Length: 4\r\n\r\nbodyEXTRA")
    assert msg.body == b"body"


def test_missing_content_length_takes_rest_of_datagram() -> None:
    msg = parse_request(OPTIONS_HEAD + b"\r\nwhole rest")
    assert msg.body == b"whole rest"
    assert b"Content-Length: 10\r\n" in bytes(msg)


@pytest.mark.parametrize(
    "length_lines",
    [
        b"Content-Length: 40\r\n",  # more than we got
        b"Content-Length: -1\r\n",
        b"Content-Length: 4x\r\n",
        b"Content-Length: \xd9\xa3\r\n",  # Arabic-Indic digit three
        b"Content-Length: 4\r\nl: 5\r\n",  # conflicting
        b"Content-Length: 99999999999\r\n",
    ],
)
def test_bad_content_length(length_lines: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_message(OPTIONS_HEAD + length_lines + b"\r\nbody")


def test_serialise_rewrites_content_length_to_the_body() -> None:
    msg = parse_request(OPTIONS_HEAD + b"Content-Length: 0\r\n\r\n")
    msg.body = b"hello"
    assert bytes(msg).endswith(b"Content-Length: 5\r\n\r\nhello")


# --- malformed input ----------------------------------------------------------------------------

BAD_MESSAGES = {
    "empty": b"",
    "only blank lines": b"\r\n\r\n",
    "no blank line": OPTIONS_HEAD,
    "truncated start line": b"OPTIONS sip:b@example.com\r\n\r\n",
    "missing start line": OPTIONS_HEAD[OPTIONS_HEAD.index(b"\r\n") + 2 :] + b"\r\n",
    "binary garbage": bytes(range(256)) + b"\r\n\r\n",
    "bad utf-8": OPTIONS_HEAD + b"Subject: \xff\xfe\r\n\r\n",
    "nul in header": OPTIONS_HEAD + b"Subject: a\x00b\r\n\r\n",
    "bare CR in header": OPTIONS_HEAD + b"Subject: a\rb\r\n\r\n",
    "header without colon": OPTIONS_HEAD + b"Subject\r\n\r\n",
    "space in header name": OPTIONS_HEAD + b"Sub ject: x\r\n\r\n",
    "continuation first": b"OPTIONS sip:b@example.com SIP/2.0\r\n x\r\n" + OPTIONS_HEAD[34:] + b"\r\n",
    "bad version": OPTIONS_HEAD.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1) + b"\r\n",
    "bad status": b"SIP/2.0 2000 OK\r\n" + OPTIONS_HEAD[34:] + b"\r\n",
    "status too low": b"SIP/2.0 099 Huh\r\n" + OPTIONS_HEAD[34:] + b"\r\n",
    "bad method": OPTIONS_HEAD.replace(b"OPTIONS sip", b"OPT<IONS sip", 1) + b"\r\n",
    "bad request uri": OPTIONS_HEAD.replace(b"sip:b@example.com SIP", b"sip:b@exa mple SIP", 1) + b"\r\n",
    "bad CSeq number": OPTIONS_HEAD.replace(b"CSeq: 1 OPTIONS", b"CSeq: x OPTIONS") + b"\r\n",
    "CSeq too big": OPTIONS_HEAD.replace(b"CSeq: 1 OPTIONS", b"CSeq: 2147483648 OPTIONS") + b"\r\n",
    "CSeq method mismatch": OPTIONS_HEAD.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE") + b"\r\n",
    "CSeq missing method": OPTIONS_HEAD.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1") + b"\r\n",
    "no Via": OPTIONS_HEAD.replace(b"Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n", b"") + b"\r\n",
    "bad Via": OPTIONS_HEAD.replace(b"SIP/2.0/UDP h", b"SIP/2.0/UDPh") + b"\r\n",
    "bad Via port": OPTIONS_HEAD.replace(b"h.example.com;", b"h.example.com:99999;") + b"\r\n",
    "no Call-ID": OPTIONS_HEAD.replace(b"Call-ID: c1\r\n", b"") + b"\r\n",
    "two From": OPTIONS_HEAD + b"From: <sip:x@y>\r\n\r\n",
    "bad From": OPTIONS_HEAD.replace(b"From: <sip:a@example.com>", b"From: <sip:a@example.com") + b"\r\n",
    "bad Max-Forwards": OPTIONS_HEAD + b"Max-Forwards: lots\r\n\r\n",
    "oversized": OPTIONS_HEAD + b"\r\n" + b"x" * MAX_MESSAGE_SIZE,
    "too many headers": OPTIONS_HEAD + b"X-A: 1\r\n" * (MAX_HEADERS - 4) + b"\r\n",
}


@pytest.mark.parametrize("data", BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_malformed_messages_raise_sip_parse_error(data: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_message(data)


def test_limits_are_inclusive() -> None:
    extra = MAX_HEADERS - 6  # OPTIONS_HEAD has 5 headers, plus Content-Length
    data = OPTIONS_HEAD + b"X-A: 1\r\n" * extra + b"Content-Length: 0\r\n\r\n"
    assert len(parse_message(data).headers) == MAX_HEADERS


def test_keepalive() -> None:
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n")
    assert not is_keepalive(OPTIONS_HEAD)


# --- URIs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:alice@atlanta.com", SipURI("atlanta.com", user="alice")),
        ("sip:alice:secretword@atlanta.com;transport=tcp", None),
        ("sips:alice@atlanta.com?subject=project%20x&priority=urgent", None),
        ("sip:+1-212-555-1212:1234@gateway.com;user=phone", None),
        ("sips:1212@gateway.com", SipURI("gateway.com", user="1212", scheme="sips")),
        ("sip:alice@192.0.2.4", SipURI("192.0.2.4", user="alice")),
        ("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com", None),
        ("sip:alice;day=tuesday@atlanta.com", SipURI("atlanta.com", user="alice;day=tuesday")),
        ("sip:[2001:db8::10]:5070;lr", None),
        ("sip:proxy.example.net;lr", None),
        ("tel:+1-201-555-0123", TelURI("+1-201-555-0123")),
        ("tel:7042;phone-context=example.com", None),
        ("urn:service:sos", AbsoluteURI("urn", "service:sos")),
    ],
)
def test_uri_round_trip(text: str, expected: object) -> None:
    uri = parse_uri(text)
    assert str(uri) == text
    if expected is not None:
        assert uri == expected


def test_uri_components() -> None:
    uri = parse_uri("sips:alice:pw@[2001:db8::1]:5061;transport=TLS;lr?h=v&x=y")
    assert isinstance(uri, SipURI)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips",
        "alice",
        "pw",
        "[2001:db8::1]",
        5061,
    )
    assert uri.secure and uri.transport == "tls" and "lr" in uri.params
    assert uri.headers == (("h", "v"), ("x", "y"))
    assert str(uri.without_param("lr").with_param("maddr", "10.0.0.1")) == (
        "sips:alice:pw@[2001:db8::1]:5061;transport=TLS;maddr=10.0.0.1?h=v&x=y"
    )
    assert parse_uri("SIP:bob@Example.COM") == SipURI("Example.COM", user="bob")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice@atlanta.com",
        "sip:",
        "sip:@host",
        "sip:alice@",
        "sip:alice@host:port",
        "sip:alice@host:70000",
        "sip:alice@[::1",
        "sip:alice@[not-v6]",
        "sip:alice@ho st",
        "sip:alice@host;=x",
        "sip:alice@host?novalue",
        "sip:alice@-host",
        "tel:call-me",
        "1sip:x",
    ],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


# --- structured headers -------------------------------------------------------------------------


def test_via_variants() -> None:
    via = parse_via("SIP / 2.0 / udp  [2001:db8::9] : 5062 ;branch=z9hG4bKx ;rport=1234;received=10.1.1.1")
    assert (via.transport, via.host, via.port, via.branch, via.rport, via.received) == (
        "UDP",
        "[2001:db8::9]",
        5062,
        "z9hG4bKx",
        1234,
        "10.1.1.1",
    )
    assert via.sent_by == ("[2001:db8::9]", 5062)
    assert str(via.with_param("received", "10.2.2.2")).endswith(";rport=1234;received=10.2.2.2")
    for bad in ("SIP/2.0/UDP", "SIP/2.0 UDP host", "SIP/2.0/UDP host;branch=", "SIP/2.0/UDP h;rport=x"):
        with pytest.raises(SipParseError):
            parse_via(bad)


def test_name_address_forms() -> None:
    quoted = parse_name_address(r'"A \"quoted\" name, too" <sip:a@b.c;transport=udp>;tag=x1;foo')
    assert quoted.display_name == 'A "quoted" name, too'
    assert quoted.tag == "x1" and "foo" in quoted.params
    assert isinstance(quoted.uri, SipURI) and quoted.uri.transport == "udp"  # URI param, not header
    assert str(quoted) == r'"A \"quoted\" name, too" <sip:a@b.c;transport=udp>;tag=x1;foo'
    tokens = parse_name_address("Bob  Smith <tel:+15551234>")
    assert tokens.display_name == "Bob Smith" and tokens.uri == TelURI("+15551234")
    spec = parse_name_address("sip:carol@chicago.com;tag=887s")
    assert spec.display_name is None and spec.tag == "887s"
    assert spec.uri == SipURI("chicago.com", user="carol")
    assert str(spec.with_tag("new")) == "<sip:carol@chicago.com>;tag=new"
    for bad in ('"unterminated <sip:a@b>', "<sip:a@b", '"x" sip:a@b', "<sip:a@b> junk", "sip:a@b?x=y"):
        with pytest.raises(SipParseError):
            parse_name_address(bad)


def test_cseq() -> None:
    assert str(parse_cseq(" 4711   INVITE ")) == "4711 INVITE"
    for bad in ("", "1", "1 2 3", "x INVITE", "-1 INVITE", "1 INV ITE"):
        with pytest.raises(SipParseError):
            parse_cseq(bad)


def test_headers_collection() -> None:
    h = Headers([("Via", "a"), ("X-Test", "1"), ("v", "b"), ("Route", "<sip:r1;lr>, <sip:r2;lr>")])
    h.prepend("Via", "top")
    assert h.get_all("VIA") == ["top", "a", "b"]
    assert h.get_list("route") == ["<sip:r1;lr>", "<sip:r2;lr>"]
    h.set("via", "only")
    assert list(h)[:2] == [("via", "only"), ("X-Test", "1")]
    assert h.remove("x-test") == 1 and "X-Test" not in h
    copy = h.copy()
    copy.add("New", "x")
    assert "New" not in h
    with pytest.raises(ValueError):
        h.add("Subject", "evil\r\nVia: injected")
    with pytest.raises(ValueError):
        h.add("Bad Name", "x")
    with pytest.raises(SipParseError):
        Headers([("To", "a"), ("t", "b")]).single("To")


# --- builders -----------------------------------------------------------------------------------


def test_make_response_copies_dialog_headers() -> None:
    invite = parse_request(load("invite_baresip.sip"))
    resp = make_response(invite, 180, to_tag="bl42", headers=[("Contact", "<sip:bridge@192.0.2.10>")])
    assert resp.reason == "Ringing"
    assert resp.headers.get_all("Via") == invite.headers.get_all("Via")
    assert resp.headers.get("From") == invite.headers.get("From")
    assert resp.to_addr.tag == "bl42"
    assert (resp.call_id, resp.cseq) == (invite.call_id, invite.cseq)
    assert resp.headers.get("Contact") == "<sip:bridge@192.0.2.10>"
    assert parse_message(bytes(resp)) == resp
    # An existing To tag wins; 100 Trying never gets one but does echo Timestamp.
    resp2 = make_response(parse_request(bytes(make_response_request_with_tag())), 200, to_tag="other")
    assert resp2.to_addr.tag == "keep"
    invite.headers.add("Timestamp", "54")
    trying = make_response(invite, 100, to_tag="bl42")
    assert trying.to_addr.tag is None and trying.headers.get("Timestamp") == "54"
    assert make_response(invite, 486, "Busy Now").reason == "Busy Now"


def make_response_request_with_tag() -> Request:
    req = parse_request(OPTIONS_HEAD + b"\r\n")
    req.headers.set("To", "<sip:b@example.com>;tag=keep")
    return req


def test_reason_phrases() -> None:
    assert reason_phrase(404) == "Not Found"
    assert reason_phrase(487) == "Request Terminated"
    assert reason_phrase(299) == "Success"
    assert reason_phrase(699) == "Global Failure"


def test_make_request_and_cancel() -> None:
    rng = random.Random(7)
    branch = new_branch(rng)
    assert branch.startswith("z9hG4bK") and len(branch) > 16
    assert new_tag(rng) != new_tag(rng)
    call_id = new_call_id(rng, "bridge.example.com")
    assert call_id.endswith("@bridge.example.com")
    invite = make_request(
        "INVITE",
        parse_uri("sip:bob@example.net"),
        via=parse_via(f"SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport"),
        from_addr=parse_name_address("<sip:bridge@example.com>").with_tag("ft"),
        to_addr=parse_name_address("<sip:bob@example.net>"),
        call_id=call_id,
        cseq=1,
        contact=parse_name_address("<sip:bridge@192.0.2.10:5060>"),
        routes=[parse_name_address("<sip:proxy.example.net;lr>")],
        headers=[("Content-Type", "application/sdp")],
        body=b"v=0\r\n",
    )
    parsed = parse_request(bytes(invite))
    assert parsed == invite
    cancel = make_cancel(parsed)
    assert cancel.method == "CANCEL" and cancel.uri == invite.uri
    assert cancel.top_via == invite.top_via and str(cancel.cseq) == "1 CANCEL"
    assert cancel.headers.get_all("Route") == ["<sip:proxy.example.net;lr>"]
    assert cancel.body == b"" and parse_message(bytes(cancel)) == cancel


def test_serialise_refuses_line_breaks_in_the_start_line() -> None:
    resp = make_response(make_response_request_with_tag(), 200, "OK\r\nVia: evil")
    with pytest.raises(ValueError):
        bytes(resp)
