"""REFER in a dialog (RFC 3515): what the endpoint checks itself, the question it asks the layer above
(`TransferRequested`), and the 202 and NOTIFYs (message/sipfrag) of the implicit subscription."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sip_endpoint import Net, Phone, answered_outbound, assert_idle, setup

from bridgeline.sip.events import LegEnded, TransferRequested
from bridgeline.sip.message import Request, Response, make_response
from bridgeline.sip.transaction import RequestReceived
from bridgeline.sip.uri import SipURI


def answering_notifies(phone: Phone) -> list[Request]:
    """Make the phone answer every NOTIFY with 200, as a referrer does; the NOTIFYs it got."""
    notifies: list[Request] = []

    def on_request(event: RequestReceived) -> bool:
        if event.request.method != "NOTIFY":
            return False
        notifies.append(event.request)
        phone.tl.send_response(make_response(event.request, 200), phone.now)
        return True

    phone.on_request = on_request
    return notifies


def refer(net: Net, phone: Phone, *refer_to: str, extra: list[tuple[str, str]] | None = None) -> Request:
    headers = [("Refer-To", value) for value in refer_to] + (extra or [])
    request = phone.in_dialog("REFER", headers=headers)
    net.flush()
    return request


def final_for(phone: Phone, request: Request) -> Response:
    return next(r for r in phone.finals if r.cseq.seq == request.cseq.seq and r.cseq.method == "REFER")


def test_an_accepted_refer_is_202_then_notifies_trying_ringing_and_the_outcome() -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    notifies = answering_notifies(phone)
    request = refer(
        net, phone, "<sip:+14155550123@bridge.example;user=phone>", extra=[("Referred-By", "<sip:alice@x>")]
    )
    asked = node.last()
    assert asked == TransferRequested(
        "leg1", SipURI("bridge.example", "+14155550123", params=asked.target.params), "<sip:alice@x>"
    )
    assert not [r for r in phone.finals if r.cseq.method == "REFER"]  # undecided: no answer yet

    assert node.ep.answer_refer("leg1", 202, net.now)
    net.flush()
    assert final_for(phone, request).status == 202
    assert node.ep.notify_refer("leg1", 180, net.now, final=False)
    assert node.ep.notify_refer("leg1", 200, net.now)
    net.flush()
    assert [n.body for n in notifies] == [
        b"SIP/2.0 100 Trying\r\n",
        b"SIP/2.0 180 Ringing\r\n",
        b"SIP/2.0 200 OK\r\n",
    ]
    for notify in notifies:
        assert notify.headers.get("Event") == f"refer;id={request.cseq.seq}"
        assert notify.headers.get("Content-Type") == "message/sipfrag;version=2.0"
    states = [n.headers.get("Subscription-State") for n in notifies]
    assert states == ["active;expires=300", "active;expires=300", "terminated;reason=noresource"]
    assert not node.ep.notify_refer("leg1", 200, net.now)  # the subscription is over
    assert not node.ep.answer_refer("leg1", 202, net.now)

    assert node.ep.hangup("leg1", net.now)
    net.flush()
    assert isinstance(node.last(), LegEnded)
    assert_idle(net, node)


def test_a_refused_refer_gets_the_reason_and_a_new_one_may_follow() -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    first = refer(net, phone, "<sip:bob@bridge.example>")
    second = refer(net, phone, "<sip:carol@bridge.example>")  # while the first is undecided
    assert final_for(phone, second).status == 403
    assert final_for(phone, second).reason == "A transfer is already in progress"
    assert node.ep.answer_refer("leg1", 403, net.now, "Transfer target\r\nnot allowed")
    net.flush()
    refused = final_for(phone, first)
    assert (refused.status, refused.reason) == (403, "Transfer targetnot allowed")
    assert node.ep.stats["refers_refused"] == 1  # the endpoint's own; the layer above counts its refusals
    refer(net, phone, "<sip:dave@bridge.example>")
    assert isinstance(node.last(), TransferRequested) and node.last().target.user == "dave"
    with pytest.raises(ValueError):
        node.ep.answer_refer("leg1", 200, net.now)


@pytest.mark.parametrize(
    ("refer_to", "status", "reason"),
    [
        ((), 400, "Missing Refer-To"),
        (("<sip:a@example.com>", "<sip:b@example.com>"), 400, "More than one Refer-To"),
        (("<sip:a@example.com>, <sip:b@example.com>",), 400, "More than one Refer-To"),
        (("<sip:a@exa mple.com",), 400, "Malformed Refer-To"),
        (("<tel:+14155550123>",), 416, "Refer-To must be a sip: URI"),
        (("<sips:a@example.com>",), 416, "Refer-To must be a sip: URI"),
        (("<sip:example.com>",), 400, "Refer-To names no user"),
        (
            ("<sip:b@example.com?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2>",),
            501,
            "Attended transfer (Replaces) not supported",
        ),
        (("<sip:b@example.com;method=BYE>",), 501, "Only INVITE references are supported"),
    ],
)
def test_unusable_refers_are_refused_by_the_endpoint(
    refer_to: tuple[str, ...], status: int, reason: str
) -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    before = len(node.events)
    answer = final_for(phone, refer(net, phone, *refer_to))
    assert (answer.status, answer.reason) == (status, reason)
    assert len(node.events) == before  # nothing was asked of the layer above
    assert node.ep.stats["refers_refused"] == 1


def test_uri_headers_and_method_invite_are_dropped_from_the_target() -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    refer(net, phone, "<sip:b@example.com:5070;method=INVITE?Subject=hi>")
    asked = node.last()
    assert isinstance(asked, TransferRequested)
    assert str(asked.target) == "sip:b@example.com:5070"


def test_a_call_that_ends_before_its_refer_is_answered_leaves_nothing_behind() -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    refer(net, phone, "<sip:bob@bridge.example>")
    phone.in_dialog("BYE")
    net.flush()
    assert isinstance(node.last(), LegEnded)
    assert not node.ep.answer_refer("leg1", 202, net.now)
    assert_idle(net, node)  # the REFER's transaction too


def test_a_leg_that_ends_takes_its_refer_along() -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    answering_notifies(phone)
    refer(net, phone, "<sip:bob@bridge.example>")
    assert node.ep.answer_refer("leg1", 202, net.now)
    phone.in_dialog("BYE")
    net.flush()
    assert isinstance(node.last(), LegEnded)
    assert not node.ep.notify_refer("leg1", 200, net.now)
    assert_idle(net, node)


REFER_TO_PIECES = st.sampled_from(
    ["<", ">", "sip:", "sips:", "tel:", "@", "bob", "+1415", ":", "5060", ";", "method=", "INVITE", "?",
     "Replaces=", "&", "%40", ",", '"', " ", "bridge.example", "[::1]", "user=phone", "\t"]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(REFER_TO_PIECES, max_size=12).map("".join), max_size=3))
def test_any_refer_to_is_answered_or_asked_about_and_never_raises(values: list[str]) -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    before = len(node.events)
    try:
        request = phone.in_dialog("REFER", headers=[("Refer-To", v) for v in values])
    except ValueError:
        return  # not even sendable as a header (the phone's own check)
    net.flush()
    answers = [r for r in phone.finals if r.cseq.method == "REFER" and r.cseq.seq == request.cseq.seq]
    asked = node.events[before:]
    assert node.ep.stats["internal_errors"] == 0
    if asked:
        assert not answers and isinstance(asked[0], TransferRequested)
        assert node.ep.answer_refer("leg1", 403, net.now, "no")
        net.flush()
    else:
        assert answers and answers[0].status in (400, 416, 501), answers
