"""RFC 4028 session timers through SipEndpoint on the virtual clock of test_sip_endpoint: what we
grant (or refuse with 422/400), refreshing at half the interval when we are the refresher
(UPDATE when allowed, else a re-INVITE with the same SDP), and the BYE with a Reason when the peer
that should refresh does not."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given
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

from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import (
    EndReason,
    IncomingCall,
    LegAnswered,
    LegEnded,
    LegFailed,
    SessionTimerSettings,
)
from bridgeline.sip.headers import parse_name_address
from bridgeline.sip.message import Request, Response, make_request
from bridgeline.sip.offer_answer import answer_offer
from bridgeline.sip.session_timer import Agreement, Refusal, negotiate, parse_session_expires
from bridgeline.sip.transaction import RequestReceived
from bridgeline.sip.transaction_layer import TransactionLayer
from bridgeline.sip.uri import parse_uri

PHONE = ("198.51.100.7", 5062)


def setup(**timers: object) -> tuple[Net, EpNode, Phone]:
    net = Net()
    endpoint = make_endpoint()
    if timers:
        settings = replace(endpoint.config.session_timers, **timers)  # type: ignore[arg-type]
        endpoint = SipEndpoint(replace(endpoint.config, session_timers=settings), random.Random(1))
    return net, net.add(EpNode(endpoint)), net.add(Phone(TRUNK_ADDR, "+14155559999"))


def call_with(net: Net, node: EpNode, trunk: Phone, headers: list[tuple[str, str]]) -> None:
    invite = trunk.call("sip:+14155551234@192.0.2.10")
    trunk.tl = TransactionLayer()
    for name, value in headers:
        invite.headers.add(name, value)
    trunk.invite = invite
    trunk.tl.send_request(invite, EP_ADDR, net.now)
    net.flush()


def answered_call(net: Net, node: EpNode, trunk: Phone, headers: list[tuple[str, str]]) -> IncomingCall:
    call_with(net, node, trunk, headers)
    incoming = node.last()
    assert isinstance(incoming, IncomingCall) and incoming.offer is not None
    answer, _ = answer_offer(incoming.offer, EP_ADDR[0], 30002, 9, 1)
    assert node.ep.answer_incoming(incoming.leg_id, answer, net.now)
    net.flush()
    return incoming


def invite_finals(phone: Phone) -> list[Response]:
    return [r for r in phone.finals if r.cseq.method == "INVITE"]


def answer_refreshes(phone: Phone, status: int = 200) -> list[Request]:
    """The phone answers our in-dialog re-INVITE/UPDATE (re-INVITE: the same SDP back)."""
    seen: list[Request] = []

    def on_request(event: RequestReceived) -> bool:
        request = event.request
        if request.method in ("INVITE", "UPDATE") and request.to_addr.tag is not None:
            seen.append(request)
            body = b""
            if request.method == "INVITE" and status == 200 and request.body:
                from bridgeline.sip.sdp import parse_sdp

                body = bytes(answer_offer(parse_sdp(request.body), phone.addr[0], 4000, 5, 1)[0])
            phone.respond(request, status, body)
            return True
        return False

    phone.on_request = on_request
    return seen


def byes(phone: Phone) -> list[Request]:
    return [r for r in phone.requests if r.method == "BYE"]


# --- we are the UAS ---------------------------------------------------------------------------------


def test_peer_refresher_keeps_the_call_with_updates_and_is_hung_up_when_it_stops() -> None:
    net, node, trunk = setup()
    incoming = answered_call(
        net, node, trunk, [("Supported", "timer"), ("Session-Expires", "120;refresher=uac")]
    )
    ok = invite_finals(trunk)[-1]
    assert ok.headers.get("Session-Expires") == "120;refresher=uac"
    assert ok.headers.get("Require") == "timer" and "timer" in (ok.headers.get("Supported") or "")
    for at in (60.0, 120.0, 180.0):  # the peer refreshes at half the interval: the call stays
        net.run(at)
        trunk.in_dialog("UPDATE", headers=[("Session-Expires", "120;refresher=uac"), ("Supported", "timer")])
        net.flush()
        assert trunk.finals[-1].status == 200
        assert trunk.finals[-1].headers.get("Session-Expires") == "120;refresher=uac"
    net.run(180.0 + 87.0)
    assert byes(trunk) == []
    net.run(180.0 + 89.0)  # expiry minus min(32 s, 120/3): 88 s after the last refresh
    (bye,) = byes(trunk)
    assert bye.headers.get("Reason") == 'SIP;cause=408;text="Session timer expired"'
    assert node.last() == LegEnded(incoming.leg_id, EndReason.SESSION_EXPIRED)
    assert node.ep.stats["session_timers_expired"] == 1
    assert_idle(net, node, until=800.0)


def test_a_reinvite_from_the_peer_also_refreshes() -> None:
    net, node, trunk = setup()
    answered_call(net, node, trunk, [("Supported", "timer"), ("Session-Expires", "100;refresher=uac")])
    net.run(50.0)
    trunk.offer = None  # an offerless re-INVITE: the ACK answers our offer
    trunk.in_dialog("INVITE", headers=[("Session-Expires", "100;refresher=uac"), ("Supported", "timer")])
    net.run(110.0)
    assert byes(trunk) == []  # 50 + 100 - 32 = 118 is the new deadline
    net.run(119.0)
    assert len(byes(trunk)) == 1


def test_we_refresh_with_a_reinvite_when_the_peer_does_not_support_timers() -> None:
    net, node, trunk = setup(session_expires=200)
    seen = answer_refreshes(trunk)
    incoming = answered_call(net, node, trunk, [])
    ok = invite_finals(trunk)[-1]
    assert ok.headers.get("Session-Expires") == "200;refresher=uas" and ok.headers.get("Require") is None
    net.run(99.0)
    assert seen == []
    net.run(101.0)
    (refresh,) = seen
    assert refresh.method == "INVITE" and refresh.body == ok.body  # the same SDP: nothing changes
    assert refresh.headers.get("Session-Expires") == "200;refresher=uac"
    assert refresh.headers.get("Min-SE") == "90" and refresh.headers.get("Supported") == "timer"
    assert [a.cseq.seq for a in trunk.acks][-1] == refresh.cseq.seq  # our ACK for its 2xx
    net.run(1000.0)
    assert len(seen) == 10 and byes(trunk) == [] and names(node.events) == ["IncomingCall"]
    node.ep.hangup(incoming.leg_id, net.now)
    assert_idle(net, node, until=1400.0)


def test_we_refresh_with_update_when_the_peer_allows_it() -> None:
    net, node, trunk = setup(session_expires=200)
    seen = answer_refreshes(trunk)
    answered_call(net, node, trunk, [("Allow", "INVITE, ACK, BYE, CANCEL, UPDATE")])
    net.run(101.0)
    (refresh,) = seen
    assert refresh.method == "UPDATE" and refresh.body == b""


@pytest.mark.parametrize("status", [481, 408])
def test_a_refresh_answered_481_or_408_ends_the_call(status: int) -> None:
    net, node, trunk = setup(session_expires=200)
    answer_refreshes(trunk, status)
    incoming = answered_call(net, node, trunk, [])
    net.run(101.0)
    (bye,) = byes(trunk)
    assert "Session timer expired" in (bye.headers.get("Reason") or "")
    assert node.last() == LegEnded(incoming.leg_id, EndReason.SESSION_EXPIRED)


def test_an_unanswered_refresh_ends_the_call() -> None:
    """Lost on the way: Timer B (32 s) ends it; answered 100 but never finally: the deadline."""
    net, node, trunk = setup(session_expires=200)
    incoming = answered_call(net, node, trunk, [])
    net.drop = lambda data, src, dst: src == EP_ADDR and data.startswith(b"INVITE")
    net.run(131.0)
    assert byes(trunk) == []
    net.run(133.0)
    assert len(byes(trunk)) == 1
    assert node.last() == LegEnded(incoming.leg_id, EndReason.SESSION_EXPIRED)
    net, node, trunk = setup(session_expires=200)
    incoming = answered_call(net, node, trunk, [])
    trunk.on_request = lambda event: event.request.method == "INVITE"  # 100 Trying, then nothing
    net.run(167.0)
    assert byes(trunk) == []
    net.run(169.0)  # 200 - 32
    assert len(byes(trunk)) == 1
    assert node.last() == LegEnded(incoming.leg_id, EndReason.SESSION_EXPIRED)
    assert_idle(net, node)


def test_a_peer_update_crossing_our_refresh_reinvite_leaves_it_answerable() -> None:
    """Our re-INVITE refresh is out when the peer's UPDATE refresh arrives: the re-INVITE's 2xx is
    still ACKed, and the peer's next re-INVITE is not refused as glare."""
    net, node, trunk = setup(session_expires=200)
    held: list[Request] = []

    def on_request(event: RequestReceived) -> bool:
        if event.request.method == "INVITE" and event.request.to_addr.tag is not None and not held:
            held.append(event.request)  # answered later
            return True
        return False

    trunk.on_request = on_request
    answered_call(net, node, trunk, [])
    net.run(101.0)
    assert len(held) == 1
    trunk.on_request = lambda event: False
    trunk.in_dialog("UPDATE", headers=[("Session-Expires", "200;refresher=uac"), ("Supported", "timer")])
    net.flush()
    assert trunk.finals[-1].status == 200
    from bridgeline.sip.sdp import parse_sdp

    body = bytes(answer_offer(parse_sdp(held[0].body), trunk.addr[0], 4000, 5, 1)[0])
    trunk.respond(held[0], 200, body)
    net.flush()
    assert [a.cseq.seq for a in trunk.acks][-1] == held[0].cseq.seq  # our ACK for it
    trunk.offer = None
    trunk.in_dialog("INVITE")
    net.flush()
    assert invite_finals(trunk)[-1].status == 200  # no 491: our re-INVITE is over
    assert byes(trunk) == [] and node.ep.stats["internal_errors"] == 0


