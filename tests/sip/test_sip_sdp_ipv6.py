"""Offer/answer across IP families: a server's RTP speaks one family (its SDP address's). An IPv6
server answers `c=IN IP6`; a stream whose address is of the other family is declined with Warning
301 (RFC 3261 20.43, "Incompatible network address formats") and a reason naming both families,
whether it comes in an INVITE, a re-INVITE or an answer to our offer."""

from __future__ import annotations

import pytest
from test_sip_endpoint import EP_ADDR, EpNode, Net, Phone, assert_idle, make_endpoint, setup
from test_sip_sdp import sdp

from bridgeline.sip.digest import DigestAuth
from bridgeline.sip.events import IncomingCall, LegFailed
from bridgeline.sip.offer_answer import NegotiationError, answer_offer, make_offer, read_answer
from bridgeline.sip.sdp import Direction, parse_sdp


def offer_from(address: str, addrtype: str, *media: str) -> bytes:
    media = media or ("m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000")
    return sdp(
        "v=0", f"o=- 1 1 IN {addrtype} {address}", "s=-", f"c=IN {addrtype} {address}", "t=0 0", *media
    )


def test_an_ipv6_server_answers_ipv6_and_refuses_ipv4_and_the_other_way_round() -> None:
    answer, params = answer_offer(parse_sdp(offer_from("2001:db8::7", "IP6")), "::1", 30000, 9, 1)
    assert "c=IN IP6 ::1\r\n" in str(answer) and "o=- 9 1 IN IP6 ::1\r\n" in str(answer)
    assert (params.remote_address, params.remote_port) == ("2001:db8::7", 4000)

    with pytest.raises(NegotiationError) as v4_server:
        answer_offer(parse_sdp(offer_from("2001:db8::7", "IP6")), "192.0.2.10", 30000, 9, 1)
    assert v4_server.value.warning_code == 301
    assert str(v4_server.value) == "the media address 2001:db8::7 is IPv6 and this server's RTP is IPv4 only"
    with pytest.raises(NegotiationError) as v6_server:
        answer_offer(parse_sdp(offer_from("198.51.100.7", "IP4")), "::1", 30000, 9, 1)
    assert v6_server.value.warning_code == 301
    assert "198.51.100.7 is IPv4 and this server's RTP is IPv6 only" in str(v6_server.value)
    # A literal's own family counts, not what the c= line claims; a name goes by the claim.
    with pytest.raises(NegotiationError):
        answer_offer(parse_sdp(offer_from("2001:db8::7", "IP4")), "192.0.2.10", 30000, 9, 1)
    with pytest.raises(NegotiationError):
        answer_offer(parse_sdp(offer_from("phone.example", "IP6")), "192.0.2.10", 30000, 9, 1)
    answer_offer(parse_sdp(offer_from("phone.example", "IP4")), "192.0.2.10", 30000, 9, 1)


def test_hold_addresses_of_either_family_and_a_second_stream_of_ours_are_accepted() -> None:
    """`0.0.0.0` and `::` mean "send nothing" (RFC 3264 8.4): no family to reach. An offer whose
    first audio stream is of the other family is answered on the next one that is ours."""
    _, held = answer_offer(parse_sdp(offer_from("0.0.0.0", "IP4")), "::1", 30000, 9, 1)
    assert held.remote_address == "0.0.0.0" and not held.direction.sends
    answer_offer(parse_sdp(offer_from("::", "IP6")), "192.0.2.10", 30000, 9, 1)
    two_streams = offer_from(
        "2001:db8::7",
        "IP6",
        "m=audio 4000 RTP/AVP 0",
        "a=rtpmap:0 PCMU/8000",
        "m=audio 4002 RTP/AVP 0",
        "c=IN IP4 198.51.100.7",
        "a=rtpmap:0 PCMU/8000",
    )
    answer, params = answer_offer(parse_sdp(two_streams), "192.0.2.10", 30000, 9, 1)
    assert [m.port for m in answer.media] == [0, 30000]
    assert (params.remote_address, params.remote_port, params.index) == ("198.51.100.7", 4002, 1)
    assert params.direction is Direction.SENDRECV


def test_an_answer_of_the_other_family_is_refused() -> None:
    ours = make_offer("192.0.2.10", 30000, 5, 1)
    with pytest.raises(NegotiationError) as refused:
        read_answer(ours, parse_sdp(offer_from("2001:db8::7", "IP6")))
    assert refused.value.warning_code == 301
    assert "2001:db8::7 is IPv6" in str(refused.value)
    six = make_offer("::1", 30000, 5, 1)
    assert read_answer(six, parse_sdp(offer_from("2001:db8::7", "IP6"))).remote_address == "2001:db8::7"


def test_a_reinvite_to_the_other_family_gets_488_with_warning_301_and_the_call_goes_on() -> None:
    net, node, phone = setup()
    offer = parse_sdp(offer_from(phone.addr[0], "IP4"))
    phone.call(
        "sip:+14155551234@bridge.example", auth=DigestAuth("alice", "wonderland", phone.rng), sdp=offer
    )
    net.flush()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall) and incoming.offer is not None
    answer, _ = answer_offer(incoming.offer, EP_ADDR[0], 30002, 9, 1)
    assert node.ep.answer_incoming(incoming.leg_id, answer, net.now)
    net.flush()
    updates = len(node.events)
    phone.in_dialog("INVITE", offer_from("2001:db8::7", "IP6"))
    net.flush()
    refused = phone.finals[-1]
    assert refused.status == 488
    warning = refused.headers.get("Warning") or ""
    assert warning.startswith("301 ") and "2001:db8::7 is IPv6" in warning, refused
    assert len(node.events) == updates  # no MediaUpdated: the call keeps its media
    node.ep.hangup(incoming.leg_id, net.now)
    net.flush()
    assert_idle(net, node)


def test_an_answer_of_the_other_family_ends_the_outbound_call_with_a_reason() -> None:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(("198.51.100.7", 5060)))
    node.ep.dial(
        "leg1",
        phone.uri,
        caller_id="+14155550000",
        offer_sdp=make_offer(EP_ADDR[0], 30000, 1, 1),
        now=net.now,
    )
    net.flush()
    assert phone.pending is not None
    phone.respond(phone.pending, 200, offer_from("2001:db8::7", "IP6"))
    net.flush()
    failed = node.last()
    assert isinstance(failed, LegFailed) and failed.status == 488, node.events
    bye = phone.requests[-1]
    assert bye.method == "BYE"
    assert 'cause=488;text="the media address 2001:db8::7 is IPv6' in (bye.headers.get("Reason") or ""), bye
    assert_idle(net, node)
