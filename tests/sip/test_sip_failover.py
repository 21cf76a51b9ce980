"""RFC 3263 4.3 failover of outbound INVITEs across the servers `dial` is given: on a 503, a
transaction timeout (or a shorter no-response wait), or a transport error, the same call goes to
the next server as a new transaction; bounded, and never after our own hangup."""

from __future__ import annotations

import random

from test_sip_endpoint import EP_ADDR, TRUNK, EpNode, Net, Phone, assert_idle, ep_offer

from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import (
    EndpointConfig,
    FailoverPolicy,
    FailReason,
    LegAnswered,
    LegFailed,
    TargetLookupNeeded,
    TrunkConfig,
)
from bridgeline.sip.message import Request
from bridgeline.sip.redirect import RedirectPolicy, parse_allowed_targets
from bridgeline.sip.transaction import Address, Destination
from bridgeline.sip.uri import SipURI

FIRST: Address = ("198.51.100.7", 5062)
SECOND: Address = ("198.51.100.8", 5064)
THIRD: Address = ("198.51.100.9", 5066)
TARGETS: list[Destination] = [FIRST, SECOND, THIRD]
# A trunk named by host: the endpoint never sends to the name, only to the located servers.
NAMED_TRUNK = TrunkConfig(("sip.trunk.example", 5060), "trunk.example", "bridgeuser", "trunkpass")


def start(
    *,
    failover: FailoverPolicy | None = None,
    trunk: TrunkConfig = TRUNK,
    targets: list[Destination] = TARGETS,
) -> tuple[Net, EpNode, list[Phone]]:
    net = Net()
    redirects = RedirectPolicy(allowed_targets=parse_allowed_targets(["trunk.example", "elsewhere.example"]))
    failover = failover or FailoverPolicy()
    config = EndpointConfig(EP_ADDR, "bridge.example", trunk=trunk, failover=failover, redirects=redirects)
    node = net.add(EpNode(SipEndpoint(config, random.Random(3))))
    phones = [
        net.add(Phone(addr, name)) for addr, name in ((FIRST, "first"), (SECOND, "second"), (THIRD, "third"))
    ]
    node.ep.dial("leg1", "+14155550100", caller_id=None, offer_sdp=ep_offer(), now=0.0, destinations=targets)
    net.flush()
    return net, node, phones


def pending(phone: Phone) -> Request:
    assert phone.pending is not None, f"{phone.user} has no INVITE waiting"
    return phone.pending


def test_a_503_sends_the_same_call_to_the_next_server() -> None:
    net, node, (first, second, third) = start()
    original = pending(first)
    first.respond(original, 503)
    net.flush()
    retry = pending(second)
    assert str(retry.uri) == "sip:+14155550100@trunk.example"  # the same Request-URI
    assert retry.call_id == original.call_id and retry.from_addr == original.from_addr
    assert retry.to_addr == original.to_addr
    assert retry.cseq.seq == original.cseq.seq + 1 and retry.top_via.branch != original.top_via.branch
    second.answer()
    net.flush()
    assert isinstance(node.last(), LegAnswered)
    assert third.requests == []
    assert node.ep.stats["failovers"] == 1 and node.ep.stats["failovers.503"] == 1
    assert node.ep.hangup("leg1", net.now)
    net.flush()
    assert [r.method for r in second.requests] == ["INVITE", "BYE"]
    assert_idle(net, node)


def test_other_failures_do_not_fail_over() -> None:
    net, node, (first, second, _) = start()
    first.respond(pending(first), 486)
    net.flush()
    assert node.last() == LegFailed("leg1", 486, FailReason.BUSY)
    assert second.requests == []
    assert_idle(net, node)


def test_a_server_that_never_answers_is_left_after_timer_b() -> None:
    net, node, (first, second, _) = start()
    net.nodes.pop(FIRST)  # nothing listens there
    net.run(31.0)
    assert second.requests == []
    net.run(33.0)  # Timer B: 64 * T1
    pending(second)
    assert node.ep.stats["failovers.timeout"] == 1
    second.answer()
    net.flush()
    assert isinstance(node.last(), LegAnswered)
    del first


