"""SRTP through the endpoint: an encrypted call stays encrypted across re-INVITEs (a plain re-offer
gets 488 with a Warning saying why, a renewed peer key reaches MediaUpdated), and an outbound call
whose answer leaves out the keys our RTP/SAVP offer required is ended with a BYE."""

from __future__ import annotations

import random

from test_sip_endpoint import EP_ADDR, EpNode, Net, Phone, assert_idle, make_endpoint, names, setup

from bridgeline.sip.digest import DigestAuth
from bridgeline.sip.events import IncomingCall, LegFailed, MediaUpdated
from bridgeline.sip.offer_answer import answer_offer, make_offer
from bridgeline.sip.sdes import SrtpConfig, SrtpPolicy, crypto_lines, fresh_config
from bridgeline.sip.sdp import parse_sdp

_rng = random.Random(5)


def required() -> SrtpConfig:
    return fresh_config(SrtpPolicy.REQUIRED, _rng.randbytes)


def encrypted_inbound(net: Net, node: EpNode, phone: Phone) -> tuple[IncomingCall, SrtpConfig]:
    phone_keys = required()
    offer = make_offer(phone.addr[0], 4000, 5, 1, srtp=phone_keys)
    phone.call(
        "sip:+14155551234@bridge.example", auth=DigestAuth("alice", "wonderland", phone.rng), sdp=offer
    )
    net.flush()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall) and incoming.offer is not None
    answer, media = answer_offer(incoming.offer, EP_ADDR[0], 30002, 9, 1, srtp=required())
    assert media.srtp is not None
    assert node.ep.answer_incoming(incoming.leg_id, answer, net.now)
    net.flush()
    return incoming, phone_keys


def test_a_plain_reoffer_on_an_encrypted_call_is_refused_and_the_call_goes_on() -> None:
    net, node, phone = setup()
    incoming, _ = encrypted_inbound(net, node, phone)
    phone.in_dialog("INVITE", bytes(make_offer(phone.addr[0], 4000, 5, 2)))
    net.flush()
    refused = phone.finals[-1]
    assert refused.status == 488
    assert "SRTP is required" in (refused.headers.get("Warning") or ""), refused
    assert names(node.events).count("MediaUpdated") == 0

    renewed = required()
    phone.in_dialog("INVITE", bytes(make_offer(phone.addr[0], 4000, 5, 3, srtp=renewed)))
    net.flush()
    ok = phone.finals[-1]
    assert ok.status == 200
    answer = parse_sdp(ok.body)
    assert answer.media[0].proto == "RTP/SAVP"
    update = node.last()
    assert isinstance(update, MediaUpdated) and update.leg_id == incoming.leg_id
    assert update.media.srtp is not None and update.media.srtp.remote_key == renewed.keys[0]
    assert [c.key for c in crypto_lines(answer.media[0].attribute_values("crypto"))] == [
        update.media.srtp.local_key
    ]
    node.ep.hangup(incoming.leg_id, net.now)
    net.flush()
    assert_idle(net, node)


def test_an_answer_without_the_required_keys_ends_the_outbound_call() -> None:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(("198.51.100.7", 5060)))
    offer = make_offer(EP_ADDR[0], 30000, 1, 1, srtp=required())
    node.ep.dial("leg1", phone.uri, caller_id="+14155550000", offer_sdp=offer, now=net.now)
    net.flush()
    assert phone.pending is not None
    plain = b"v=0\r\no=- 5 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
    phone.respond(phone.pending, 200, plain + b"m=audio 4000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    net.flush()
    failed = node.last()
    assert isinstance(failed, LegFailed) and failed.status == 488, node.events
    bye = phone.requests[-1]
    assert bye.method == "BYE"
    assert 'cause=488;text="SRTP is required' in (bye.headers.get("Reason") or ""), bye
    assert_idle(net, node)