def test_a_refused_refresh_is_retried() -> None:
    net, node, trunk = setup(session_expires=200)
    seen = answer_refreshes(trunk, 491)
    answered_call(net, node, trunk, [])
    net.run(120.0)
    assert len(seen) >= 4 and byes(trunk) == []
    net.run(200.0)  # still refused at the deadline: 200 - 32 after the start
    assert len(byes(trunk)) == 1


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ([("Session-Expires", "60")], 422, "Session Interval Too Small"),
        ([("Session-Expires", "89;refresher=uac"), ("k", "timer")], 422, "Session Interval Too Small"),
        ([("Session-Expires", "abc")], 400, "Bad Session-Expires Header"),
        ([("Session-Expires", "")], 400, "Bad Session-Expires Header"),
        ([("Session-Expires", "-5")], 400, "Bad Session-Expires Header"),
        ([("Session-Expires", "0")], 400, "Bad Session-Expires Header"),
        ([("Session-Expires", "99999999999999999999")], 400, "Bad Session-Expires Header"),
        ([("Session-Expires", "1800;refresher=nobody")], 400, "Bad Session-Expires Header"),
        ([("Session-Expires", "1800"), ("Session-Expires", "900")], 400, "Bad Session-Expires Header"),
        ([("Min-SE", "lots")], 400, "Bad Min-SE Header"),
        ([("Min-SE", "4294967296")], 400, "Bad Min-SE Header"),
        ([("Session-Expires", "1800"), ("Min-SE", "3600")], 400, "Min-SE Above Session-Expires"),
    ],
)
def test_unusable_session_timer_values_are_refused(
    headers: list[tuple[str, str]], status: int, reason: str
) -> None:
    net, node, trunk = setup()
    call_with(net, node, trunk, headers)
    final = invite_finals(trunk)[-1]
    assert (final.status, final.reason) == (status, reason)
    if status == 422:
        assert final.headers.get("Min-SE") == "90"
    assert node.events == [] and node.ep.stats["internal_errors"] == 0
    assert_idle(net, node)


