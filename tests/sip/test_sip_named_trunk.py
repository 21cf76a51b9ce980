"""A trunk proxy named by host: INVITEs from the hosts of its located servers are the trunk's
(trusted like the proxy's own host when it is an address); other hosts still authenticate, and a
name that stops resolving keeps the servers last located trusted."""

from __future__ import annotations

from dataclasses import replace

from test_sip_endpoint import TRUNK, EpNode, Net, Phone, assert_idle, make_endpoint, statuses

from bridgeline.sip.events import IncomingCall

SERVER = ("203.0.113.21", 5060)
STRANGER = ("198.51.100.40", 5060)


def test_invites_from_a_located_server_of_a_named_trunk_are_trusted_and_others_are_not() -> None:
    net = Net()
    node = net.add(EpNode(make_endpoint(trunk=replace(TRUNK, proxy=("trunk.example", 5060)))))
    trunk = net.add(Phone((SERVER[0], 5090), "+14155559999"))  # its host, another port
    stranger = net.add(Phone(STRANGER, "+14155558888"))

    trunk.call("sip:+14155551234@192.0.2.10")  # not located yet: the name alone trusts nobody
    net.flush()
    assert statuses(trunk.finals) == [407] and node.events == []

    node.ep.set_trunk_servers([SERVER], net.now)
    trunk.call("sip:+14155551234@192.0.2.10")
    stranger.call("sip:+14155551234@192.0.2.10")
    net.flush()
    calls = [e for e in node.events if isinstance(e, IncomingCall)]
    assert len(calls) == 1 and calls[0].account is None and calls[0].source[0] == SERVER[0]
    assert statuses(stranger.finals) == [407]

    node.ep.set_trunk_servers([], net.now)  # the name stopped resolving: still the trunk's host
    trunk.call("sip:+14155551235@192.0.2.10")
    net.flush()
    calls = [e for e in node.events if isinstance(e, IncomingCall)]
    assert len(calls) == 2
    for call in calls:
        node.ep.reject_incoming(call.leg_id, 486, net.now)
    net.flush()
    assert_idle(net, node)
