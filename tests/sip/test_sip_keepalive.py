"""OPTIONS keepalive of the trunk proxy on a virtual clock: pings every interval, a miss per ping
unanswered in time, down after N misses in a row, up at the next answer, each change reported once."""

from __future__ import annotations

import random
from dataclasses import replace

from test_sip_endpoint import ACCOUNTS, DOMAIN, EP_ADDR, TRUNK, TRUNK_ADDR, EpNode, Net, Phone, names

from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import EndpointConfig, TrunkStatus
from bridgeline.sip.message import make_response
from bridgeline.sip.transaction import RequestReceived


def trunk_and_endpoint(
    interval: float = 30.0, timeout: float = 5.0, down_after: int = 2
) -> tuple[Net, EpNode, list[int], list[float]]:
    """The endpoint with a keepalive trunk; `answering[0]`: the status the trunk answers OPTIONS with
    (0: silence); and the times it received one."""
    trunk = replace(
        TRUNK, keepalive_interval=interval, keepalive_timeout=timeout, keepalive_down_after=down_after
    )
    config = EndpointConfig(EP_ADDR, DOMAIN, accounts=ACCOUNTS, trunk=trunk)
    net = Net()
    node = net.add(EpNode(SipEndpoint(config, random.Random(3))))
    phone = net.add(Phone(TRUNK_ADDR, "trunk"))
    answering = [200]
    pinged: list[float] = []

    def on_request(event: RequestReceived) -> bool:
        if event.request.method != "OPTIONS":
            return False
        pinged.append(net.now)
        status = answering[0]
        if status:
            phone.tl.send_response(make_response(event.request, status, to_tag="t"), net.now)
        return True

    phone.on_request = on_request
    return net, node, answering, pinged


def test_pings_at_once_then_every_interval_and_stays_up_while_answered() -> None:
    net, node, _answering, pinged = trunk_and_endpoint()
    net.run(100.0)
    assert pinged == [0.0, 30.0, 60.0, 90.0]
    assert node.ep.trunk_up and node.events == []
    assert node.ep.stats["trunk_keepalives_answered"] == 4
    options = [line for line in net.lines(EP_ADDR) if line.startswith("OPTIONS")]
    assert options == ["OPTIONS sip:trunk.example SIP/2.0"] * 4


def test_down_after_n_misses_in_a_row_and_up_at_the_next_answer_each_reported_once() -> None:
    net, node, answering, pinged = trunk_and_endpoint(down_after=2)
    net.run(10.0)
    answering[0] = 0  # it stops answering: the pings at 30 and 60 miss
    net.run(64.0)
    assert node.ep.trunk_up and node.events == []  # one miss (35 s); the second is due at 65 s
    net.run(66.0)
    assert node.events == [TrunkStatus(up=False, misses=2)] and not node.ep.trunk_up
    net.run(150.0)
    assert names(node.events) == ["TrunkStatus"]  # still down: not reported again
    assert node.ep.stats["trunk_keepalives_missed"] == 4  # 30, 60, 90, 120
    answering[0] = 404  # any final answer shows the proxy is there
    net.run(181.0)
    assert node.events[-1] == TrunkStatus(up=True, misses=0) and node.ep.trunk_up
    assert pinged == [0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0]
    assert node.ep.state_sizes()["keepalive_pings"] <= 2  # finished pings are forgotten


def test_one_miss_below_the_threshold_is_forgiven_by_an_answer() -> None:
    net, node, answering, _ = trunk_and_endpoint(down_after=2)
    answering[0] = 0
    net.run(10.0)
    answering[0] = 200
    net.run(40.0)
    answering[0] = 0
    net.run(70.0)
    assert node.ep.trunk_up and node.events == []


def test_no_keepalive_without_an_interval() -> None:
    net, node, _answering, pinged = trunk_and_endpoint(interval=0.0)
    assert node.ep.get_timer() is None
    net.run(100.0)
    assert pinged == [] and node.ep.trunk_up


SERVER_A = ("203.0.113.21", 5060)
SERVER_B = ("203.0.113.22", 5060)


def named_trunk(down_after: int = 2) -> tuple[Net, EpNode, dict[tuple[str, int], list[float]], list[int]]:
    """A trunk proxy named by host (two servers located for it); which server got pings, when; and
    `answering[0]`: 1 when server B answers (A never does)."""
    trunk = replace(
        TRUNK,
        proxy=("trunk.example", 5060),
        keepalive_interval=30.0,
        keepalive_timeout=5.0,
        keepalive_down_after=down_after,
    )
    config = EndpointConfig(EP_ADDR, DOMAIN, accounts=ACCOUNTS, trunk=trunk)
    net = Net()
    node = net.add(EpNode(SipEndpoint(config, random.Random(3))))
    pinged: dict[tuple[str, int], list[float]] = {SERVER_A: [], SERVER_B: []}
    answering = [1]
    for addr in (SERVER_A, SERVER_B):
        phone = net.add(Phone(addr, "trunk"))

        def on_request(event: RequestReceived, addr: tuple[str, int] = addr, phone: Phone = phone) -> bool:
            pinged[addr].append(net.now)
            if addr == SERVER_B and answering[0]:
                phone.tl.send_response(make_response(event.request, 200, to_tag="t"), net.now)
            return True

        phone.on_request = on_request
    return net, node, pinged, answering


def test_a_named_proxy_is_never_pinged_at_its_name_only_at_its_located_servers() -> None:
    net, node, pinged, _ = named_trunk()
    net.run(100.0)
    assert pinged == {SERVER_A: [], SERVER_B: []} and node.ep.stats["trunk_keepalives_sent"] == 0
    assert node.ep.trunk_up and not any(dest[0] == "trunk.example" for _, dest in node.ep.datagrams_to_send())
    node.ep.set_trunk_servers([SERVER_A, SERVER_B], net.now)
    net.run(200.0)
    # A never answers: its ping misses and the next one tries B, which answers; B stays the one pinged.
    assert pinged[SERVER_A] == [100.0] and pinged[SERVER_B] == [130.0, 160.0, 190.0]
    assert node.ep.trunk_up and node.events == []


def test_a_named_trunk_is_down_only_when_every_server_missed_and_when_its_name_does_not_resolve() -> None:
    net, node, pinged, answering = named_trunk(down_after=2)
    answering[0] = 0  # neither server answers
    node.ep.set_trunk_servers([SERVER_A, SERVER_B], 0.0)
    net.run(20.0)
    assert node.ep.trunk_up  # A missed; B not asked yet
    net.run(40.0)
    assert node.events == [TrunkStatus(up=False, misses=2)]
    assert pinged == {SERVER_A: [0.0], SERVER_B: [30.0]}
    answering[0] = 1
    node.ep.set_trunk_servers([SERVER_B], 40.0)  # the records changed: B alone, next ping at 60
    net.run(65.0)
    assert node.events[-1] == TrunkStatus(up=True, misses=0)
    node.ep.set_trunk_servers([], 65.0)  # the name no longer resolves: each due ping is a miss
    net.run(130.0)
    assert node.events[-1] == TrunkStatus(up=False, misses=2)
    assert len(pinged[SERVER_B]) == 2  # nothing sent while there is nowhere to send
