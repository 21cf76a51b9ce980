"""Every request whose Via can be read gets an answer, and what RFC 3261 lets a server accept is
accepted: the pure endpoint on the virtual-clock network of test_sip_endpoint."""

from __future__ import annotations

import pytest
from test_sip_endpoint import EP_ADDR, TRUNK_ADDR, EpNode, Net, Phone, make_endpoint, statuses

from bridgeline.sip.events import EndReason, IncomingCall, LegEnded
from bridgeline.sip.message import Request, Response, parse_message
from bridgeline.sip.offer_answer import answer_offer
from bridgeline.sip.transaction_layer import TransactionLayer

SOURCE = (TRUNK_ADDR[0], 5090)  # the trunk's host: trusted, so INVITEs get past authentication


def _trunk() -> tuple[Net, EpNode, Phone]:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    trunk = net.add(Phone(SOURCE, "+14155559999"))
    return net, node, trunk


def _raw_invite(trunk: Phone) -> bytes:
    """A well-formed INVITE from the trunk, as bytes to doctor."""
    data = bytes(trunk.call("sip:+14155551234@192.0.2.10"))
    trunk.tl = TransactionLayer()  # the test sends the doctored copy itself
    return data


def _answers(node: EpNode, data: bytes) -> list[Response]:
    node.ep.receive_datagram(data, SOURCE, 0.0)
    out = []
    for raw, dest in node.ep.datagrams_to_send():
        assert dest == SOURCE
        message = parse_message(raw)  # every answer is well-formed itself
        assert isinstance(message, Response)
        out.append(message)
    return out


@pytest.mark.parametrize(
    ("old", "new", "status", "reason"),
    [
        (b"CSeq: 1 INVITE\r\n", b"", 400, "Missing CSeq header"),
        (b"From: ", b"From: <<<", 400, "Malformed From header"),
        (b"Call-ID: ", b"X-Call-ID: ", 400, "Missing Call-ID header"),
        (b"To: ", b"To: <sip:a@b>\r\nTo: ", 400, "Multiple To headers"),
        (b"Max-Forwards: 70", b"Max-Forwards: -1", 400, "Malformed Max-Forwards header"),
        (b" SIP/2.0\r\nVia", b" SIP/2.1\r\nVia", 505, "Version Not Supported"),
        (b"INVITE sip:", b"INVITE <bad>:", 400, "Malformed Request-URI"),
    ],
)
def test_a_malformed_request_gets_an_answer_naming_the_problem(
    old: bytes, new: bytes, status: int, reason: str
) -> None:
    _net, node, trunk = _trunk()
    data = _raw_invite(trunk)
    assert old in data
    answers = _answers(node, data.replace(old, new, 1))
    assert [(a.status, a.reason) for a in answers] == [(status, reason)]
    assert trunk.invite is not None and answers[0].top_via.branch == trunk.invite.top_via.branch
    assert node.ep.stats["malformed_answered"] == 1 and node.ep.stats["internal_errors"] == 0


def test_extra_spaces_in_the_request_line_are_accepted() -> None:
    _net, node, trunk = _trunk()
    data = _raw_invite(trunk)
    node.ep.receive_datagram(
        data.replace(b" sip:", b"   sip:", 1).replace(b" SIP/2.0", b"  SIP/2.0", 1), SOURCE, 0
    )
    node.poll()
    assert isinstance(node.last(), IncomingCall)


def test_quoted_control_characters_in_a_display_name_are_accepted() -> None:
    _net, node, trunk = _trunk()
    data = _raw_invite(trunk)
    assert b'From: "Alice" <' in data
    node.ep.receive_datagram(data.replace(b'"Alice"', b'"Al\\\x01ice \\\x7f"', 1), SOURCE, 0)
    node.poll()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall) and incoming.from_display == "Al\x01ice \x7f"
    raw = node.ep.datagrams_to_send()[0][0]
    assert raw.startswith(b"SIP/2.0 100 ") and b'"Al\\\x01ice \\\x7f"' in raw  # echoed as it came
    # Unescaped, a control character is still refused, and said so.
    _net, node2, trunk2 = _trunk()
    answers = _answers(node2, _raw_invite(trunk2).replace(b'"Alice"', b'"Al\x01ice"', 1))
    assert [(a.status, a.reason) for a in answers] == [(400, "Control character in the headers")]


