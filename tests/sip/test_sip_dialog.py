"""Dialogs (RFC 3261 section 12): creation, routing of in-dialog requests, CSeq rules, a full call."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bridgeline.sip.dialog import Dialog, DialogError, DialogId, DialogState, dialog_id_of
from bridgeline.sip.headers import NameAddress, parse_name_address, parse_via
from bridgeline.sip.message import Request, Response, make_request, make_response, new_branch, parse_message
from bridgeline.sip.offer_answer import PCMU, answer_offer, make_offer, read_answer
from bridgeline.sip.sdp import Direction, parse_sdp
from bridgeline.sip.transaction import AckReceived, Address, Event, FinalReceived, RequestReceived
from bridgeline.sip.transaction_layer import TransactionLayer
from bridgeline.sip.uri import SipURI, parse_uri

DATA = Path(__file__).parent / "data"
RNG = random.Random(3)
OUR_CONTACT = parse_name_address("<sip:bridge@192.0.2.10:5060>")


def load(name: str) -> Request | Response:
    return parse_message((DATA / name).read_bytes().replace(b"\n", b"\r\n"))


def our_invite() -> Request:
    """The INVITE the fixture 200 OK answers (same Call-ID, From and CSeq)."""
    return make_request(
        "INVITE",
        parse_uri("sip:bob@example.net"),
        via=parse_via("SIP/2.0/UDP 192.0.2.44:5060;branch=z9hG4bK88a7d2f1"),
        from_addr=parse_name_address("<sip:bridge@example.com>;tag=9f2e71"),
        to_addr=parse_name_address('"Bob" <sip:bob@example.net>'),
        call_id="a84b4c76e66710@192.0.2.44",
        cseq=1,
        contact=OUR_CONTACT,
    )


def test_uac_dialog_from_2xx_with_record_route() -> None:
    ok = load("ok_record_route.sip")
    assert isinstance(ok, Response)
    dialog = Dialog.from_uac(our_invite(), ok)
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.id == DialogId("a84b4c76e66710@192.0.2.44", "9f2e71", "314159") == dialog_id_of(ok)
    assert dialog.remote_target == SipURI("192.0.2.99", user="bob", port=5062)
    # Record-Route reversed for the UAC: nearest proxy first.
    assert [str(r.uri) for r in dialog.route_set] == [
        "sip:proxy3.example.net:5070;lr;transport=udp",
        "sip:proxy2.example.net;lr",
        "sip:203.0.113.1;lr;ftag=9f2e71",
    ]
    assert dialog.next_hop == dialog.route_set[0].uri
    bye = dialog.create_request("BYE", via=parse_via("SIP/2.0/UDP 192.0.2.44;branch=z9hG4bKbye1"))
    assert bye.uri == dialog.remote_target  # loose routing
    assert bye.headers.get_all("Route") == [str(r) for r in dialog.route_set]
    assert str(bye.cseq) == "2 BYE" and dialog.local_seq == 2
    assert bye.from_addr.tag == "9f2e71" and bye.to_addr.tag == "314159" and bye.call_id == ok.call_id
    assert bye.headers.get("Contact") is None  # BYE is not a target refresh
    reinvite = dialog.create_request("INVITE", via=parse_via("SIP/2.0/UDP 192.0.2.44;branch=z9hG4bKre"))
    assert str(reinvite.cseq) == "3 INVITE" and reinvite.contacts == [OUR_CONTACT]
    ack = dialog.create_ack(1, via=parse_via("SIP/2.0/UDP 192.0.2.44;branch=z9hG4bKack"))
    assert str(ack.cseq) == "1 ACK" and ack.uri == dialog.remote_target and dialog.local_seq == 3
    assert parse_message(bytes(ack)) == ack
    with pytest.raises(ValueError):
        dialog.create_request("ACK", via=parse_via("SIP/2.0/UDP h;branch=z9hG4bKx"))


def test_uas_dialog_and_cseq_ordering() -> None:
    invite = load("invite_baresip.sip")
    assert isinstance(invite, Request)
    ok = make_response(invite, 200, to_tag="ours", headers=[("Contact", str(OUR_CONTACT))])
    dialog = Dialog.from_uas(invite, ok)
    assert dialog.id == DialogId("3f8e0c1b6a2d4e97", "ours", "5c2b8e41f0a39d77")
    assert dialog.remote_seq == 28512 and dialog.route_set == []
    assert dialog.local_contact == OUR_CONTACT
    bye = dialog.create_request("BYE", via=parse_via("SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKb"))
    assert str(bye.uri) == "sip:alice-0x55d1c3a8@198.51.100.7:5060;transport=udp"  # their Contact
    assert not bye.headers.get_all("Route")
    assert bye.from_addr.tag == "ours" and bye.to_addr.display_name == "Alice Liddell"
    assert str(bye.cseq) == "1 BYE"

    def peer(method: str, seq: int, contact: str | None = None) -> Request:
        req = make_request(
            method,
            parse_uri("sip:bridge@192.0.2.10"),
            via=parse_via("SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKp"),
            from_addr=invite.from_addr,
            to_addr=ok.to_addr,
            call_id=invite.call_id,
            cseq=seq,
            contact=None if contact is None else parse_name_address(contact),
        )
        assert dialog_id_of(req) == dialog.id
        return req

    assert dialog.receive_request(peer("INFO", 28513))
    assert not dialog.receive_request(peer("INFO", 28512))  # out of order: answer 500
    assert dialog.receive_request(peer("ACK", 28512))  # ACK reuses the INVITE's number
    assert dialog.receive_request(peer("INVITE", 28514, "<sip:alice@198.51.100.8:5062>"))
    assert dialog.remote_target == SipURI("198.51.100.8", user="alice", port=5062)  # target refresh
    assert dialog.receive_request(peer("BYE", 28515)) and dialog.state is DialogState.TERMINATED
    with pytest.raises(DialogError):
        dialog.create_request("BYE", via=parse_via("SIP/2.0/UDP h;branch=z9hG4bKx"))


def test_strict_routing() -> None:
    invite = our_invite()
    ok = make_response(
        invite,
        200,
        to_tag="t",
        headers=[
            ("Record-Route", "<sip:p2.example.net;lr>"),
            ("Record-Route", "<sip:p1.example.net;method=INVITE?X=1>"),  # strict router next to us
            ("Contact", "<sip:bob@192.0.2.99>"),
        ],
    )
    dialog = Dialog.from_uac(invite, ok)
    bye = dialog.create_request("BYE", via=parse_via("SIP/2.0/UDP h;branch=z9hG4bKs"))
    assert str(bye.uri) == "sip:p1.example.net"
    assert bye.headers.get_all("Route") == ["<sip:p2.example.net;lr>", "<sip:bob@192.0.2.99>"]


def test_early_dialog_confirmed_by_2xx_with_its_own_route_set() -> None:
    invite = our_invite()
    ringing = make_response(
        invite, 180, to_tag="t", headers=[("Contact", "<sip:bob@192.0.2.99>"), ("Record-Route", "<sip:a;lr>")]
    )
    dialog = Dialog.from_uac(invite, ringing)
    assert dialog.state == "early"  # (== keeps mypy from narrowing across receive_response)
    ok = make_response(
        invite,
        200,
        to_tag="t",
        headers=[("Contact", "<sip:bob@192.0.2.100>"), ("Record-Route", "<sip:b;lr>")],
    )
    dialog.receive_response(ok)
    assert dialog.state is DialogState.CONFIRMED
    assert [str(r) for r in dialog.route_set] == ["<sip:b;lr>"]
    assert dialog.remote_target == SipURI("192.0.2.100", user="bob")
    dialog.receive_response(make_response(invite, 200, to_tag="t", headers=[("Record-Route", "<sip:c;lr>")]))
    assert [str(r) for r in dialog.route_set] == ["<sip:b;lr>"]  # fixed once confirmed


@pytest.mark.parametrize(
    ("status", "to_tag", "contact"),
    [(200, None, "<sip:b@h>"), (100, "t", "<sip:b@h>"), (486, "t", "<sip:b@h>"), (200, "t", None)],
)
def test_responses_that_cannot_create_a_dialog(status: int, to_tag: str | None, contact: str | None) -> None:
    invite = our_invite()
    headers = [] if contact is None else [("Contact", contact)]
    response = make_response(invite, status, to_tag=to_tag, headers=headers)
    with pytest.raises(DialogError):
        Dialog.from_uac(invite, response)


# --- a whole call over two transaction layers ---------------------------------------------------

UAC: Address = ("192.0.2.10", 5060)
UAS: Address = ("192.0.2.20", 5060)


def pump(a: TransactionLayer, b: TransactionLayer, now: float) -> tuple[list[Event], list[Event]]:
    """Deliver datagrams both ways until quiet; return the events each side saw."""
    seen: tuple[list[Event], list[Event]] = ([], [])
    addrs = {id(a): UAC, id(b): UAS}
    busy = True
    while busy:
        busy = False
        for src, dst, events in ((a, b, seen[0]), (b, a, seen[1])):
            for data, _ in src.datagrams_to_send():
                dst.receive_datagram(data, addrs[id(src)], now)
                busy = True
            while (event := src.next_event()) is not None:
                events.append(event)
    return seen


def test_full_call_invite_ack_bye() -> None:
    uac, uas = TransactionLayer(), TransactionLayer()
    offer = make_offer("192.0.2.10", 40000, 1, 1)
    invite = make_request(
        "INVITE",
        parse_uri("sip:conf@192.0.2.20"),
        via=parse_via(f"SIP/2.0/UDP 192.0.2.10:5060;branch={new_branch(RNG)};rport"),
        from_addr=NameAddress(parse_uri("sip:bridge@192.0.2.10")).with_tag("caller"),
        to_addr=NameAddress(parse_uri("sip:conf@192.0.2.20")),
        call_id="full-call",
        cseq=10,
        contact=OUR_CONTACT,
        headers=[("Content-Type", "application/sdp")],
        body=bytes(offer),
    )
    uac.send_request(invite, UAS, 0.0)
    _, uas_events = pump(uac, uas, 0.0)
    (received,) = uas_events
    assert isinstance(received, RequestReceived)
    answer, uas_media = answer_offer(parse_sdp(received.request.body), "192.0.2.20", 50000, 2, 1)
    ok = make_response(
        received.request,
        200,
        to_tag="callee",
        headers=[("Contact", "<sip:conf@192.0.2.20:5060>"), ("Content-Type", "application/sdp")],
        body=bytes(answer),
    )
    uas_dialog = Dialog.from_uas(received.request, ok)
    uas.send_response(ok, 0.1)
    uac_events, _ = pump(uac, uas, 0.1)
    (final,) = uac_events
    assert isinstance(final, FinalReceived)
    uac_dialog = Dialog.from_uac(invite, final.response)
    assert uac_dialog.id == DialogId("full-call", "caller", "callee")
    assert uas_dialog.id == DialogId("full-call", "callee", "caller")
    uac_media = read_answer(offer, parse_sdp(final.response.body))
    assert uac_media.codec == uas_media.codec == PCMU
    assert uac_media.direction is uas_media.direction is Direction.SENDRECV
    assert (uac_media.remote_port, uas_media.remote_port) == (50000, 40000)

    ack = uac_dialog.create_ack(
        invite.cseq.seq, via=parse_via(f"SIP/2.0/UDP 192.0.2.10;branch={new_branch(RNG)}")
    )
    uac.send_stateless(ack, UAS)
    _, uas_events = pump(uac, uas, 0.2)
    (ack_event,) = uas_events
    assert isinstance(ack_event, AckReceived) and ack_event.key == received.key
    assert uas_dialog.receive_request(ack_event.request)

    bye = uac_dialog.create_request("BYE", via=parse_via(f"SIP/2.0/UDP 192.0.2.10;branch={new_branch(RNG)}"))
    uac.send_request(bye, UAS, 5.0)
    _, uas_events = pump(uac, uas, 5.0)
    (bye_event,) = uas_events
    assert isinstance(bye_event, RequestReceived) and dialog_id_of(bye_event.request) == uas_dialog.id
    assert uas_dialog.receive_request(bye_event.request) and uas_dialog.state is DialogState.TERMINATED
    uas.send_response(make_response(bye_event.request, 200), 5.0)
    uac_events, _ = pump(uac, uas, 5.0)
    assert [type(e) for e in uac_events] == [FinalReceived]
    uac_dialog.terminate()
    for now in (40.0, 80.0):
        uac.handle_timer(now)
        uas.handle_timer(now)
        pump(uac, uas, now)
    assert len(uac) == len(uas) == 0
