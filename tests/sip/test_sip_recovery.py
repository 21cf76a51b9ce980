"""Recovering answered legs from their saved dialogs (sip/saved_dialog.py, sip/recovery.py) on the
virtual clock of test_sip_endpoint: a new endpoint (the restarted node, or another one) sends a
target-refresh re-INVITE in the old dialog, and the phone's later requests find the leg."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_sip_endpoint import (
    DOMAIN,
    EP_ADDR,
    PHONE_ADDR,
    EpNode,
    Net,
    Phone,
    answered_inbound,
    answered_outbound,
    make_endpoint,
    names,
)

from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.endpoint_core import uri_address
from bridgeline.sip.events import EndpointConfig, EndReason, LegEnded, LegRecovered
from bridgeline.sip.message import Request
from bridgeline.sip.offer_answer import PCMA, PCMU, TELEPHONE_EVENT, Codec, answer_offer
from bridgeline.sip.recovery import CSEQ_MARGIN
from bridgeline.sip.saved_dialog import Origin, SavedDialog, SavedDialogError, recovery_offer
from bridgeline.sip.sdes import CryptoSuite
from bridgeline.sip.sdp import parse_sdp
from bridgeline.sip.transaction import Address, RequestReceived, Target, Transport

NEW_ADDR: Address = ("192.0.2.20", 5070)  # the node that takes the call over
CODECS = (PCMU, PCMA, TELEPHONE_EVENT)


def new_node(net: Net, addr: Address = EP_ADDR, seed: int = 5) -> EpNode:
    """A fresh endpoint at addr: the restarted server (same address) or another node."""
    base = make_endpoint().config
    config = EndpointConfig(
        addr, DOMAIN, user_agent="Bridgeline/test", accounts=base.accounts, trunk=base.trunk
    )
    net.nodes.pop(EP_ADDR, None)  # the old process is gone (kill -9)
    return net.add(EpNode(SipEndpoint(config, random.Random(seed))))


def saved_of(node: EpNode, leg_id: str) -> SavedDialog:
    saved = node.ep.saved_dialog(leg_id)
    assert saved is not None
    return SavedDialog.from_json(json.loads(json.dumps(saved.to_json())))  # through the store's JSON


def phone_accepts_reinvites(phone: Phone, status: int = 200) -> list[Request]:
    """The phone answers in-dialog re-INVITEs like a real one: its dialog takes the new target,
    and a 2xx answers the offer from its usual port."""
    seen: list[Request] = []

    def on_request(event: RequestReceived) -> bool:
        request = event.request
        if request.method != "INVITE" or request.to_addr.tag is None:
            return False
        seen.append(request)
        if status >= 300:
            phone.respond(request, status)
            return True
        assert phone.dialog is not None
        phone.dialog.receive_request(request)
        answer, _ = answer_offer(parse_sdp(request.body), phone.addr[0], 4100, 5, 2)
        phone.respond(request, 200, bytes(answer))
        return True

    phone.on_request = on_request
    return seen


def send_in_dialog(net: Net, phone: Phone, method: str) -> Request:
    """An in-dialog request sent where RFC 3261 12.2.1.1 says: the dialog's remote target."""
    assert phone.dialog is not None
    request = phone.dialog.create_request(method, via=phone.via())
    destination = uri_address(phone.dialog.remote_target)
    assert destination is not None
    phone.tl.send_request(request, destination, net.now)
    net.flush()
    return request


