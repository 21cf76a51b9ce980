"""Leg deadlines (ring timeout, CANCEL give-up) in their heap: moved, cancelled and expired
deadlines are honoured exactly on the virtual clock, without scanning the legs."""

from __future__ import annotations

import random

from test_sip_endpoint import ACCOUNTS, DOMAIN, EP_ADDR, PHONE_ADDR, EpNode, Net, Phone, answered_inbound

from bridgeline.sip.call_leg import CallLeg, LegState
from bridgeline.sip.digest import DigestAuth
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import EndpointConfig, EndReason, IncomingCall, LegEnded
from bridgeline.sip.headers import NameAddress, Via
from bridgeline.sip.leg_timers import LegDeadlines
from bridgeline.sip.message import make_request
from bridgeline.sip.syntax import Params
from bridgeline.sip.transaction import TransactionKey
from bridgeline.sip.uri import SipURI

RING = 5.0


def make_leg(legs: dict[str, CallLeg], leg_id: str) -> CallLeg:
    bob = NameAddress(SipURI("example.com", user="bob"))
    via = Via("UDP", "192.0.2.10", 5060, Params([("branch", "z9hG4bK" + leg_id)]))
    invite = make_request("INVITE", bob.uri, via=via, from_addr=bob, to_addr=bob, call_id=leg_id, cseq=1)
    key = TransactionKey("z9hG4bK" + leg_id, "INVITE")
    legs[leg_id] = leg = CallLeg(leg_id, True, invite, key, PHONE_ADDR, "tag", LegState.CALLING)
    return leg


def test_moved_cancelled_and_dropped_deadlines_are_honoured() -> None:
    legs: dict[str, CallLeg] = {}
    deadlines = LegDeadlines(legs)
    a, b, c = (make_leg(legs, name) for name in "abc")
    deadlines.arm(a, 10.0)
    deadlines.arm(b, 20.0)
    deadlines.arm(c, 5.0)
    assert deadlines.get_timer() == 5.0
    deadlines.arm(c, None)  # cancelled
    assert deadlines.get_timer() == 10.0
    deadlines.arm(a, 30.0)  # moved later
    assert deadlines.get_timer() == 20.0
    deadlines.arm(a, 15.0)  # and earlier again
    assert deadlines.get_timer() == 15.0
    del legs["a"]  # the leg ended: its deadline goes with it
    assert deadlines.get_timer() == 20.0
    assert deadlines.pop_due(19.999) is None
    assert deadlines.pop_due(20.0) is b
    assert deadlines.pop_due(20.0) is None
    assert deadlines.get_timer() is None


def test_due_is_earliest_first_and_once_per_leg() -> None:
    legs: dict[str, CallLeg] = {}
    deadlines = LegDeadlines(legs)
    a, b = make_leg(legs, "a"), make_leg(legs, "b")
    deadlines.arm(a, 3.0)
    deadlines.arm(a, 3.0)  # armed twice at the same time: still one expiry
    deadlines.arm(b, 2.0)
    assert [deadlines.pop_due(4.0) for _ in range(3)] == [b, a, None]
    assert deadlines.get_timer() is None


def test_stale_entries_are_compacted() -> None:
    legs: dict[str, CallLeg] = {}
    deadlines = LegDeadlines(legs)
    leg = make_leg(legs, "a")
    for step in range(1000):
        deadlines.arm(leg, 1000.0 - step)  # each move leaves a stale entry behind
    assert len(deadlines) <= 64 + 1
    assert deadlines.get_timer() == 1.0


def ring_setup() -> tuple[Net, EpNode, Phone]:
    config = EndpointConfig(
        EP_ADDR, DOMAIN, user_agent="Bridgeline/test", accounts=ACCOUNTS, incoming_timeout=RING
    )
    net = Net()
    node = net.add(EpNode(SipEndpoint(config, random.Random(1))))
    return net, node, net.add(Phone(PHONE_ADDR))


def test_ring_timeout_expires_exactly_at_its_deadline() -> None:
    net, node, phone = ring_setup()
    phone.call("sip:+14155551234@bridge.example", auth=DigestAuth("alice", "wonderland", phone.rng))
    net.flush()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall)
    assert node.ep.get_timer() is not None and node.ep.get_timer() <= RING
    net.run(RING - 1e-6)
    assert node.last() == incoming and node.ep.state_sizes()["legs"] == 1
    net.run(RING)
    assert node.last() == LegEnded(incoming.leg_id, EndReason.TIMEOUT)
    assert phone.finals[-1].status == 480


def test_answered_call_disarms_its_ring_timeout() -> None:
    net, node, phone = ring_setup()
    incoming = answered_inbound(net, node, phone)
    net.run(RING * 4)
    assert node.last() == incoming
    assert node.ep.state_sizes()["legs"] == 1
    assert node.ep.stats["internal_errors"] == 0
