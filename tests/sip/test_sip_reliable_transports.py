"""SIP over TCP and TLS in the pure stack: destinations carry their transport, nothing is
retransmitted over a reliable one (RFC 3261 17.1.1.2, 17.1.2.2, 17.2), requests from a connection
are answered over it (18.2.2), Via and Contact say the transport, a phone registered over a
connection is called over it, and a failed connection fails the dial at once (8.1.3.1)."""

from __future__ import annotations

import random

from bridgeline.sip.digest import DigestAuth
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import (
    EndpointConfig,
    FailReason,
    IncomingCall,
    LegFailed,
    Registered,
    TrunkConfig,
)
from bridgeline.sip.headers import NameAddress, Via, parse_via
from bridgeline.sip.message import Request, Response, make_request, parse_message
from bridgeline.sip.offer_answer import make_offer
from bridgeline.sip.stream_framing import FramingErrorKind, StreamFramer
from bridgeline.sip.syntax import Params
from bridgeline.sip.transaction import (
    Destination,
    Target,
    TimedOut,
    Transport,
    destination,
    response_address,
)
from bridgeline.sip.transaction_layer import TransactionLayer
from bridgeline.sip.uri import SipURI, parse_uri

EP = ("192.0.2.10", 5060)
STREAMS = {Transport.TCP: ("192.0.2.10", 5070), Transport.TLS: ("192.0.2.10", 5071)}
PHONE_FLOW = Target("198.51.100.7", 40123, Transport.TCP, reuse_only=True)
TRUNK_TLS = Target("203.0.113.5", 5061, Transport.TLS)
SDP = make_offer("192.0.2.10", 30000, session_id=1, version=1)


def endpoint(trunk: TrunkConfig | None = None) -> SipEndpoint:
    config = EndpointConfig(
        EP, "bridge.example", accounts={"alice": "wonderland"}, trunk=trunk, stream_addresses=STREAMS
    )
    return SipEndpoint(config, random.Random(7))


def sent(ep: SipEndpoint) -> list[tuple[Request | Response, Destination]]:
    return [(parse_message(data), dest) for data, dest in ep.datagrams_to_send()]


def request(method: str, via: str, *, uri: str = "sip:+14155550100@192.0.2.10", body: bytes = b"") -> bytes:
    headers = [
        ("Contact", "<sip:phone@198.51.100.7:40123;transport=tcp>"),
        *([("Content-Type", "application/sdp")] if body else []),
    ]
    message = make_request(
        method,
        parse_uri(uri),
        via=_via(via),
        from_addr=NameAddress(SipURI("198.51.100.7", user="phone"), params=Params([("tag", "ft")])),
        to_addr=NameAddress(SipURI("bridge.example", user="alice" if method == "REGISTER" else "x")),
        call_id=f"{method}-call",
        cseq=1,
        headers=headers,
        body=body,
    )
    return bytes(message)


def _via(text: str) -> Via:
    return parse_via(text)


def test_transport_from_uris_and_response_vias() -> None:
    assert destination(Transport.UDP, "h", 5060) == ("h", 5060)  # UDP stays a plain address
    ep = endpoint()
    for uri, expected in [
        ("sip:bob@198.51.100.8;transport=tcp", Target("198.51.100.8", 5060, Transport.TCP)),
        ("sip:bob@198.51.100.8:5070;transport=TLS", Target("198.51.100.8", 5070, Transport.TLS)),
        ("sips:bob@198.51.100.8", Target("198.51.100.8", 5061, Transport.TLS)),
        ("sips:bob@198.51.100.8;transport=tcp", Target("198.51.100.8", 5061, Transport.TLS)),
        ("sip:bob@198.51.100.8", ("198.51.100.8", 5060)),
    ]:
        ep.dial(uri, uri, caller_id=None, offer_sdp=SDP, now=0.0)
        [(invite, dest)] = sent(ep)
        assert dest == expected, uri
        transport = expected.transport.value if isinstance(expected, Target) else "UDP"
        assert invite.top_via.transport == transport
        assert str(invite.headers.single("Contact")).endswith(
            f";transport={transport.lower()}>" if transport != "UDP" else ":5060>"
        )
        if transport == "TLS":
            assert invite.top_via.port == 5071  # our TLS listener is the sent-by
    ep.dial("sctp", "sip:bob@198.51.100.8;transport=sctp", caller_id=None, offer_sdp=SDP, now=0.0)
    assert ep.next_event() is not None and sent(ep) == []
    via = _via("SIP/2.0/TCP 198.51.100.7:5090;branch=z9hG4bKx;received=198.51.100.9;rport=40000")
    assert response_address(via) == Target("198.51.100.9", 40000, Transport.TCP)


