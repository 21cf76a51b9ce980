"""An INVITE without SDP (late offer, RFC 3261 13.2.1): our offer goes in the 200, the answer comes
in the ACK; without a usable answer the call ends with a BYE carrying a Reason (RFC 3326)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sip_endpoint import EP_ADDR, TRUNK_ADDR, EpNode, Net, Phone, assert_idle, make_endpoint, names

from bridgeline.sip.events import EndReason, IncomingCall, LegEnded, MediaUpdated
from bridgeline.sip.message import Request
from bridgeline.sip.offer_answer import answer_offer, make_offer
from bridgeline.sip.sdp import Direction, parse_sdp
from bridgeline.sip.transaction_layer import TransactionLayer

OUR_RTP_PORT = 30002
G729_ONLY = (
    b"v=0\r\no=- 5 1 IN IP4 192.0.2.99\r\ns=-\r\nc=IN IP4 192.0.2.99\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
)


def late_offer_call(net: Net, node: EpNode, trunk: Phone) -> IncomingCall:
    """The trunk calls with an INVITE that has no body; the application answers with our offer."""
    invite = trunk.call("sip:+14155551234@192.0.2.10")
    trunk.tl = TransactionLayer()  # forget that one; send a copy without the body instead
    invite.body = b""
    invite.headers.remove("Content-Type")
    trunk.invite, trunk.offer = invite, None
    trunk.tl.send_request(invite, EP_ADDR, net.now)
    net.flush()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall) and incoming.offer is None
    assert node.ep.answer_incoming(incoming.leg_id, make_offer(EP_ADDR[0], OUR_RTP_PORT, 9, 1), net.now)
    net.flush()
    return incoming


def setup() -> tuple[Net, EpNode, Phone]:
    net = Net()
    return net, net.add(EpNode(make_endpoint())), net.add(Phone(TRUNK_ADDR))


def send_ack(trunk: Phone, body: bytes) -> None:
    assert trunk.dialog is not None and trunk.invite is not None
    headers = [("Content-Type", "application/sdp")] if body else []
    ack = trunk.dialog.create_ack(trunk.invite.cseq.seq, via=trunk.via(), headers=headers, body=body)
    trunk.tl.send_stateless(ack, EP_ADDR)


def byes(trunk: Phone) -> list[Request]:
    return [r for r in trunk.requests if r.method == "BYE"]


def test_late_offer_gets_our_offer_in_the_200_and_media_from_the_ack() -> None:
    net, node, trunk = setup()
    incoming = late_offer_call(net, node, trunk)
    ok = trunk.finals[-1]
    assert ok.status == 200 and ok.content_type == "application/sdp"
    offer = parse_sdp(ok.body)
    assert offer.media[0].port == OUR_RTP_PORT and offer.media[0].formats == ["0", "8", "101"]
    assert offer.media[0].direction is Direction.SENDRECV
    update = node.last()  # the trunk's ACK answered with PCMU and telephone-event
    assert isinstance(update, MediaUpdated) and update.leg_id == incoming.leg_id
    assert (update.media.remote_address, update.media.remote_port) == (TRUNK_ADDR[0], 4000)
    assert update.media.codec.encoding == "PCMU" and update.media.telephone_event is not None
    assert update.media.direction is Direction.SENDRECV
    assert names(node.events) == ["IncomingCall", "MediaUpdated"]
    assert node.ep.hangup(incoming.leg_id, net.now)
    net.flush()
    assert node.last() == LegEnded(incoming.leg_id, EndReason.LOCAL)
    assert_idle(net, node)


def test_no_media_is_reported_before_the_ack() -> None:
    net, node, trunk = setup()
    trunk.send_acks = False
    incoming = late_offer_call(net, node, trunk)
    assert names(node.events) == ["IncomingCall"]  # the 200 alone tells nobody where to send
    assert trunk.offer is None and trunk.dialog is not None
    ours = parse_sdp(trunk.finals[-1].body)
    answer, _ = answer_offer(ours, TRUNK_ADDR[0], 4010, 5, 1, direction=Direction.SENDONLY)
    send_ack(trunk, bytes(answer))
    net.flush()
    update = node.last()
    assert isinstance(update, MediaUpdated) and update.leg_id == incoming.leg_id
    assert update.media.remote_port == 4010 and update.media.direction is Direction.RECVONLY  # held


def pcmu_answer_to(offer_body: bytes) -> bytes:
    answer, _ = answer_offer(parse_sdp(offer_body), TRUNK_ADDR[0], 4000, 5, 1)
    return bytes(answer)


def test_an_ack_with_a_usable_answer_keeps_the_call() -> None:
    """The control case for the unusable ones below, through the same hand-made ACK."""
    net, node, trunk = setup()
    trunk.send_acks = False
    late_offer_call(net, node, trunk)
    send_ack(trunk, pcmu_answer_to(trunk.finals[-1].body))
    net.flush()
    net.run(10.0)
    assert isinstance(node.last(), MediaUpdated) and byes(trunk) == []


def ack_bodies() -> list[tuple[str, bytes]]:
    return [
        ("no answer", b""),
        ("not SDP", b"hello"),
        ("no common codec", G729_ONLY),
        ("audio declined", G729_ONLY.replace(b"m=audio 4000", b"m=audio 0")),
    ]


def test_an_ack_without_a_usable_answer_ends_the_call_with_a_reason() -> None:
    for why, body in ack_bodies():
        net, node, trunk = setup()
        trunk.send_acks = False
        incoming = late_offer_call(net, node, trunk)
        send_ack(trunk, body)
        net.flush()
        (bye,) = byes(trunk)
        reason = bye.headers.get("Reason")
        assert reason is not None and reason.startswith("SIP;cause=488;text=") and '\\"' not in reason, why
        assert node.last() == LegEnded(incoming.leg_id, EndReason.BAD_ANSWER), why
        assert "MediaUpdated" not in names(node.events), why
        assert node.ep.stats["bad_answers"] == 1
        assert_idle(net, node)


def test_an_offerless_reinvite_answered_sendonly_in_the_ack_holds_us() -> None:
    """In-dialog, the same exchange: our current SDP as a fresh offer in the 200, the ACK's answer
    applied with the usual hold semantics (the peer sends only: we only receive)."""
    net, node, trunk = setup()
    incoming = late_offer_call(net, node, trunk)
    trunk.send_acks = False
    trunk.reinvite(None)
    net.flush()
    ok = trunk.finals[-1]
    assert ok.status == 200 and ok.cseq.method == "INVITE"
    offer = parse_sdp(ok.body)
    assert offer.origin.version == 2 and offer.media[0].port == OUR_RTP_PORT
    held, _ = answer_offer(offer, TRUNK_ADDR[0], 4000, 5, 2, direction=Direction.SENDONLY)
    send_ack(trunk, bytes(held))
    net.flush()
    update = node.last()
    assert isinstance(update, MediaUpdated) and update.leg_id == incoming.leg_id
    assert update.media.direction is Direction.RECVONLY and not update.media.direction.sends
    assert byes(trunk) == []


def test_a_bad_answer_to_an_offerless_reinvite_keeps_the_call() -> None:
    """Only the initial INVITE's ACK ends the call: a re-INVITE's falls back on the old session."""
    net, node, trunk = setup()
    incoming = late_offer_call(net, node, trunk)
    trunk.send_acks = False
    trunk.reinvite(None)
    net.flush()
    assert trunk.finals[-1].status == 200 and trunk.finals[-1].cseq.method == "INVITE"
    assert trunk.dialog is not None and trunk.invite is not None
    ack = trunk.dialog.create_ack(trunk.invite.cseq.seq, via=trunk.via())
    trunk.tl.send_stateless(ack, EP_ADDR)
    net.flush()
    net.run(40.0)
    assert byes(trunk) == [] and node.ep.stats["bad_answers"] == 1
    assert node.ep.hangup(incoming.leg_id, net.now)
    net.flush()
    assert_idle(net, node)


sdp_lines = st.sampled_from(
    [
        b"v=0",
        b"o=- 5 1 IN IP4 192.0.2.99",
        b"s=-",
        b"c=IN IP4 192.0.2.99",
        b"c=IN IP4 0.0.0.0",
        b"t=0 0",
        b"m=audio 4000 RTP/AVP 0 101",
        b"m=audio 4000 RTP/AVP 8",
        b"m=audio 0 RTP/AVP 0",
        b"m=video 4002 RTP/AVP 31",
        b"m=audio 4000 RTP/SAVP 0",
        b"a=rtpmap:0 PCMU/8000",
        b"a=rtpmap:8 PCMA/8000",
        b"a=rtpmap:101 telephone-event/8000",
        b"a=rtpmap:0 G729/8000",
        b"a=sendonly",
        b"a=inactive",
        b"a=ptime:30",
        b"a=ptime:x",
        b"garbage",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(sdp_lines, max_size=10), st.booleans())
def test_any_ack_body_either_starts_media_or_ends_the_call(lines: list[bytes], start_with_v0: bool) -> None:
    """Whatever the ACK carries: exactly one of media for the leg, or a BYE and BAD_ANSWER; no
    internal error, nothing left behind."""
    net, node, trunk = setup()
    trunk.send_acks = False
    incoming = late_offer_call(net, node, trunk)
    body = b"\r\n".join(([b"v=0"] if start_with_v0 else []) + lines) + b"\r\n"
    send_ack(trunk, body)
    net.flush()
    last = node.last()
    if isinstance(last, MediaUpdated):
        assert byes(trunk) == [] and last.media.remote_port == 4000
        assert node.ep.hangup(incoming.leg_id, net.now)
        net.flush()
    else:
        assert last == LegEnded(incoming.leg_id, EndReason.BAD_ANSWER) and len(byes(trunk)) == 1
    assert_idle(net, node)
