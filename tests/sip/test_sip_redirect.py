"""3xx redirects of our INVITEs (RFC 3261 8.1.3.4): the target rules of `redirect_targets`, and the
endpoint following them with a new INVITE per target, bounded, allow-listed and loop-free."""

from __future__ import annotations

import random

import pytest
from test_sip_endpoint import EP_ADDR, TRUNK, TRUNK_ADDR, EpNode, Net, Phone, assert_idle, ep_offer

from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import EndpointConfig, FailReason, LegAnswered, LegFailed, LegRinging
from bridgeline.sip.headers import NameAddress, parse_name_address
from bridgeline.sip.message import Request
from bridgeline.sip.redirect import RedirectPolicy, parse_allowed_targets, redirect_targets, target_key
from bridgeline.sip.transaction import Address
from bridgeline.sip.uri import SipURI

FIRST: Address = ("198.51.100.7", 5062)
SECOND: Address = ("198.51.100.8", 5064)
THIRD: Address = ("198.51.100.9", 5066)
ELSEWHERE: Address = ("192.0.2.66", 5060)
POLICY = RedirectPolicy(
    allowed_targets=parse_allowed_targets(["198.51.100.7", "198.51.100.8", "198.51.100.9"])
)


def contacts(*texts: str) -> list[NameAddress]:
    return [parse_name_address(t) for t in texts]


def uris(found: list[SipURI]) -> list[str]:
    return [str(u) for u in found]


# --- the rules, pure -------------------------------------------------------------------------------


def test_targets_are_ordered_by_q_then_as_given() -> None:
    found = redirect_targets(
        contacts(
            "<sip:a@198.51.100.7>;q=0.2",
            "<sip:b@198.51.100.8>",  # no q: 1.0
            "<sip:c@198.51.100.9>;q=0.7",
            "<sip:d@198.51.100.7>;q=0.7",
        ),
        POLICY,
        (),
    )
    assert uris(found.usable) == [
        "sip:b@198.51.100.8",
        "sip:c@198.51.100.9",
        "sip:d@198.51.100.7",
        "sip:a@198.51.100.7",
    ]
    assert found.refused == 0


def test_a_target_already_tried_or_repeated_is_a_loop() -> None:
    tried = {target_key(SipURI("198.51.100.7", user="a", port=5060))}
    found = redirect_targets(
        contacts("<sip:a@198.51.100.7;transport=udp>", "<sip:b@198.51.100.8>", "<sip:b@198.51.100.8:5060>"),
        POLICY,
        tried,
    )
    assert uris(found.usable) == ["sip:b@198.51.100.8"]
    assert found.refused == 2


def test_only_allowed_hosts_and_ports() -> None:
    policy = RedirectPolicy(
        allowed_targets=parse_allowed_targets(["Trunk.Example", "198.51.100.8:5070", "[::1]"])
    )
    found = redirect_targets(
        contacts(
            "<sip:a@trunk.example:5099>",  # host entry: any port
            "<sip:b@198.51.100.8:5070>",
            "<sip:c@198.51.100.8>",  # 5060 is not the allowed port
            "<sip:d@evil.example>",
            "<sip:e@[::1]:5080>",
        ),
        policy,
        (),
    )
    assert uris(found.usable) == ["sip:a@trunk.example:5099", "sip:b@198.51.100.8:5070", "sip:e@[::1]:5080"]
    assert found.refused == 2
    assert redirect_targets(contacts("<sip:a@198.51.100.7>"), RedirectPolicy(), ()).usable == []
    with pytest.raises(ValueError, match="host"):
        parse_allowed_targets(["host:port:junk"])


def test_only_sip_scheme_targets() -> None:
    found = redirect_targets(
        contacts(
            "<tel:+14155550100>", "<sips:a@198.51.100.7>", "<mailto:a@198.51.100.7>", "<sip:b@198.51.100.7>"
        ),
        POLICY,
        (),
    )
    assert uris(found.usable) == ["sip:b@198.51.100.7"]
    assert found.refused == 3


def test_uri_headers_and_method_are_not_carried_into_the_request() -> None:
    found = redirect_targets(contacts("<sip:a@198.51.100.7;method=BYE;user=phone?Subject=x>"), POLICY, ())
    assert uris(found.usable) == ["sip:a@198.51.100.7;user=phone"]


# --- the endpoint following them ----------------------------------------------------------------------


def make_endpoint(policy: RedirectPolicy = POLICY) -> SipEndpoint:
    config = EndpointConfig(EP_ADDR, "bridge.example", trunk=TRUNK, redirects=policy)
    return SipEndpoint(config, random.Random(3))


def setup(policy: RedirectPolicy = POLICY) -> tuple[Net, EpNode, Phone, Phone, Phone]:
    net = Net()
    node = net.add(EpNode(make_endpoint(policy)))
    phones = [
        net.add(Phone(addr, user)) for addr, user in ((FIRST, "first"), (SECOND, "second"), (THIRD, "third"))
    ]
    node.ep.dial("leg1", phones[0].uri, caller_id="+14155550000", offer_sdp=ep_offer(), now=0.0)
    net.flush()
    return net, node, phones[0], phones[1], phones[2]


def pending(phone: Phone) -> Request:
    assert phone.pending is not None, f"{phone.user} has no INVITE waiting"
    return phone.pending


def redirect(phone: Phone, status: int, *targets: str) -> Request:
    invite = pending(phone)
    phone.respond(invite, status, headers=[("Contact", t) for t in targets])
    return invite