def test_the_no_response_wait_moves_on_sooner_and_stops_the_retransmissions() -> None:
    net, node, (_, _, third) = start(failover=FailoverPolicy(no_response_s=2.0))
    for address in (FIRST, SECOND):
        net.nodes.pop(address)  # nothing listens at the first two

    def invites_to(address: Address) -> list[float]:
        return [at for at, _, dst, line in net.sent if dst == address and line.startswith("INVITE")]

    net.run(1.9)
    assert invites_to(SECOND) == []
    net.run(2.1)
    assert invites_to(SECOND) == [2.0]
    net.run(4.1)
    pending(third)
    net.run(10.0)
    assert max(invites_to(FIRST)) < 2.0 and max(invites_to(SECOND)) < 4.0  # retransmissions stopped
    third.respond(pending(third), 180)  # alive: the wait no longer applies, the ring timeout does
    net.run(60.0)
    assert node.events[-1].__class__.__name__ == "LegRinging"
    assert node.ep.stats["failovers.no_response"] == 2
    third.answer()
    net.flush()
    assert isinstance(node.last(), LegAnswered)


def test_the_no_response_wait_does_not_apply_to_the_last_server() -> None:
    net, node, _ = start(failover=FailoverPolicy(no_response_s=2.0), targets=TARGETS[:1])
    net.nodes.pop(FIRST)
    net.run(10.0)
    assert node.events == []
    net.run(40.0)
    assert node.events == [LegFailed("leg1", 408, FailReason.FAILED)]
    assert_idle(net, node)


def test_a_transport_error_moves_on_and_fails_the_leg_when_none_is_left() -> None:
    net, node, (first, second, _) = start(targets=TARGETS[:2])
    node.ep.transport_failed(FIRST, net.now)
    net.flush()
    pending(second)
    node.ep.transport_failed(SECOND, net.now)
    net.flush()
    assert node.last() == LegFailed("leg1", 503, FailReason.UNREACHABLE)
    assert node.ep.stats["failovers.transport_error"] == 1
    assert_idle(net, node)
    del first


def test_a_transport_error_after_a_provisional_does_not_fail_over() -> None:
    """The server answered, so it is not skipped; but the INVITE's transaction ended with the
    transport (17.1.4), and the leg with it, at once."""
    net, node, (first, second, _) = start()
    first.respond(pending(first), 180)
    net.flush()
    node.ep.transport_failed(FIRST, net.now)
    net.flush()
    assert second.requests == [] and node.ep.stats["failovers"] == 0
    assert node.last() == LegFailed("leg1", 503, FailReason.UNREACHABLE)


def test_failovers_are_bounded_by_the_setting() -> None:
    net, node, (first, second, third) = start(failover=FailoverPolicy(max_failovers=1))
    first.respond(pending(first), 503)
    net.flush()
    second.respond(pending(second), 503)
    net.flush()
    assert node.last() == LegFailed("leg1", 503, FailReason.FAILED)
    assert third.requests == [] and node.ep.stats["failover_limit_reached"] == 1
    assert_idle(net, node)


def test_no_failover_after_our_hangup() -> None:
    net, node, (first, second, _) = start(failover=FailoverPolicy(no_response_s=2.0))
    net.nodes.pop(FIRST)
    assert node.ep.hangup("leg1", 0.5)  # before any provisional: the CANCEL waits for one
    net.run(40.0)
    assert second.requests == []
    assert node.events == [LegFailed("leg1", 408, FailReason.CANCELLED)]
    assert_idle(net, node)
    del first


def test_credentials_are_answered_afresh_at_the_next_server() -> None:
    net, _, (first, second, _) = start(trunk=NAMED_TRUNK)
    first.respond(pending(first), 407, headers=[("Proxy-Authenticate", 'Digest realm="t", nonce="n1"')])
    net.flush()
    assert pending(first).headers.get("Proxy-Authorization") is not None
    first.respond(pending(first), 503)
    net.flush()
    retry = pending(second)
    assert retry.headers.get("Proxy-Authorization") is None  # the nonce was the first server's
    second.respond(retry, 407, headers=[("Proxy-Authenticate", 'Digest realm="t", nonce="n2"')])
    net.flush()
    assert 'nonce="n2"' in (pending(second).headers.get("Proxy-Authorization") or "")
    assert all(dst != ("sip.trunk.example", 5060) for _, _, dst, _ in net.sent)