@pytest.mark.parametrize(
    ("headers", "granted"),
    [
        ([("Session-Expires", "4294967295")], "1800;refresher=uas"),  # lowered to ours
        ([("Session-Expires", "90"), ("Supported", "timer")], "90;refresher=uac"),
        ([("Session-Expires", "600;refresher=uas"), ("Supported", "timer")], "600;refresher=uas"),
        ([("Min-SE", "4000")], "4000;refresher=uas"),  # never below the peer's minimum
        ([("Session-Expires", "5000"), ("Min-SE", "4000")], "4000;refresher=uas"),
        ([("x", "300;refresher=uac"), ("k", "timer")], "300;refresher=uac"),  # compact forms
    ],
)
def test_granted_intervals(headers: list[tuple[str, str]], granted: str) -> None:
    net, node, trunk = setup()
    answered_call(net, node, trunk, headers)
    assert invite_finals(trunk)[-1].headers.get("Session-Expires") == granted


def test_a_reinvite_with_a_too_small_interval_is_422_and_the_call_stays() -> None:
    net, node, trunk = setup()
    answered_call(net, node, trunk, [("Supported", "timer"), ("Session-Expires", "120;refresher=uac")])
    trunk.in_dialog("UPDATE", headers=[("Session-Expires", "30")])
    net.flush()
    assert (trunk.finals[-1].status, trunk.finals[-1].headers.get("Min-SE")) == (422, "90")
    assert names(node.events) == ["IncomingCall"]