def test_a_new_node_takes_an_outbound_call_back_and_the_phones_bye_reaches_it() -> None:
    net = Net()
    old = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(PHONE_ADDR))
    answered_outbound(net, old, phone)
    saved = saved_of(old, "leg1")
    assert old.ep.take_changed_dialogs() == ["leg1"]  # answered: the carrier saves it

    node = new_node(net, NEW_ADDR)
    seen = phone_accepts_reinvites(phone)
    offer = recovery_offer(saved, NEW_ADDR[0], 31000, CODECS, None)
    node.ep.recover("leg1", saved, offer, net.now)
    net.flush()

    (reinvite,) = seen
    assert reinvite.call_id == saved.call_id
    assert reinvite.from_addr.tag == phone.dialog.remote.tag  # type: ignore[union-attr]
    assert reinvite.to_addr.tag == phone.to_tag
    assert reinvite.cseq.seq == saved.local_seq + CSEQ_MARGIN + 1
    assert uri_address(reinvite.contacts[0].uri) == NEW_ADDR
    sdp = parse_sdp(reinvite.body)
    assert sdp.origin.session_id == saved.origin.session_id
    assert sdp.origin.version == saved.origin.version + 1
    assert sdp.media[0].port == 31000 and sdp.media[0].formats[0] == str(saved.codec.payload_type)
    recovered = node.last()
    assert isinstance(recovered, LegRecovered) and recovered.media.remote_port == 4100
    assert [a for a in phone.acks if a.cseq.seq == reinvite.cseq.seq]  # the 2xx was ACKed

    send_in_dialog(net, phone, "BYE")  # to the refreshed target: the new node
    assert phone.finals[-1].status == 200 and phone.finals[-1].cseq.method == "BYE"
    assert node.last() == LegEnded("leg1", EndReason.REMOTE)
    assert node.ep.state_sizes()["legs"] == 0


def test_an_inbound_call_is_recovered_by_the_restarted_node_and_takes_the_phones_reinvite() -> None:
    net = Net()
    old = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(PHONE_ADDR))
    incoming = answered_inbound(net, old, phone)
    saved = saved_of(old, incoming.leg_id)
    assert not saved.outbound

    node = new_node(net)
    seen = phone_accepts_reinvites(phone)
    node.ep.recover(incoming.leg_id, saved, recovery_offer(saved, EP_ADDR[0], 31002, CODECS, None), net.now)
    net.flush()
    assert len(seen) == 1 and isinstance(node.last(), LegRecovered)

    phone.on_request = lambda event: False
    phone.reinvite(None, version=3)  # the phone's own re-INVITE (offerless) reaches the recovered leg
    net.flush()
    assert phone.finals[-1].status == 200 and phone.finals[-1].cseq.method == "INVITE"
    assert parse_sdp(phone.finals[-1].body).media[0].port == 31002  # our new port
    assert node.ep.hangup(incoming.leg_id, net.now)
    net.flush()
    assert node.last() == LegEnded(incoming.leg_id, EndReason.LOCAL)


@pytest.mark.parametrize(
    ("status", "bye"), [(481, False), (408, False), (488, True), (603, True), (500, True)]
)
def test_a_refused_recovery_ends_the_leg(status: int, bye: bool) -> None:
    net = Net()
    old = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(PHONE_ADDR))
    answered_outbound(net, old, phone)
    saved = saved_of(old, "leg1")
    node = new_node(net)
    phone_accepts_reinvites(phone, status)
    node.ep.recover("leg1", saved, recovery_offer(saved, EP_ADDR[0], 31000, CODECS, None), net.now)
    net.run(40.0)
    assert node.events[-1] == LegEnded("leg1", EndReason.RECOVERY_FAILED)
    assert any(r.method == "BYE" for r in phone.requests) is bye
    assert node.ep.state_sizes()["legs"] == 0 and node.ep.state_sizes()["transactions_by_leg"] == 0


def test_a_phone_that_is_gone_ends_the_leg_on_timer_b() -> None:
    net = Net()
    old = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(PHONE_ADDR))
    answered_outbound(net, old, phone)
    saved = saved_of(old, "leg1")
    node = new_node(net)
    net.nodes.pop(PHONE_ADDR)  # nobody answers
    node.ep.recover("leg1", saved, recovery_offer(saved, EP_ADDR[0], 31000, CODECS, None), 0.0)
    net.run(31.0)
    assert node.events == []  # still trying: Timer B is 64*T1
    net.run(33.0)
    assert node.events == [LegEnded("leg1", EndReason.RECOVERY_FAILED)]