def test_a_redirect_to_the_trunk_domain_uses_the_located_servers() -> None:
    net, node, (first, second, third) = start(trunk=NAMED_TRUNK, targets=TARGETS[:2])
    outside = net.add(Phone(("192.0.2.50", 5070), "outside"))
    first.respond(pending(first), 302, headers=[("Contact", "<sip:+14155550199@trunk.example>")])
    net.flush()
    again = pending(first)  # the trunk's first server, with the new Request-URI
    assert str(again.uri) == "sip:+14155550199@trunk.example"
    first.respond(again, 503)
    net.flush()
    assert str(pending(second).uri) == "sip:+14155550199@trunk.example"
    second.respond(pending(second), 302, headers=[("Contact", "<sip:x@elsewhere.example:5070>")])
    net.flush()
    # A host name in a Contact: the endpoint does no DNS, it asks (the carrier answers, below).
    assert node.last() == TargetLookupNeeded("leg1", SipURI("elsewhere.example", "x", port=5070))
    node.ep.resume_redirect("leg1", [], net.now)  # nothing found
    net.flush()
    assert node.last() == LegFailed("leg1", 302, FailReason.FAILED)
    assert node.ep.stats["redirect_targets_unresolved"] == 1
    assert outside.requests == [] and third.requests == []
    assert_idle(net, node)


def redirected_to_a_name() -> tuple[Net, EpNode, Phone, Phone, Request]:
    net, node, (first, _, third) = start(targets=TARGETS[:1])
    original = pending(first)
    first.respond(original, 302, headers=[("Contact", "<sip:x@elsewhere.example>")])
    net.flush()
    assert node.last() == TargetLookupNeeded("leg1", SipURI("elsewhere.example", "x"))
    return net, node, first, third, original


def test_a_redirect_to_a_name_is_called_at_the_servers_found() -> None:
    net, node, first, third, original = redirected_to_a_name()
    node.ep.resume_redirect("leg1", [THIRD, SECOND], net.now)
    net.flush()
    invite = pending(third)
    assert str(invite.uri) == "sip:x@elsewhere.example"  # the name stays in the Request-URI
    assert invite.call_id == original.call_id and invite.cseq.seq == original.cseq.seq + 1
    assert invite.headers.get("Proxy-Authorization") is None and node.ep.stats["redirects_followed"] == 1
    third.respond(invite, 503)  # and the servers found fail over like any others
    net.flush()
    assert node.ep.stats["failovers.503"] == 1
    node.ep.resume_redirect("leg1", [THIRD], net.now)  # a late answer changes nothing
    net.flush()
    assert len(third.requests) == 1 and first.requests == [original]


def test_a_hangup_while_the_redirect_is_looked_up_ends_the_leg_at_once() -> None:
    net, node, _, third, _ = redirected_to_a_name()
    assert node.ep.hangup("leg1", net.now)
    net.flush()
    assert node.last() == LegFailed("leg1", 487, FailReason.CANCELLED)
    node.ep.resume_redirect("leg1", [THIRD], net.now)  # the lookup ends after: ignored
    net.flush()
    assert third.requests == []
    assert_idle(net, node)


def test_without_destinations_the_uri_host_is_used_as_before() -> None:
    net = Net()
    node = net.add(EpNode(SipEndpoint(EndpointConfig(EP_ADDR, "bridge.example"), random.Random(3))))
    phone = net.add(Phone(FIRST, "first"))
    node.ep.dial(
        "leg1", SipURI(FIRST[0], user="first", port=FIRST[1]), caller_id=None, offer_sdp=ep_offer(), now=0
    )
    net.flush()
    assert phone.pending is not None