def test_session_timers_switched_off() -> None:
    net, node, trunk = setup(enabled=False)
    answered_call(net, node, trunk, [("Session-Expires", "120")])
    assert invite_finals(trunk)[-1].headers.get("Session-Expires") is None
    net2, node2, trunk2 = setup(enabled=False)
    call_with(net2, node2, trunk2, [("Require", "timer")])
    assert statuses(trunk2.finals) == [420] and trunk2.finals[0].headers.get("Unsupported") == "timer"


# --- we are the UAC ---------------------------------------------------------------------------------


def dial_answered(net: Net, node: EpNode, phone: Phone, session_expires: str | None) -> None:
    node.ep.dial("leg1", phone.uri, caller_id="+14155550000", offer_sdp=ep_offer(), now=net.now)
    net.flush()
    assert phone.pending is not None
    from bridgeline.sip.sdp import parse_sdp

    answer, _ = answer_offer(parse_sdp(phone.pending.body), phone.addr[0], 4000, 5, 1)
    headers = [("Session-Expires", session_expires)] if session_expires else []
    phone.respond(phone.pending, 200, bytes(answer), headers=headers)
    net.flush()
    assert isinstance(node.last(), LegAnswered)


def test_outbound_the_answer_makes_us_refresher() -> None:
    net, node, _ = setup()
    phone = net.add(Phone(PHONE))
    seen = answer_refreshes(phone)
    dial_answered(net, node, phone, "90;refresher=uac")
    net.run(44.0)
    assert seen == []
    net.run(46.0)
    assert [r.method for r in seen] == ["INVITE"]
    net.run(400.0)
    assert len(seen) == 8 and byes(phone) == []


def test_outbound_the_peer_refreshes_or_we_hang_up() -> None:
    net, node, _ = setup()
    phone = net.add(Phone(PHONE))
    dial_answered(net, node, phone, "90;refresher=uas")
    net.run(59.0)
    assert byes(phone) == []
    net.run(61.0)  # 90 - min(32, 30)
    assert len(byes(phone)) == 1
    assert node.last() == LegEnded("leg1", EndReason.SESSION_EXPIRED)
    assert_idle(net, node)


