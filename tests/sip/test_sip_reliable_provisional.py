"""RFC 3262 100rel/PRACK through SipEndpoint, both ways, on the virtual clock of test_sip_endpoint:
our reliable 18x retransmitted until PRACKed (504 after 64*T1), the 2xx waiting for the PRACK of
an 18x with SDP, PRACKs matched by RAck (481/400 otherwise); and our PRACKs for a peer's
reliable 18x in RSeq order, duplicates PRACKed again but not reported, gaps left for the peer
to fill."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sip_endpoint import (
    EP_ADDR,
    TRUNK_ADDR,
    EpNode,
    Net,
    Phone,
    assert_idle,
    ep_offer,
    make_endpoint,
    names,
    statuses,
)

from bridgeline.sip.dialog import Dialog
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import EndReason, IncomingCall, LegAnswered, LegEnded, LegRinging
from bridgeline.sip.message import Request, Response
from bridgeline.sip.offer_answer import answer_offer
from bridgeline.sip.reliable_provisional import MAX_EARLY_DIALOGS, parse_rack, parse_rseq
from bridgeline.sip.transaction import RequestReceived
from bridgeline.sip.transaction_layer import TransactionLayer

T1 = 0.5
_PRACK_SEQ = itertools.count()  # the trunk's CSeq in its early dialogs only ever rises


def setup(**config: object) -> tuple[Net, EpNode, Phone]:
    net = Net()
    endpoint = make_endpoint()
    if config:
        endpoint = SipEndpoint(replace(endpoint.config, **config), random.Random(1))  # type: ignore[arg-type]
    return net, net.add(EpNode(endpoint)), net.add(Phone(TRUNK_ADDR, "+14155559999"))


def call_with(
    net: Net, node: EpNode, trunk: Phone, headers: list[tuple[str, str]], *, body: bool = True
) -> IncomingCall:
    """The trunk calls with extra headers (Require: 100rel...)."""
    invite = trunk.call("sip:+14155551234@192.0.2.10")
    trunk.tl = TransactionLayer()  # forget that one: send a copy with the headers instead
    for name, value in headers:
        invite.headers.add(name, value)
    if not body:
        invite.body = b""
        invite.headers.remove("Content-Type")
        invite.headers.set("Content-Length", "0")
        trunk.offer = None
    trunk.invite = invite
    trunk.tl.send_request(invite, EP_ADDR, net.now)
    net.flush()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall)
    return incoming


def prack(net: Net, trunk: Phone, provisional: Response, rack: str | None = None) -> Request:
    """The trunk PRACKs a provisional in its early dialog (RAck from its RSeq unless given)."""
    assert trunk.invite is not None
    early = Dialog.from_uac(trunk.invite, provisional)
    early.local_seq = trunk.invite.cseq.seq + next(_PRACK_SEQ)
    value = rack if rack is not None else f"{provisional.headers.get('RSeq')} {trunk.invite.cseq.seq} INVITE"
    request = early.create_request("PRACK", via=trunk.via(), headers=[("RAck", value)])
    trunk.tl.send_request(request, EP_ADDR, net.now)
    net.flush()
    return request


def finals_for(phone: Phone, method: str) -> list[Response]:
    return [r for r in phone.finals if r.cseq.method == method]


def reliable(responses: list[Response]) -> list[Response]:
    return [r for r in responses if r.headers.get("RSeq") is not None]


def answer_for(incoming: IncomingCall) -> object:
    assert incoming.offer is not None
    return answer_offer(incoming.offer, EP_ADDR[0], 30002, 9, 1)[0]


# --- we are the UAS -------------------------------------------------------------------------------


def test_required_100rel_makes_our_180_reliable_until_pracked() -> None:
    net, node, trunk = setup()
    incoming = call_with(net, node, trunk, [("Require", "100rel")])
    assert node.ep.ring_incoming(incoming.leg_id, net.now)
    net.flush()
    ringing = trunk.provisionals[-1]
    assert ringing.status == 180 and ringing.headers.get("Require") == "100rel"
    rseq = parse_rseq(ringing.headers.get("RSeq"))
    assert rseq is not None and 1 <= rseq < 2**31
    net.run(3.6)  # retransmitted at T1, 2*T1, 4*T1 after the first: 0.5, 1.5, 3.5
    sent = [t for t, src, _, line in net.sent if src == EP_ADDR and line.startswith("SIP/2.0 180")]
    assert sent == [0.0, 0.5, 1.5, 3.5]
    prack(net, trunk, ringing)
    assert statuses(finals_for(trunk, "PRACK")) == [200]
    net.run(40.0)  # no more retransmissions, and no 504: the PRACK stopped them
    sent = [t for t, src, _, line in net.sent if src == EP_ADDR and line.startswith("SIP/2.0 180")]
    assert len(sent) == 4 and finals_for(trunk, "INVITE") == []
    assert node.ep.answer_incoming(incoming.leg_id, answer_for(incoming), net.now)  # type: ignore[arg-type]
    net.flush()
    assert statuses(finals_for(trunk, "INVITE")) == [200]
    assert "100rel" in (finals_for(trunk, "INVITE")[0].headers.get("Supported") or "")
    node.ep.hangup(incoming.leg_id, net.now)
    net.flush()
    assert node.last() == LegEnded(incoming.leg_id, EndReason.LOCAL)
    assert_idle(net, node, until=500.0)


def test_no_prack_within_64_t1_ends_the_call_with_504() -> None:
    net, node, trunk = setup()
    incoming = call_with(net, node, trunk, [("Require", "100rel")])
    node.ep.ring_incoming(incoming.leg_id, net.now)
    net.run(31.9)
    assert finals_for(trunk, "INVITE") == []
    net.run(32.1)
    final = finals_for(trunk, "INVITE")[-1]
    assert (final.status, final.reason) == (504, "No PRACK Received")
    assert node.last() == LegEnded(incoming.leg_id, EndReason.TIMEOUT)
    sent = [t for t, src, _, line in net.sent if src == EP_ADDR and line.startswith("SIP/2.0 180")]
    assert sent == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # T1 doubling, no T2 cap (RFC 3262 3)
    assert node.ep.stats["prack_timeouts"] == 1
    assert_idle(net, node)


def test_a_2xx_waits_for_the_prack_of_a_183_with_sdp() -> None:
    net, node, trunk = setup()
    incoming = call_with(net, node, trunk, [("Supported", "timer"), ("Require", "100rel")])
    answer = answer_for(incoming)
    assert node.ep.ring_incoming(incoming.leg_id, net.now, early_sdp=answer)  # type: ignore[arg-type]
    net.flush()
    progress = trunk.provisionals[-1]
    assert progress.status == 183 and progress.body == bytes(answer)  # type: ignore[arg-type]
    assert node.ep.answer_incoming(incoming.leg_id, answer, net.now)  # type: ignore[arg-type]
    net.run(2.0)
    assert finals_for(trunk, "INVITE") == []  # RFC 3262 3: not before the PRACK
    prack(net, trunk, progress)
    assert [(r.cseq.method, r.status) for r in trunk.finals] == [("PRACK", 200), ("INVITE", 200)]
    assert finals_for(trunk, "INVITE")[0].body == bytes(answer)  # type: ignore[arg-type]
    assert names(node.events) == ["IncomingCall"]
    node.ep.hangup(incoming.leg_id, net.now)
    assert_idle(net, node)


def test_a_2xx_after_a_180_without_sdp_goes_at_once_and_stops_retransmissions() -> None:
    net, node, trunk = setup()
    incoming = call_with(net, node, trunk, [("Require", "100rel")])
    node.ep.ring_incoming(incoming.leg_id, net.now)
    net.flush()
    ringing = trunk.provisionals[-1]
    assert node.ep.answer_incoming(incoming.leg_id, answer_for(incoming), net.now)  # type: ignore[arg-type]
    net.run(10.0)
    assert statuses(finals_for(trunk, "INVITE")) == [200]
    sent = [line for _, src, _, line in net.sent if src == EP_ADDR and line.startswith("SIP/2.0 180")]
    assert len(sent) == 1
    prack(net, trunk, ringing)  # late, but it matches: 200 (the 180 was never acknowledged)
    assert statuses(finals_for(trunk, "PRACK")) == [200]


def test_pracks_that_match_nothing_are_refused() -> None:
    net, node, trunk = setup()
    incoming = call_with(net, node, trunk, [("Require", "100rel")])
    node.ep.ring_incoming(incoming.leg_id, net.now)
    net.flush()
    ringing = trunk.provisionals[-1]
    rseq = int(ringing.headers.get("RSeq") or 0)
    for rack in (f"{rseq + 1} 1 INVITE", f"{rseq} 2 INVITE", f"{rseq} 1 BYE", f"{rseq - 1} 1 INVITE"):
        prack(net, trunk, ringing, rack)
        last = finals_for(trunk, "PRACK")[-1]
        assert (last.status, last.reason) == (481, "No Matching Reliable Provisional Response"), rack
    for rack in ("", "x 1 INVITE", "1 INVITE", "-1 1 INVITE", "1 1 INVITE extra", "99999999999 1 INVITE"):
        prack(net, trunk, ringing, rack)
        last = finals_for(trunk, "PRACK")[-1]
        assert (last.status, last.reason) == (400, "Bad RAck Header"), rack
    prack(net, trunk, ringing)
    assert finals_for(trunk, "PRACK")[-1].status == 200
    prack(net, trunk, ringing)  # a second PRACK (new transaction) for the same 180: nothing left
    assert finals_for(trunk, "PRACK")[-1].status == 481
    assert node.ep.stats["internal_errors"] == 0
    node.ep.hangup(incoming.leg_id, net.now)
    assert_idle(net, node)


def test_a_second_provisional_waits_for_the_first_prack() -> None:
    net, node, trunk = setup()
    incoming = call_with(net, node, trunk, [("Require", "100rel")])
    node.ep.ring_incoming(incoming.leg_id, net.now)
    node.ep.ring_incoming(incoming.leg_id, net.now)
    net.flush()
    first = reliable(trunk.provisionals)
    assert len({r.headers.get("RSeq") for r in first}) == 1
    prack(net, trunk, first[0])
    second = reliable(trunk.provisionals)[-1]
    assert int(second.headers.get("RSeq") or 0) == int(first[0].headers.get("RSeq") or 0) + 1
    node.ep.hangup(incoming.leg_id, net.now)
    assert_idle(net, node)


def test_supported_100rel_alone_keeps_provisionals_unreliable() -> None:
    net, node, trunk = setup()
    incoming = call_with(net, node, trunk, [("Supported", "100rel")])
    node.ep.ring_incoming(incoming.leg_id, net.now)
    net.run(5.0)
    assert statuses(trunk.provisionals) == [100, 180] and reliable(trunk.provisionals) == []
    node.ep.hangup(incoming.leg_id, net.now)
    assert_idle(net, node)


def test_an_offerless_invite_requiring_100rel_gets_no_180_and_our_offer_in_the_200() -> None:
    net, node, trunk = setup()
    incoming = call_with(net, node, trunk, [("Require", "100rel")], body=False)
    assert node.ep.ring_incoming(incoming.leg_id, net.now)
    net.run(2.0)
    assert statuses(trunk.provisionals) == [100]
    assert node.ep.answer_incoming(incoming.leg_id, ep_offer(30002), net.now)
    net.flush()
    assert statuses(finals_for(trunk, "INVITE")) == [200]
    node.ep.hangup(incoming.leg_id, net.now)
    assert_idle(net, node)


def test_100rel_switched_off_is_an_unsupported_extension() -> None:
    net, node, trunk = setup(reliable_provisionals=False)
    invite = trunk.call("sip:+14155551234@192.0.2.10")
    trunk.tl = TransactionLayer()
    invite.headers.add("Require", "100rel")
    trunk.tl.send_request(invite, EP_ADDR, net.now)
    net.flush()
    assert statuses(trunk.finals) == [420] and trunk.finals[0].headers.get("Unsupported") == "100rel"
    assert node.events == []


def test_cancel_while_a_reliable_180_is_outstanding_frees_everything() -> None:
    net, node, trunk = setup()
    incoming = call_with(net, node, trunk, [("Require", "100rel")])
    node.ep.ring_incoming(incoming.leg_id, net.now)
    net.run(1.0)
    trunk.cancel()
    net.flush()
    assert node.last() == LegEnded(incoming.leg_id, EndReason.REMOTE)
    assert_idle(net, node)


# --- we are the UAC -------------------------------------------------------------------------------


def dial(net: Net, node: EpNode, phone: Phone) -> Request:
    node.ep.dial("leg1", phone.uri, caller_id="+14155550000", offer_sdp=ep_offer(), now=net.now)
    net.flush()
    assert phone.pending is not None
    return phone.pending


def pracks(phone: Phone) -> list[Request]:
    return [r for r in phone.requests if r.method == "PRACK"]


def answer_pracks(phone: Phone) -> None:
    def on_request(event: RequestReceived) -> bool:
        if event.request.method == "PRACK":
            phone.respond(event.request, 200)
            return True
        return False

    phone.on_request = on_request


def reliable_18x(phone: Phone, invite: Request, rseq: int, status: int = 183, sdp: bool = True) -> None:
    body = b""
    if sdp:
        answer, _ = answer_offer(parse_sdp_body(invite), phone.addr[0], 4000, 5, 1)
        body = bytes(answer)
    phone.respond(invite, status, body, headers=[("Require", "100rel"), ("RSeq", str(rseq))])


def parse_sdp_body(invite: Request) -> object:
    from bridgeline.sip.sdp import parse_sdp

    return parse_sdp(invite.body)


def test_our_invite_advertises_100rel_and_timer() -> None:
    net, node, phone = setup()
    phone = net.add(Phone(("198.51.100.7", 5062)))
    invite = dial(net, node, phone)
    assert invite.headers.get("Supported") == "100rel, timer"
    assert invite.headers.get("Session-Expires") == "1800" and invite.headers.get("Min-SE") == "90"
    assert "PRACK" in (invite.headers.get("Allow") or "")


def test_a_reliable_183_is_pracked_and_its_answer_serves_a_2xx_without_sdp() -> None:
    net, node, _ = setup()
    phone = net.add(Phone(("198.51.100.7", 5062)))
    answer_pracks(phone)
    invite = dial(net, node, phone)
    reliable_18x(phone, invite, 7)
    net.flush()
    (sent,) = pracks(phone)
    assert sent.headers.get("RAck") == f"7 {invite.cseq.seq} INVITE"
    assert sent.cseq.seq == invite.cseq.seq + 1 and sent.to_addr.tag == phone.to_tag
    ringing = node.last()
    assert isinstance(ringing, LegRinging) and ringing.status == 183 and ringing.media is not None
    phone.respond(invite, 200)  # no SDP: the answer was in the PRACKed 183 (RFC 3262 5)
    net.flush()
    answered = node.last()
    assert isinstance(answered, LegAnswered) and answered.media.remote_port == 4000
    node.ep.hangup("leg1", net.now)
    net.flush()
    bye = phone.requests[-1]
    assert bye.method == "BYE" and bye.cseq.seq > sent.cseq.seq  # CSeq keeps rising after PRACK
    assert_idle(net, node)


def test_a_retransmitted_reliable_183_is_pracked_again_but_reported_once() -> None:
    net, node, _ = setup()
    phone = net.add(Phone(("198.51.100.7", 5062)))
    answer_pracks(phone)
    invite = dial(net, node, phone)
    for _ in range(3):
        reliable_18x(phone, invite, 7)
        net.flush()
    assert names(node.events).count("LegRinging") == 1
    prack_lines = [line for _, src, _, line in net.sent if src == EP_ADDR and line.startswith("PRACK")]
    assert len(prack_lines) == 3  # the same PRACK each time: one transaction at the peer
    assert len(pracks(phone)) == 1
    assert node.ep.stats["reliable_provisional_duplicates"] == 2


def test_out_of_order_reliable_provisionals_wait_for_the_missing_one() -> None:
    net, node, _ = setup()
    phone = net.add(Phone(("198.51.100.7", 5062)))
    answer_pracks(phone)
    invite = dial(net, node, phone)
    reliable_18x(phone, invite, 7, 180, sdp=False)
    reliable_18x(phone, invite, 9, 180, sdp=False)  # 8 is missing: neither PRACKed nor reported
    reliable_18x(phone, invite, 6, 180, sdp=False)  # older: ignored
    net.flush()
    assert [r.headers.get("RAck") for r in pracks(phone)] == ["7 1 INVITE"]
    assert names(node.events) == ["LegRinging"]
    reliable_18x(phone, invite, 8, 183)
    reliable_18x(phone, invite, 9, 180, sdp=False)
    net.flush()
    assert [r.headers.get("RAck") for r in pracks(phone)] == ["7 1 INVITE", "8 1 INVITE", "9 1 INVITE"]
    assert names(node.events) == ["LegRinging"] * 3


def test_reliable_provisionals_with_garbage_rseq_are_dropped() -> None:
    net, node, _ = setup()
    phone = net.add(Phone(("198.51.100.7", 5062)))
    invite = dial(net, node, phone)
    for rseq in ("", "abc", "0", "4294967296", "-3", "1 2"):
        phone.respond(invite, 183, headers=[("Require", "100rel"), ("RSeq", rseq)])
    net.flush()
    assert pracks(phone) == [] and node.events == []
    assert node.ep.stats["reliable_provisionals_unusable"] == 6
    assert node.ep.stats["internal_errors"] == 0


def test_reliable_provisionals_from_too_many_forks_are_ignored() -> None:
    net, node, _ = setup()
    phone = net.add(Phone(("198.51.100.7", 5062)))
    answer_pracks(phone)
    invite = dial(net, node, phone)
    for fork in range(MAX_EARLY_DIALOGS + 3):
        phone.to_tag = f"fork{fork}"
        reliable_18x(phone, invite, 1, 180, sdp=False)
    net.flush()
    pracked = {r.to_addr.tag for r in pracks(phone)}
    assert pracked == {f"fork{i}" for i in range(MAX_EARLY_DIALOGS)}
    assert node.ep.stats["reliable_provisionals_unusable"] == 3


def test_garbled_option_tags_are_no_error() -> None:
    net, node, _ = setup()
    phone = net.add(Phone(("198.51.100.7", 5062)))
    invite = dial(net, node, phone)
    phone.respond(invite, 183, headers=[("Require", '"100rel'), ("RSeq", "1")])  # unterminated quote
    phone.respond(invite, 180, headers=[("Require", "100rel,,"), ("RSeq", "2")])
    net.flush()
    assert [r.headers.get("RAck") for r in pracks(phone)] == ["2 1 INVITE"]
    assert node.ep.stats["internal_errors"] == 0
    net2, node2, trunk = setup()
    invite2 = trunk.call("sip:+14155551234@192.0.2.10")
    trunk.tl = TransactionLayer()
    invite2.headers.add("Require", '"100rel')
    invite2.headers.add("Supported", '"timer')
    trunk.tl.send_request(invite2, EP_ADDR, net2.now)
    net2.flush()
    assert statuses(trunk.finals) == [420] and trunk.finals[0].headers.get("Unsupported") == "100rel"
    assert node2.ep.stats["internal_errors"] == 0


def test_with_100rel_switched_off_reliable_provisionals_are_not_pracked() -> None:
    net, node, _ = setup(reliable_provisionals=False)
    phone = net.add(Phone(("198.51.100.7", 5062)))
    invite = dial(net, node, phone)
    assert "100rel" not in (invite.headers.get("Supported") or "")
    reliable_18x(phone, invite, 7)
    net.flush()
    assert pracks(phone) == [] and names(node.events) == ["LegRinging"]


def test_parsers_refuse_garbage() -> None:
    assert parse_rseq("1") == 1 and parse_rseq(" 4294967295 ") == 2**32 - 1
    assert parse_rack("5 1 INVITE") == (5, 1, "INVITE")
    for bad in (None, "", "0", "4294967296", "\uff11", "1e3", "99999999999"):
        assert parse_rseq(bad) is None
    for bad in (None, "", "5 1", "5 x INVITE", "0 1 INVITE"):
        assert parse_rack(bad) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=12))
def test_pracks_follow_rseq_order_whatever_arrives(offsets: list[int]) -> None:
    """Any arrival order of reliable 18x: what we PRACK (new PRACKs, not repeats) is exactly the
    consecutive run from the first RSeq received, and each is reported once."""
    net, node, _ = setup()
    phone = net.add(Phone(("198.51.100.7", 5062)))
    answer_pracks(phone)
    invite = dial(net, node, phone)
    base = 100
    for offset in offsets:
        reliable_18x(phone, invite, base + offset, 180, sdp=False)
        net.flush()
    expected: list[int] = []
    for offset in offsets:
        rseq = base + offset
        if not expected or rseq == expected[-1] + 1:
            expected.append(rseq)
    assert [r.headers.get("RAck") for r in pracks(phone)] == [f"{n} 1 INVITE" for n in expected]
    assert names(node.events).count("LegRinging") == len(expected)
    assert node.ep.stats["internal_errors"] == 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), loss=st.sampled_from([0.0, 0.2, 0.5, 0.8]))
def test_a_lossy_network_ends_in_an_answer_or_a_504_and_nothing_leaks(seed: int, loss: float) -> None:
    """Our reliable 180 and the caller's PRACKs (one per 180 it gets) cross a network that loses
    datagrams at random: the call is answered (the 200 waited for nothing it should not) or ends
    with 504 after 64*T1 (or, answered, ends when its 200 is never ACKed), never an internal
    error, and everything is freed."""
    rng = random.Random(seed)
    net, node, trunk = setup()
    incoming = call_with(net, node, trunk, [("Require", "100rel")])
    net.drop = lambda data, src, dst: rng.random() < loss

    def on_provisional_prack(response: Response) -> None:
        if response.status == 180 and response.headers.get("RSeq"):
            prack(net, trunk, response)

    seen = len(trunk.provisionals)
    node.ep.ring_incoming(incoming.leg_id, net.now)
    answered = False
    while net.now < 40.0:
        net.run(net.now + 0.25)
        for response in trunk.provisionals[seen:]:
            on_provisional_prack(response)
        seen = len(trunk.provisionals)
        if not answered and names(node.events) == ["IncomingCall"] and net.now > 1.0:
            answered = node.ep.answer_incoming(incoming.leg_id, answer_for(incoming), net.now)  # type: ignore[arg-type]
    net.drop = lambda data, src, dst: False
    ended = [e for e in node.events if isinstance(e, LegEnded)]
    if ended:  # no PRACK in 64*T1 (504), or, answered, no ACK for the 200 (Timer L)
        assert ended == [LegEnded(incoming.leg_id, EndReason.TIMEOUT)]
    else:
        node.ep.hangup(incoming.leg_id, net.now)
    assert node.ep.stats["internal_errors"] == 0
    assert_idle(net, node, until=net.now + 400.0)
