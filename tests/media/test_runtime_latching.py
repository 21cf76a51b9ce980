"""RTP source latching against hijacking ("RTP bleed") on a virtual clock: a foreign source sprays a
live call's ports and the call keeps its audio; the legitimate ways to move a leg still work."""

from __future__ import annotations

import pytest
from media_sim import PCMU, Sim, SimPeer, dominant_freq, level_at

from bridgeline.core.effects import LegAudio
from bridgeline.media.dtmf import dtmf_packets
from bridgeline.media.leg_types import LatchPolicy, Relatched, SourceRefused
from bridgeline.media.runtime import DtmfReceived

RTCP_RR = bytes([0x81, 201, 0x00, 0x01]) + (0x1234).to_bytes(4, "big")
TWO_WAY = [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None)]


def spray(sim: Sim, attacker: SimPeer, leg_id: str, seconds: float) -> None:
    """Per tick, three G.711 packets at the RTP port (the attacker's own SSRC) and RTCP; every tenth
    tick a whole DTMF digit; the call's peers keep talking meanwhile."""
    attacker.ssrc = 0x0BAD_0BAD
    for n in range(round(seconds / 0.02)):
        for _ in range(3):
            sim.send(leg_id, attacker.audio_packet(), attacker.address)
        sim.send(leg_id, RTCP_RR, attacker.address, kind="rtcp")
        if n % 10 == 0:
            for _, packet in dtmf_packets("9", ssrc=attacker.ssrc, sequence=n, timestamp=n * 1000):
                sim.send(leg_id, packet.serialize(), attacker.address)
        sim.step()


def two_way(sim: Sim, *, a_talks: bool = True) -> tuple[SimPeer, SimPeer]:
    a, b = sim.peer(440), sim.peer(880)
    sim.join("a", a, talk=a_talks)
    sim.join("b", b)
    sim.runtime.set_routes("c1", TWO_WAY, {})
    return a, b


def test_foreign_spray_does_not_hijack_a_live_call() -> None:
    sim = Sim()
    a, b = two_way(sim)
    attacker = sim.peer(1500)
    sim.send("a", RTCP_RR, a.address, kind="rtcp")  # the peer's own RTCP latches first
    sim.run(0.2)
    spray(sim, attacker, "a", 0.4)
    mark = sim.now
    spray(sim, attacker, "a", 0.6)
    assert not attacker.received  # nothing of the call reached the attacker
    heard_by_a, heard_by_b = a.pcm_since(mark), b.pcm_since(mark)
    assert len(heard_by_a) == 8000 * 0.6  # the real phone kept getting every tick of its audio
    assert dominant_freq(heard_by_a) == pytest.approx(880, abs=4)
    assert dominant_freq(heard_by_b) == pytest.approx(440, abs=4)
    assert level_at(heard_by_b, 1500) < 0.02  # the attacker is not in the mix
    assert not any(isinstance(e, DtmfReceived) for e in sim.events)  # nor its DTMF
    c = sim.runtime.counters
    per_digit = len(dtmf_packets("9", ssrc=1, sequence=0, timestamp=0))
    assert c.rtp_refused_foreign_source == 150 and c.dtmf_refused_foreign_source == 5 * per_digit
    assert c.rtcp_refused_foreign_source == 50 and c.relatched == 0
    assert c.rtcp_in == 1
    refused = [e for e in sim.events if isinstance(e, SourceRefused)]
    assert len(refused) == 1 and refused[0].source == attacker.address  # one report per interval


def test_a_spray_racing_the_call_loses_to_the_sdp_address() -> None:
    sim = Sim()
    a, b = two_way(sim, a_talks=False)  # the attacker speaks before the phone
    attacker = sim.peer(1500)
    spray(sim, attacker, "a", 0.2)
    assert attacker.received  # it won the learning window for a moment...
    sim.start_talking(a, "a")
    spray(sim, attacker, "a", 0.3)
    mark = sim.now
    spray(sim, attacker, "a", 0.6)
    assert attacker.count_since(mark) == 0  # ...and lost it to the SDP address for good
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
    heard_by_b = b.pcm_since(mark)
    assert dominant_freq(heard_by_b) == pytest.approx(440, abs=4)
    assert level_at(heard_by_b, 1500) < 0.02
    assert [(e.source, e.previous) for e in sim.events if isinstance(e, Relatched)] == [
        (a.address, attacker.address)
    ]


def test_nat_rebinding_follows_the_latched_ssrc_only() -> None:
    sim = Sim(LatchPolicy(relatch_silence_s=0.2, relatch_packets=5))
    a, _ = two_way(sim)
    sim.run(0.2)
    sim.stop_talking(a)  # the NAT mapping changes: the same stream now comes from another port
    rebound = sim.peer(440)
    rebound.ssrc, rebound.seq, rebound.ts = a.ssrc, a.seq, a.ts
    attacker = sim.peer(1500)
    attacker.ssrc = 0x0BAD_0BAD
    sim.start_talking(attacker, "a")  # another SSRC: never followed
    sim.start_talking(rebound, "a")
    sim.run(0.2)  # the latched source's silence: not followed yet
    assert not rebound.received
    sim.run(0.12)  # then the packets the rule asks for
    assert rebound.received
    mark = sim.settle(0.2)
    sim.run(0.4)
    assert dominant_freq(rebound.pcm_since(mark)) == pytest.approx(880, abs=4)
    assert not attacker.received
    assert a.count_since(mark) == 0
    assert sim.runtime.counters.relatched == 1