def test_outbound_a_422_is_retried_once_with_the_interval_it_asks_for() -> None:
    net, node, _ = setup()
    phone = net.add(Phone(PHONE))
    node.ep.dial("leg1", phone.uri, caller_id="+14155550000", offer_sdp=ep_offer(), now=net.now)
    net.flush()
    assert phone.pending is not None
    first = phone.pending
    phone.respond(first, 422, headers=[("Min-SE", "3600")])
    net.flush()
    retry = phone.pending
    assert retry is not None and retry is not first and retry.cseq.seq == first.cseq.seq + 1
    assert (retry.headers.get("Session-Expires"), retry.headers.get("Min-SE")) == ("3600", "3600")
    assert retry.top_via.branch != first.top_via.branch and retry.call_id == first.call_id
    from bridgeline.sip.sdp import parse_sdp

    answer, _ = answer_offer(parse_sdp(retry.body), phone.addr[0], 4000, 5, 1)
    phone.respond(retry, 200, bytes(answer), headers=[("Session-Expires", "3600;refresher=uas")])
    net.flush()
    assert names(node.events) == ["LegAnswered"]
    net.run(3600 - 32 - 1)
    assert byes(phone) == []
    net.run(3600 - 32 + 1)  # the peer refreshes: it did not, so we hang up
    assert len(byes(phone)) == 1


@pytest.mark.parametrize(
    ("answers", "why"),
    [
        (["3600", "7200"], "a second 422 is not retried"),
        (["lots"], "garbled Min-SE"),
        (["86401"], "more than a day"),
        ([None], "no Min-SE"),
    ],
)
def test_outbound_a_422_that_cannot_be_honoured_fails_the_leg(answers: list[str | None], why: str) -> None:
    net, node, _ = setup()
    phone = net.add(Phone(PHONE))
    node.ep.dial("leg1", phone.uri, caller_id="+14155550000", offer_sdp=ep_offer(), now=net.now)
    net.flush()
    for min_se in answers:
        assert phone.pending is not None, why
        phone.respond(phone.pending, 422, headers=[("Min-SE", min_se)] if min_se else [])
        net.flush()
    failed = node.last()
    assert isinstance(failed, LegFailed) and failed.status == 422, why
    assert node.ep.stats["internal_errors"] == 0
    assert_idle(net, node)


@pytest.mark.parametrize("value", [None, "garbage", "0"])
def test_outbound_without_a_usable_session_expires_no_timer_runs(value: str | None) -> None:
    net, node, _ = setup()
    phone = net.add(Phone(PHONE))
    seen = answer_refreshes(phone)
    dial_answered(net, node, phone, value)
    net.run(4000.0)
    assert seen == [] and byes(phone) == []


# --- the negotiation alone ------------------------------------------------------------------------


def request_with(headers: list[tuple[str, str]]) -> Request:
    return make_request(
        "INVITE",
        parse_uri("sip:a@b"),
        via=Phone(PHONE).via(),
        from_addr=parse_name_address("<sip:x@y>;tag=1"),
        to_addr=parse_name_address("<sip:a@b>"),
        call_id="c",
        cseq=1,
        headers=headers,
    )


@given(
    se=st.one_of(st.none(), st.integers(min_value=1, max_value=2**32 - 1)),
    min_se=st.one_of(st.none(), st.integers(min_value=1, max_value=2**32 - 1)),
    ours=st.integers(min_value=90, max_value=7200),
    floor=st.integers(min_value=1, max_value=90),
    supported=st.booleans(),
)
def test_negotiation_never_grants_below_either_minimum(
    se: int | None, min_se: int | None, ours: int, floor: int, supported: bool
) -> None:
    headers = []
    if se is not None:
        headers.append(("Session-Expires", str(se)))
    if min_se is not None:
        headers.append(("Min-SE", str(min_se)))
    if supported:
        headers.append(("Supported", "timer"))
    settings = SessionTimerSettings(True, ours, floor)
    outcome = negotiate(request_with(headers), settings)
    if isinstance(outcome, Refusal):
        assert outcome.status in (400, 422)
        assert outcome.status != 422 or (se is not None and se < floor)
        return
    assert isinstance(outcome, Agreement)
    assert outcome.interval >= max(floor, min_se or 0)
    assert outcome.interval <= max(ours, min_se or 0, se or 0)
    assert outcome.we_refresh is not supported or se is None or outcome.we_refresh is False
    assert parse_session_expires(outcome.response_headers()[0][1])[0] == outcome.interval