def test_a_491_is_retried_after_a_pause_with_a_new_cseq() -> None:
    net = Net()
    old = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(PHONE_ADDR))
    answered_outbound(net, old, phone)
    saved = saved_of(old, "leg1")
    node = new_node(net)
    seen = phone_accepts_reinvites(phone, 491)
    node.ep.recover("leg1", saved, recovery_offer(saved, EP_ADDR[0], 31000, CODECS, None), net.now)
    net.flush()
    seen_after_491 = phone_accepts_reinvites(phone)
    net.run(2.0)
    assert not seen_after_491 and node.events == []
    net.run(4.5)
    assert len(seen) == 1 and len(seen_after_491) == 1
    assert seen_after_491[0].cseq.seq == seen[0].cseq.seq + 1
    assert isinstance(node.last(), LegRecovered)


def test_requests_for_a_saved_dialog_wait_for_its_recovery_and_get_481_once_it_is_given_up() -> None:
    net = Net()
    old = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(PHONE_ADDR))
    answered_outbound(net, old, phone)
    saved = saved_of(old, "leg1")
    node = new_node(net)
    node.ep.expect_recoveries([saved.dialog_id], net.now)

    options = send_in_dialog(net, phone, "OPTIONS")  # arrives before the leg is recovered
    assert not [f for f in phone.finals if f.cseq.seq == options.cseq.seq]  # held: no answer
    phone_accepts_reinvites(phone)
    node.ep.recover("leg1", saved, recovery_offer(saved, EP_ADDR[0], 31000, CODECS, None), net.now)
    net.run(net.now + 1.0)  # the phone retransmits its OPTIONS (Timer E): the recovered leg answers
    assert [f.status for f in phone.finals if f.cseq.seq == options.cseq.seq] == [200]
    assert node.ep.stats["requests_held_for_recovery"] >= 1


def test_requests_for_an_unknown_dialog_get_481_at_once_or_when_the_wait_is_over() -> None:
    net = Net()
    old = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(PHONE_ADDR))
    answered_outbound(net, old, phone)
    saved = saved_of(old, "leg1")
    node = new_node(net)

    first = send_in_dialog(net, phone, "OPTIONS")  # nothing expected: 481 as before
    assert [f.status for f in phone.finals if f.cseq.seq == first.cseq.seq] == [481]

    node.ep.expect_recoveries([saved.dialog_id], net.now)
    held = send_in_dialog(net, phone, "INFO")
    net.run(net.now + 10.0)
    assert not [f for f in phone.finals if f.cseq.seq == held.cseq.seq]
    node.ep.forget_recoveries([saved.dialog_id])  # the carrier knows it will not come back here
    net.run(net.now + 5.0)  # the next retransmission gets the 481
    assert [f.status for f in phone.finals if f.cseq.seq == held.cseq.seq] == [481]

    node.ep.expect_recoveries([saved.dialog_id], net.now)
    late = send_in_dialog(net, phone, "INFO")
    net.run(net.now + 40.0)  # past 64*T1 the expectation lapses and a retransmission... or none left
    third = send_in_dialog(net, phone, "OPTIONS")
    assert [f.status for f in phone.finals if f.cseq.seq == third.cseq.seq] == [481]
    assert late.cseq.seq < third.cseq.seq
    assert node.ep.state_sizes()["expected_recoveries"] == 0


def test_changes_that_a_saved_copy_holds_mark_the_leg_and_nothing_else_does() -> None:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(PHONE_ADDR))
    answered_outbound(net, node, phone)
    assert node.ep.take_changed_dialogs() == ["leg1"]
    assert node.ep.take_changed_dialogs() == []
    send_in_dialog(net, phone, "OPTIONS")  # no change of CSeq, target, route or session
    assert node.ep.take_changed_dialogs() == []
    phone.reinvite(None, version=2)  # the phone re-offers: the session changes
    net.flush()
    assert "MediaUpdated" in names(node.events)
    assert node.ep.take_changed_dialogs() == ["leg1"]
    before = saved_of(node, "leg1")
    node.ep.hangup("leg1", net.now)  # a BYE raises our CSeq, but the leg is gone once it completes
    net.flush()
    assert node.ep.take_changed_dialogs() == []
    assert before.local_seq >= 1