def test_client_transactions_do_not_retransmit_over_a_reliable_transport() -> None:
    ep = endpoint()
    ep.dial("leg", "sip:bob@198.51.100.8;transport=tcp", caller_id=None, offer_sdp=SDP, now=0.0)
    assert len(sent(ep)) == 1
    for now in (0.5, 1.5, 3.5, 7.5, 15.5):  # Timer A would have fired at each of these over UDP
        ep.handle_timer(now)
        assert sent(ep) == []
    ep.handle_timer(32.0)  # Timer B still bounds the wait
    assert ep.next_event() == LegFailed("leg", 408, FailReason.FAILED)
    assert not any(ep.state_sizes().values())


def test_non_invite_over_tcp_ends_at_once_after_its_final_response() -> None:
    layer = TransactionLayer()
    bye = request("BYE", "SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bKbye")
    message = parse_message(bye)
    assert isinstance(message, Request)
    key = layer.send_request(message, Target("198.51.100.8", 5060, Transport.TCP), now=0.0)
    layer.datagrams_to_send()
    assert layer.get_timer() == 32.0  # F only: no Timer E
    response = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bKbye\r\n"
        b"From: <sip:phone@198.51.100.7>;tag=ft\r\nTo: <sip:x@bridge.example>;tag=tt\r\n"
        b"Call-ID: BYE-call\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    layer.receive_datagram(response, Target("198.51.100.8", 5060, Transport.TCP), now=1.0)
    assert layer.get_timer() == 1.0  # Timer K is zero
    layer.handle_timer(1.0)
    assert layer.transaction(key) is None and len(layer) == 0


def test_requests_over_a_connection_are_answered_over_it_without_retransmissions() -> None:
    ep = endpoint(TrunkConfig(("198.51.100.7", 5060), "trunk.example"))  # trusted: no challenge
    via = "SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bKinv"  # a private sent-by: not where we answer
    ep.receive_datagram(request("INVITE", via, body=bytes(SDP)), PHONE_FLOW, 0.0)
    out = sent(ep)
    assert [(m.status, d) for m, d in out if isinstance(m, Response)] in ([], [(100, PHONE_FLOW)])
    call = ep.next_event()
    assert isinstance(call, IncomingCall) and call.source == PHONE_FLOW
    ep.reject_incoming(call.leg_id, 486, 0.1)
    [(_, dest)] = [(m, d) for m, d in sent(ep) if isinstance(m, Response) and m.status == 486]
    assert dest == PHONE_FLOW
    for now in (0.7, 1.7, 3.7):  # Timer G would resend the 486 over UDP
        ep.handle_timer(now)
        assert [m for m, _ in sent(ep) if isinstance(m, Response) and m.status == 486] == []
    ep.receive_datagram(request("OPTIONS", via.replace("inv", "opt")), PHONE_FLOW, 1.0)
    [(answer, dest)] = sent(ep)
    assert isinstance(answer, Response) and answer.status == 200 and dest == PHONE_FLOW


