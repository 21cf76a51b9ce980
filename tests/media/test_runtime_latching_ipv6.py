"""Latching with IPv6 sources, on a virtual clock. An AF_INET6 socket's recvfrom names a source
(host, port, flowinfo, scope_id) where the SDP said (host, port): the SDP rule must still know the
peer, a source on another port of the same host must still be refused, and media must go back to the
4-tuple (its scope id picks a link-local peer's interface)."""

from __future__ import annotations

import pytest
from media_sim import Sim, SimPeer, dominant_freq, level_at
from test_runtime_latching import RTCP_RR, TWO_WAY, spray

from bridgeline.media.leg_types import Address, LatchPolicy, Relatched


def ipv6_peer(freq: float | None, host: str, port: int, scope_id: int = 0) -> tuple[SimPeer, Address]:
    """A peer whose SDP address is (host, port) and which sends from, and is reached only at, the
    4-tuple recvfrom gives (what the runtime sends to the SDP's pair lands in `Sim.stray`)."""
    return SimPeer(freq, address=(host, port)), (host, port, 0, scope_id)


def two_way_ipv6(
    sim: Sim, *, a_talks: bool = True, after: float = 0.0
) -> tuple[SimPeer, Address, SimPeer, Address]:
    """Two IPv6 peers in a two-way call; they start talking `after` seconds (what the legs send
    meanwhile goes to the SDP's pairs: dropped from `Sim.stray`)."""
    a, a_source = ipv6_peer(440, "2001:db8::a", 40000)
    b, b_source = ipv6_peer(880, "2001:db8::b", 40002)
    sim.join("a", a, talk=False)
    sim.join("b", b, talk=False)
    sim.runtime.set_routes("c1", TWO_WAY, {})
    sim.run(after)
    sim.stray.clear()
    if a_talks:
        sim.start_talking(a, "a", source=a_source)
    sim.start_talking(b, "b", source=b_source)
    return a, a_source, b, b_source


def test_ipv6_peers_latch_by_their_sdp_address_and_other_ports_are_refused() -> None:
    """The learning window is over when the peers speak: only the SDP address may latch, and it
    must from a 4-tuple source (it never did: the 4-tuple was compared with the SDP's pair, and
    every packet was refused). Then a source on another port of the peer's host is refused."""
    sim = Sim(LatchPolicy(learning_window_s=0.1))
    a, _, b, _ = two_way_ipv6(sim, after=0.2)
    mark = sim.settle(0.3)
    sim.run(0.4)
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
    assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)
    assert sim.runtime.counters.rtp_refused_foreign_source == 0
    assert not sim.stray  # once latched, media went to the 4-tuples only

    attacker = SimPeer(1500, address=("2001:db8::a", 40010, 0, 0))  # the peer's host, another port
    sim.peers[attacker.address] = attacker
    mark = sim.now
    spray(sim, attacker, "a", 0.6)
    assert not attacker.received
    assert sim.runtime.counters.rtp_refused_foreign_source == 90
    assert level_at(b.pcm_since(mark), 1500) < 0.02
    assert dominant_freq(a.pcm_since(mark + 0.1)) == pytest.approx(880, abs=4)


def test_an_ipv6_spray_racing_the_call_loses_to_the_sdp_address() -> None:
    """The attacker wins the learning window; the phone's first packet from its SDP address (a
    4-tuple) takes the leg back for good, as on IPv4."""
    sim = Sim()
    a, a_source, b, _ = two_way_ipv6(sim, a_talks=False)
    attacker = SimPeer(1500, address=("2001:db8::66", 40020, 0, 0))
    sim.peers[attacker.address] = attacker
    spray(sim, attacker, "a", 0.2)
    assert attacker.received  # it won the learning window for a moment...
    sim.start_talking(a, "a", source=a_source)
    spray(sim, attacker, "a", 0.3)
    mark = sim.now
    spray(sim, attacker, "a", 0.6)
    assert attacker.count_since(mark) == 0  # ...and lost it to the SDP address
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
    assert level_at(b.pcm_since(mark), 1500) < 0.02
    assert [(e.source, e.previous) for e in sim.events if isinstance(e, Relatched)] == [
        (a_source, attacker.address)
    ]


def test_a_link_local_peer_is_answered_on_its_interface_and_rtcp_latches_to_its_host() -> None:
    sim = Sim(LatchPolicy(learning_window_s=0.1))
    a, a_source = ipv6_peer(440, "fe80::1", 40000, scope_id=3)
    b, b_source = ipv6_peer(880, "2001:db8::b", 40002)
    sim.join("a", a, talk=False)
    sim.join("b", b, talk=False)
    sim.runtime.set_routes("c1", TWO_WAY, {})
    sim.run(0.2)  # the learning window closes: only the SDP address latches
    sim.stray.clear()
    sim.start_talking(a, "a", source=a_source)
    sim.start_talking(b, "b", source=b_source)
    mark = sim.settle(0.3)
    sim.run(0.2)
    assert not sim.stray  # sent to ("fe80::1", 40000, 0, 3): the scope id goes back to sendto
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
    sim.send("a", RTCP_RR, ("fe80::1", 40001, 0, 3), kind="rtcp")  # the peer's host, its RTCP port
    sim.send("a", RTCP_RR, ("fe80::2", 40001, 0, 3), kind="rtcp")  # another host
    counters = sim.runtime.counters
    assert counters.rtcp_in == 1 and counters.rtcp_refused_foreign_source == 1