def test_302_is_followed_with_a_new_invite_in_the_same_call() -> None:
    net, node, first, second, _ = setup()
    first.respond(pending(first), 180)
    original = redirect(first, 302, "<sip:second@198.51.100.8:5064>")
    net.flush()
    assert first.acks == [] and net.lines(EP_ADDR)[-2].startswith("ACK")  # the 302 was ACKed
    follow = second.pending
    assert follow is not None
    assert str(follow.uri) == "sip:second@198.51.100.8:5064"
    assert follow.call_id == original.call_id and follow.from_addr == original.from_addr
    assert follow.to_addr == original.to_addr
    assert follow.cseq.seq == original.cseq.seq + 1 and follow.top_via.branch != original.top_via.branch
    assert follow.body == original.body
    second.answer()
    net.flush()
    assert [type(e).__name__ for e in node.events] == ["LegRinging", "LegAnswered"]
    assert node.ep.stats["redirects_followed"] == 1
    assert node.ep.hangup("leg1", net.now)  # the dialog is with the second phone
    net.flush()
    assert [r.method for r in second.requests] == ["INVITE", "BYE"]
    assert_idle(net, node)


def test_300_contacts_are_tried_in_q_order_until_one_answers() -> None:
    net, node, first, second, third = setup()
    redirect(first, 300, "<sip:second@198.51.100.8:5064>;q=0.5", "<sip:third@198.51.100.9:5066>;q=0.9")
    net.flush()
    assert second.pending is None and third.pending is not None
    third.respond(pending(third), 486)
    net.flush()
    assert str(pending(second).uri) == "sip:second@198.51.100.8:5064"  # the next contact of the 300
    second.answer()
    net.flush()
    assert isinstance(node.last(), LegAnswered)
    assert node.ep.stats["redirects_followed"] == 2


def test_redirect_loop_back_to_a_tried_target_is_not_followed() -> None:
    net, node, first, second, _ = setup()
    redirect(first, 302, "<sip:second@198.51.100.8:5064>")
    net.flush()
    redirect(second, 302, "<sip:first@198.51.100.7:5062>", "<sip:second@198.51.100.8:5064;transport=udp>")
    net.flush()
    assert node.last() == LegFailed("leg1", 302, FailReason.FAILED)
    assert [r.method for r in first.requests] == [
        "INVITE"
    ]  # never called twice (ACKs stay in the transaction)
    # Each phone also lists its own Contact (a target already tried): 1 + 3 refusals.
    assert node.ep.stats["redirect_targets_refused"] == 4
    assert_idle(net, node)


def test_at_most_max_redirects_per_leg() -> None:
    net, node, first, second, third = setup(RedirectPolicy(2, POLICY.allowed_targets))
    redirect(first, 302, "<sip:second@198.51.100.8:5064>")
    net.flush()
    redirect(second, 302, "<sip:third@198.51.100.9:5066>")
    net.flush()
    redirect(third, 302, "<sip:other@198.51.100.7:5062>")
    net.flush()
    assert node.last() == LegFailed("leg1", 302, FailReason.FAILED)
    assert [r.method for r in first.requests] == ["INVITE"]
    assert node.ep.stats["redirects_followed"] == 2 and node.ep.stats["redirect_limit_reached"] == 1
    assert_idle(net, node)


def test_a_disallowed_target_is_not_called() -> None:
    net, node, first, _, _ = setup()
    stranger = net.add(Phone(ELSEWHERE, "stranger"))
    redirect(first, 302, "<sip:stranger@192.0.2.66:5060>")
    net.flush()
    assert node.last() == LegFailed("leg1", 302, FailReason.FAILED)
    assert stranger.requests == []
    assert_idle(net, node)


@pytest.mark.parametrize("status", [305, 380])
def test_use_proxy_and_alternative_service_are_not_followed(status: int) -> None:
    net, node, first, second, _ = setup()
    redirect(first, status, "<sip:second@198.51.100.8:5064>")
    net.flush()
    assert node.last() == LegFailed("leg1", status, FailReason.FAILED)
    assert second.requests == []
    assert node.ep.stats["redirects_not_followed"] == 1
    assert_idle(net, node)


def test_a_6xx_from_a_redirected_target_ends_the_search() -> None:
    net, node, first, second, third = setup()
    redirect(first, 300, "<sip:second@198.51.100.8:5064>;q=0.9", "<sip:third@198.51.100.9:5066>;q=0.5")
    net.flush()
    second.respond(pending(second), 603)
    net.flush()
    assert node.last() == LegFailed("leg1", 603, FailReason.REJECTED)
    assert third.requests == []


def test_hangup_while_redirected_target_rings_cancels_it() -> None:
    net, node, first, second, _ = setup()
    redirect(first, 302, "<sip:second@198.51.100.8:5064>")
    net.flush()
    second.respond(pending(second), 180)
    net.flush()
    assert isinstance(node.last(), LegRinging)
    assert node.ep.hangup("leg1", net.now)
    net.flush()
    assert [r.method for r in second.requests] == ["INVITE", "CANCEL"]
    assert node.last() == LegFailed("leg1", 487, FailReason.CANCELLED)
    assert_idle(net, node)


def test_trunk_redirect_to_its_domain_goes_through_the_proxy_with_credentials() -> None:
    policy = RedirectPolicy(allowed_targets=parse_allowed_targets(["trunk.example"]))
    net = Net()
    node = net.add(EpNode(make_endpoint(policy)))
    trunk = net.add(Phone(TRUNK_ADDR, "trunk"))
    node.ep.dial("leg1", "+14155551234", caller_id=None, offer_sdp=ep_offer(), now=0.0)
    net.flush()
    redirect(trunk, 302, "<sip:+14155559999@trunk.example>")
    net.flush()
    follow = trunk.pending
    assert follow is not None and str(follow.uri) == "sip:+14155559999@trunk.example"
    assert node.ep.stats["redirects_followed"] == 1