def test_the_latched_ssrc_is_not_followed_while_the_source_still_speaks() -> None:
    sim = Sim(LatchPolicy(relatch_silence_s=0.2, relatch_packets=5))
    a, _ = two_way(sim)
    sim.run(0.2)
    copycat = sim.peer(440)  # carries the latched SSRC, but the real source goes on talking
    copycat.ssrc = a.ssrc
    sim.start_talking(copycat, "a")
    sim.run(1.0)
    assert not copycat.received and sim.runtime.counters.relatched == 0


def test_a_reinvite_to_a_new_address_reopens_learning() -> None:
    sim = Sim()
    a, b = two_way(sim)
    sim.run(0.2)
    sim.stop_talking(a)
    moved = sim.peer(660)
    sim.runtime.update_leg("a", remote=moved.address, send=True, now=sim.now)
    sim.start_talking(moved, "a")
    mark = sim.settle(0.3)
    sim.run(0.4)
    assert dominant_freq(moved.pcm_since(mark)) == pytest.approx(880, abs=4)
    assert dominant_freq(b.pcm_since(mark)) == pytest.approx(660, abs=4)
    assert a.count_since(mark) == 0


def test_send_goes_to_the_latched_source_and_a_repeated_sdp_address_keeps_it() -> None:
    sim = Sim()
    sdp_addr, actual = sim.peer(None), sim.peer(440)
    sim.join("a", sdp_addr, talk=False)
    sim.run(0.06)
    assert len(sdp_addr.received) == 3  # before any media: the SDP address
    sim.start_talking(actual, "a")  # behind NAT: its media comes from elsewhere than its SDP
    sim.run(0.1)
    assert len(actual.received) == 5
    sim.runtime.update_leg("a", remote=sdp_addr.address, send=True, now=sim.now)  # hold/resume repeat it
    attacker = sim.peer(1500)
    sim.start_talking(attacker, "a")
    mark = sim.run(0.5)
    assert actual.count_since(mark) == 25
    assert sdp_addr.count_since(mark) == 0
    assert not attacker.received


def test_learning_window_closes_then_only_the_sdp_address_latches() -> None:
    sim = Sim(LatchPolicy(learning_window_s=2.0))
    sdp, nat = sim.peer(None), sim.peer(440)
    sim.join("a", sdp, talk=False)
    sim.run(2.5)
    packet = nat.audio_packet()
    sim.send("a", packet, nat.address)
    assert sim.runtime.counters.rtp_refused_foreign_source == 1
    sim.send("a", packet, sdp.address)
    assert sim.runtime.counters.rtp_refused_foreign_source == 1
    sim.run(0.02)
    assert sdp.count_since(sim.now - 0.02) == 1
    moved = sim.peer(None)
    sim.runtime.update_leg("a", remote=moved.address, now=sim.now)  # a new SDP address: learning again
    sim.run(1.9)
    sim.send("a", nat.audio_packet(), nat.address)
    mark = sim.run(0.02)
    assert nat.count_since(mark) == 1
    sim.runtime.update_leg("a", remote=("0.0.0.0", 40004), now=sim.now)  # RFC 2543 hold: send nothing
    mark = sim.run(0.1)
    assert nat.count_since(mark) == 0 and not sim.stray
    sim.runtime.update_leg("a", remote=moved.address, now=sim.now)  # resumed: the latch was kept
    mark = sim.run(0.1)
    assert nat.count_since(mark) == 5


def test_refusals_are_reported_once_per_interval_for_the_whole_runtime() -> None:
    """A spray over many legs yields one report per interval, carrying the count, not one a packet."""
    sim = Sim(LatchPolicy(learning_window_s=0.0, refused_log_interval_s=10.0))
    home = sim.peer(None)
    for i in range(3):
        sim.join(f"leg{i}", home, talk=False)
    foreign = sim.peer(440)
    packet = foreign.audio_packet()
    start = sim.now
    for n in range(3000):  # 30 s of a spray at 100 packets per second over three legs
        sim.now = start + 1.0 + n / 100
        sim.send(f"leg{n % 3}", packet, foreign.address)
    refused = [e for e in sim.runtime.pop_events() if isinstance(e, SourceRefused)]
    assert sim.runtime.counters.rtp_refused_foreign_source == 3000
    assert [e.refused_since_last for e in refused] == [1, 1000, 1000]  # at 1 s, 11 s and 21 s
    assert [e.leg_id for e in refused] == ["leg0", "leg1", "leg2"] and all(e.kind == "rtp" for e in refused)


def test_rtcp_latches_to_the_media_host_on_its_own_port() -> None:
    sim = Sim()
    a, _ = two_way(sim)
    sim.run(0.1)
    sim.send("a", RTCP_RR, ("127.0.0.1", 50001), kind="rtcp")  # same host, another port: NATs map it apart
    sim.send("a", RTCP_RR, ("127.0.0.2", 50001), kind="rtcp")  # another host: refused
    sim.send("a", RTCP_RR, ("127.0.0.1", 50003), kind="rtcp")  # latched already: refused
    c = sim.runtime.counters
    assert c.rtcp_in == 1 and c.rtcp_refused_foreign_source == 2
    assert a.received and a.packets[0].payload_type == PCMU