def test_an_encrypted_call_offers_its_suite_again_with_a_fresh_key() -> None:
    saved = SavedDialog(
        outbound=True,
        call_id="c1@x",
        local="<sip:a@x>;tag=l1",
        remote="<sip:b@y>;tag=r1",
        remote_target="sip:b@198.51.100.7:5062",
        route_set=(),
        local_seq=3,
        remote_seq=None,
        peer=PHONE_ADDR,
        origin=Origin("-", 42, 7),
        codec=Codec("PCMA", 8000, 8),
        srtp_suite=CryptoSuite.AES_CM_128_HMAC_SHA1_32,
        srtp_required=True,
        session_interval=None,
    )
    key = bytes(range(30))
    offer = recovery_offer(saved, "192.0.2.20", 32000, CODECS, key)
    audio = offer.media[0]
    assert audio.proto == "RTP/SAVP" and audio.formats[:2] == ["8", "0"]
    (crypto,) = audio.attribute_values("crypto")
    assert "AES_CM_128_HMAC_SHA1_32" in crypto
    assert (offer.origin.session_id, offer.origin.version) == (42, 8)


# --- the saved form ---------------------------------------------------------------------------------

tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
destinations = st.one_of(
    st.tuples(st.just("198.51.100.7"), st.integers(1, 65535)),
    st.builds(
        lambda port, transport, name: Target("198.51.100.7", port, transport, False, name),
        st.integers(1, 65535),
        st.sampled_from([Transport.TCP, Transport.TLS]),
        st.none(),
    ),
)
saved_dialogs = st.builds(
    SavedDialog,
    outbound=st.booleans(),
    call_id=tokens.map(lambda t: f"{t}@host"),
    local=tokens.map(lambda t: f'"Me" <sip:me@192.0.2.10>;tag={t}'),
    remote=tokens.map(lambda t: f"<sip:you@198.51.100.7:5062>;tag={t}"),
    remote_target=tokens.map(lambda t: f"sip:{t}@198.51.100.7:5062;transport=udp"),
    route_set=st.lists(tokens.map(lambda t: f"<sip:r{t}.proxy.example;lr>"), max_size=3).map(tuple),
    local_seq=st.integers(0, 2**31 - 1),
    remote_seq=st.none() | st.integers(0, 2**32 - 1),
    peer=destinations,
    origin=st.builds(Origin, tokens, st.integers(0, 2**70), st.integers(0, 2**40)),
    codec=st.sampled_from([PCMU, PCMA, Codec("PCMA", 8000, 96)]),
    srtp_suite=st.none() | st.sampled_from(list(CryptoSuite)),
    srtp_required=st.booleans(),
    session_interval=st.none() | st.integers(90, 86400),
)


@given(saved_dialogs)
def test_a_saved_dialog_reads_back_as_it_was_written(saved: SavedDialog) -> None:
    assert SavedDialog.from_json(json.loads(json.dumps(saved.to_json()))) == saved


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@given(saved_dialogs, st.sampled_from([*sorted(SavedDialog.__dataclass_fields__), "format"]), json_values)
def test_a_damaged_saved_dialog_is_refused_with_its_own_error(
    saved: SavedDialog, key: str, value: object
) -> None:
    raw = saved.to_json()
    raw[key] = value
    try:
        read = SavedDialog.from_json(raw)
    except SavedDialogError:
        return
    assert read.to_json()[key] == value  # accepted only when the value is one it could have written


def test_a_saved_dialog_of_another_format_is_refused() -> None:
    saved = SavedDialog.from_json(
        SavedDialog(
            outbound=True,
            call_id="c@h",
            local="<sip:a@h>;tag=1",
            remote="<sip:b@h>;tag=2",
            remote_target="sip:b@h",
            route_set=(),
            local_seq=1,
            remote_seq=None,
            peer=PHONE_ADDR,
            origin=Origin("-", 1, 1),
            codec=PCMU,
            srtp_suite=None,
            srtp_required=False,
            session_interval=None,
        ).to_json()
    )
    with pytest.raises(SavedDialogError, match="format"):
        SavedDialog.from_json({**saved.to_json(), "format": 2})


