"""Behind NAT: with a `public_address`, our requests and answers say it (Via sent-by, Contact) while
the endpoint is still reached at, and sends from, its local address; calls work both ways."""

from __future__ import annotations

import random

from test_sip_endpoint import (
    ACCOUNTS,
    DOMAIN,
    EP_ADDR,
    TRUNK,
    EpNode,
    Net,
    Phone,
    answered_inbound,
    answered_outbound,
)

from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import EndpointConfig, LegEnded

PUBLIC = ("198.51.100.7", 15060)


def behind_nat() -> tuple[Net, EpNode, Phone]:
    config = EndpointConfig(EP_ADDR, DOMAIN, accounts=ACCOUNTS, trunk=TRUNK, public_address=PUBLIC)
    net = Net()
    node = net.add(EpNode(SipEndpoint(config, random.Random(5))))
    phone = net.add(Phone(("198.51.100.20", 5062), "alice"))
    return net, node, phone


def test_an_outbound_call_says_the_public_address_and_completes() -> None:
    net, node, phone = behind_nat()
    answered_outbound(net, node, phone)
    invite = phone.requests[0]
    assert (invite.top_via.host, invite.top_via.port) == PUBLIC
    assert str(invite.contacts[0].uri) == "sip:bridgeline@198.51.100.7:15060"
    assert [src for _, src, _, _ in net.sent if src != phone.addr] == [
        EP_ADDR
    ] * 2  # INVITE, ACK: sent locally
    phone.in_dialog("BYE")
    net.flush()
    assert isinstance(node.last(), LegEnded)


def test_an_answered_inbound_call_gives_the_public_contact() -> None:
    net, node, phone = behind_nat()
    answered_inbound(net, node, phone)
    ok = next(r for r in phone.finals if r.status == 200 and r.cseq.method == "INVITE")
    assert str(ok.contacts[0].uri) == "sip:bridgeline@198.51.100.7:15060"
    assert phone.dialog is not None and str(phone.dialog.remote_target) == "sip:bridgeline@198.51.100.7:15060"