def _register_over(ep: SipEndpoint, flow: Target) -> None:
    via = "SIP/2.0/TCP 10.0.0.5:40123;branch=z9hG4bKreg1"
    first = parse_message(request("REGISTER", via, uri="sip:bridge.example"))
    assert isinstance(first, Request)
    ep.receive_datagram(bytes(first), flow, 0.0)
    [(challenge, dest)] = sent(ep)
    assert isinstance(challenge, Response) and challenge.status == 401 and dest == flow
    retry = DigestAuth("alice", "wonderland", random.Random(3)).authorize(first, challenge)
    assert retry is not None
    ep.receive_datagram(bytes(retry), flow, 0.1)
    [(ok, _)] = sent(ep)
    assert isinstance(ok, Response) and ok.status == 200
    assert isinstance(ep.next_event(), Registered)


def test_a_phone_registered_over_tcp_is_called_over_its_connection() -> None:
    ep = endpoint()
    _register_over(ep, PHONE_FLOW)
    ep.dial("leg", "alice", caller_id=None, offer_sdp=SDP, now=1.0)
    [(invite, dest)] = sent(ep)
    assert dest == PHONE_FLOW  # not the Contact's host and port: nobody listens there
    assert isinstance(invite, Request) and invite.top_via.transport == "TCP"


def test_a_dial_over_a_connection_that_failed_fails_at_once_with_503() -> None:
    ep = endpoint()
    _register_over(ep, PHONE_FLOW)
    ep.dial("leg", "alice", caller_id=None, offer_sdp=SDP, now=1.0)
    sent(ep)
    ep.transport_failed(PHONE_FLOW, 1.01)  # what the socket shell reports: the flow is gone
    assert ep.next_event() == LegFailed("leg", 503, FailReason.UNREACHABLE)
    assert ep.stats["transport_failures"] == 1
    ep.handle_timer(100.0)
    sizes = ep.state_sizes()
    assert sizes["legs"] == sizes["transactions"] == sizes["transactions_by_leg"] == 0


def test_a_transport_failure_reaches_only_the_transactions_sent_there() -> None:
    layer = TransactionLayer()
    a = parse_message(request("OPTIONS", "SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bKa"))
    b = parse_message(request("OPTIONS", "SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bKb"))
    assert isinstance(a, Request) and isinstance(b, Request)
    key_a = layer.send_request(a, Target("198.51.100.8", 5060, Transport.TCP), 0.0)
    key_b = layer.send_request(b, Target("198.51.100.8", 5060, Transport.TLS), 0.0)
    assert layer.transport_failed(Target("198.51.100.8", 5060, Transport.TCP, reuse_only=True), 0.1) == 1
    assert layer.next_event() == TimedOut(key_a, "transport")
    assert layer.transaction(key_a) is None and layer.transaction(key_b) is not None


def test_the_trunk_over_tls() -> None:
    ep = endpoint(TrunkConfig(TRUNK_TLS, "trunk.example"))
    ep.dial("leg", "+14155550123", caller_id=None, offer_sdp=SDP, now=0.0)
    [(invite, dest)] = sent(ep)
    assert dest == TRUNK_TLS and isinstance(invite, Request) and invite.top_via.transport == "TLS"
    assert "transport=tls" in invite.headers.single("Contact")
    inbound = Target("203.0.113.5", 47000, Transport.TLS, reuse_only=True)  # trusted by host, any port
    ep.receive_datagram(
        request("INVITE", "SIP/2.0/TLS 203.0.113.5:5061;branch=z9hG4bKt", body=bytes(SDP)), inbound, 1.0
    )
    assert isinstance(ep.next_event(), IncomingCall)


def test_an_unframeable_request_is_answered_400_over_its_connection() -> None:
    ep = endpoint()
    framer = StreamFramer()
    data = request("OPTIONS", "SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bKnolen")
    data = data.replace(b"Content-Length: 0\r\n", b"")
    assert framer.feed(data) == [] and framer.error is not None
    assert framer.error.kind is FramingErrorKind.MISSING_CONTENT_LENGTH
    ep.stream_error(framer.error, PHONE_FLOW, 0.0)
    [(answer, dest)] = sent(ep)
    assert isinstance(answer, Response) and dest == PHONE_FLOW
    assert (answer.status, answer.reason) == (400, "Missing Content-Length header")
    assert ep.stats["stream_errors"] == ep.stats["stream_missing_content_length"] == 1