def test_a_released_leg_is_forgotten_without_a_word_and_the_new_owner_takes_it() -> None:
    net = Net()
    old = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(PHONE_ADDR))
    answered_outbound(net, old, phone)
    saved = saved_of(old, "leg1")
    sent_before = len(phone.requests)
    assert old.ep.forget("leg1") and not old.ep.forget("leg1")
    net.run(40.0)
    assert len(phone.requests) == sent_before  # no BYE
    assert old.events[-1].__class__.__name__ == "LegAnswered"  # and no event
    assert old.ep.state_sizes() == dict.fromkeys(old.ep.state_sizes(), 0)

    config = dataclasses.replace(make_endpoint().config, local_address=NEW_ADDR)
    node = net.add(EpNode(SipEndpoint(config, random.Random(3))))
    phone_accepts_reinvites(phone)
    node.ep.recover("leg1", saved, recovery_offer(saved, NEW_ADDR[0], 31000, CODECS, None), net.now)
    net.flush()
    assert isinstance(node.last(), LegRecovered)


NESTED_KEYS = [("peer", k) for k in ("transport", "host", "port", "tls_name")]
NESTED_KEYS += [("origin", k) for k in ("username", "session_id", "version")]
NESTED_KEYS += [("codec", k) for k in ("encoding", "clock_rate", "payload_type", "channels", "fmtp")]


@given(saved_dialogs, st.sampled_from(NESTED_KEYS), json_values)
def test_a_damaged_part_of_a_saved_dialog_is_refused_with_its_own_error(
    saved: SavedDialog, path: tuple[str, str], value: object
) -> None:
    raw = saved.to_json()
    outer, inner = path
    raw[outer] = {**raw[outer], inner: value}
    try:
        read = SavedDialog.from_json(raw)
    except SavedDialogError:
        return
    assert read.to_json()[outer][inner] == value


def test_a_dialog_reports_the_changes_a_saved_copy_holds() -> None:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(PHONE_ADDR))
    answered_outbound(net, node, phone)
    dialog = node.ep._core.legs["leg1"].dialog
    assert dialog is not None
    changes: list[int] = []
    dialog.on_change = lambda: changes.append(dialog.local_seq)
    dialog.create_request("INFO", via=node.ep._core.via())  # our CSeq moves on
    assert changes == [2]
    refresh = phone.in_dialog("UPDATE")  # the same Contact: no change of target
    assert dialog.receive_request(refresh) and changes == [2]
    moved = phone.in_dialog("UPDATE")
    moved.headers.set("Contact", "<sip:alice@198.51.100.8:5099>")  # the phone moved
    assert dialog.receive_request(moved) and len(changes) == 2  # a target refresh


def test_an_opus_call_offers_opus_first_again_with_our_parameters_and_its_number() -> None:
    from bridgeline.sip.offer_answer import OPUS

    saved = SavedDialog.from_json(
        SavedDialog(
            outbound=True,
            call_id="c@h",
            local="<sip:a@h>;tag=1",
            remote="<sip:b@h>;tag=2",
            remote_target="sip:b@h",
            route_set=(),
            local_seq=1,
            remote_seq=None,
            peer=PHONE_ADDR,
            origin=Origin("-", 1, 1),
            codec=dataclasses.replace(OPUS, payload_type=96, fmtp="useinbandfec=1"),  # as agreed
            srtp_suite=None,
            srtp_required=False,
            session_interval=None,
        ).to_json()
    )
    offer = recovery_offer(saved, "192.0.2.20", 32000, (*CODECS, OPUS), None)
    audio = offer.media[0]
    assert audio.formats[0] == "96"  # the number the call agreed on
    assert audio.rtpmap("96") == OPUS.rtpmap
    assert audio.fmtp("96") == OPUS.fmtp  # what we want to receive, not the peer's answer
    assert str(OPUS.payload_type) not in audio.formats  # offered once