def _answer(net: Net, node: EpNode, incoming: IncomingCall) -> None:
    answer, _ = answer_offer(incoming.offer, EP_ADDR[0], 30002, 9, 1)
    assert node.ep.answer_incoming(incoming.leg_id, answer, net.now)
    net.flush()


def _tagless(trunk: Phone) -> Request:
    """The trunk's INVITE as an RFC 2543 peer sends it: no From tag."""
    invite = trunk.call("sip:+14155551234@192.0.2.10")
    trunk.tl = TransactionLayer()
    invite.headers.set("From", "<sip:+14155559999@trunk.example>")
    trunk.tl.send_request(invite, EP_ADDR, 0.0)
    trunk.invite = invite
    return invite


def _answered_tagless() -> tuple[Net, EpNode, Phone, IncomingCall]:
    net, node, trunk = _trunk()
    _tagless(trunk)
    net.flush()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall)
    _answer(net, node, incoming)
    return net, node, trunk, incoming


def test_an_invite_without_from_tag_is_answered_and_its_bye_ends_the_call() -> None:
    net, node, trunk, incoming = _answered_tagless()
    assert statuses(trunk.finals) == [200] and trunk.dialog is not None
    trunk.in_dialog("BYE")  # From without a tag, To with ours: the dialog is found
    net.flush()
    assert statuses(trunk.finals) == [200, 200]
    assert node.last() == LegEnded(incoming.leg_id, EndReason.REMOTE)


def test_our_bye_to_a_tagless_caller_has_no_to_tag() -> None:
    net, node, trunk, incoming = _answered_tagless()
    node.ep.hangup(incoming.leg_id, net.now)
    net.flush()
    bye = trunk.requests[-1]
    assert bye.method == "BYE" and bye.to_addr.tag is None and bye.from_addr.tag is not None
    assert node.last() == LegEnded(incoming.leg_id, EndReason.LOCAL)


def test_an_invite_without_contact_is_answered_and_byed_at_its_source_and_from_uri() -> None:
    net, node, trunk = _trunk()
    invite = trunk.call("sip:+14155551234@192.0.2.10")
    trunk.tl = TransactionLayer()
    invite.headers.remove("Contact")
    trunk.tl.send_request(invite, EP_ADDR, 0.0)
    trunk.invite = invite
    net.flush()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall)
    _answer(net, node, incoming)
    assert statuses(trunk.finals) == [200]
    node.ep.hangup(incoming.leg_id, net.now)
    net.flush()  # the BYE reached the trunk: sent to where the INVITE came from
    bye = trunk.requests[-1]
    assert bye.method == "BYE" and bye.uri == invite.from_addr.uri  # Request-URI: the From URI
    assert node.last() == LegEnded(incoming.leg_id, EndReason.LOCAL)


def test_a_broken_video_stream_does_not_refuse_the_call() -> None:
    net, node, trunk = _trunk()
    invite = trunk.call("sip:+14155551234@192.0.2.10")
    trunk.tl = TransactionLayer()
    invite.body += b"m=video 5002 RTP/AVP 31\r\na=rtpmap:31\r\nbogus line\r\n"
    invite.headers.set("Content-Length", str(len(invite.body)))
    trunk.tl.send_request(invite, EP_ADDR, 0.0)
    net.flush()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall)
    answer, _ = answer_offer(incoming.offer, EP_ADDR[0], 30002, 9, 1)
    assert [m.port for m in answer.media] == [30002, 0]
