"""DTMF through the runtime: received digits become one event each, and are re-sent (RFC 4733) to
the legs that hear the sender."""

from __future__ import annotations

import itertools

from media_sim import Sim, SimPeer

from bridgeline.core.effects import LegAudio
from bridgeline.core.model import Music
from bridgeline.media.dtmf import TelephoneEvent, dtmf_packets
from bridgeline.media.player import ToneSource
from bridgeline.media.runtime import DtmfReceived

EVENT_PT = 101


def events_received(peer: SimPeer) -> list[tuple[int, int, bool, TelephoneEvent]]:
    """(sequence, timestamp, marker, event) of the telephone-event packets the peer got."""
    return [
        (p.sequence, p.timestamp, p.marker, TelephoneEvent.parse(p.payload))
        for p in peer.packets
        if p.payload_type == EVENT_PT
    ]


def send_digit(sim: Sim, sender: SimPeer, leg_id: str, digit: str, timestamp: int = 77_000) -> None:
    packets = dtmf_packets(
        digit, ssrc=sender.ssrc, sequence=sender.seq, timestamp=timestamp, payload_type=EVENT_PT
    )
    for _, packet in packets:
        sim.send(leg_id, packet.serialize(), sender.address)
    sender.seq += len(packets)


def digits(sim: Sim) -> list[tuple[str, str]]:
    return [(e.leg_id, e.digit) for e in sim.events if isinstance(e, DtmfReceived)]


def test_a_digit_reaches_the_listeners_and_not_a_held_member() -> None:
    sim = Sim()
    a, b, held = sim.peer(440), sim.peer(None), sim.peer(None)
    for leg, peer in (("a", a), ("b", b), ("held", held)):
        sim.join(leg, peer)
    legs = [
        LegAudio("a", ("b",), None),
        LegAudio("b", ("a",), None),
        LegAudio("held", ("a",), Music.CUSTOMER_HOLD),
    ]
    sim.runtime.set_routes("c1", legs, {Music.CUSTOMER_HOLD: ToneSource(500)})
    sim.run(0.2)
    send_digit(sim, a, "a", "7")
    sim.run(0.4)
    assert digits(sim) == [("a", "7")]
    got = events_received(b)
    assert {e.event for *_, e in got} == {7}  # '7' is event code 7
    assert len({ts for _, ts, _, _ in got}) == 1  # one event: one start timestamp throughout
    assert got[0][2] and not any(marker for _, _, marker, _ in got[1:])  # marker on the first only
    durations = [e.duration for *_, e in got]
    assert durations == sorted(durations) and durations[-1] == 800  # 100 ms at 8 kHz
    assert sum(e.end for *_, e in got) == 3
    seqs = [seq for seq, *_ in got]
    assert all((s2 - s1) & 0xFFFF == 1 for s1, s2 in itertools.pairwise(seqs))
    assert events_received(held) == []  # hears music: its route is not followed for digits
    assert events_received(a) == []  # never echoed back to its sender
    after = [p for p in b.packets if p.payload_type != EVENT_PT and p.sequence > seqs[-1]]
    assert after and after[0].marker  # audio after the event starts a new talkspurt


def test_no_relay_to_a_leg_without_telephone_event() -> None:
    sim = Sim()
    a, b = sim.peer(440), sim.peer(None)
    sim.join("a", a)
    sim.join("b", b, telephone_event_pt=None)
    sim.runtime.set_routes("c1", [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None)], {})
    sim.run(0.1)
    send_digit(sim, a, "a", "#")
    sim.run(0.3)
    assert digits(sim) == [("a", "#")]
    assert all(p.payload_type == 0 for p in b.packets)


def test_each_digit_is_reported_once() -> None:
    sim = Sim()
    a = sim.peer(440)
    sim.join("a", a)
    sim.run(0.1)
    for digit, start_ts in (("5", 10_000), ("#", 12_000)):
        send_digit(sim, a, "a", digit, start_ts)  # updates and three end copies each
    sim.run(0.1)
    assert digits(sim) == [("a", "5"), ("a", "#")]


def test_dtmf_ignored_without_negotiated_event_type() -> None:
    sim = Sim()
    a = sim.peer(None)
    sim.join("a", a, telephone_event_pt=None, talk=False)
    packets = dtmf_packets("1", ssrc=9, sequence=1, timestamp=1)
    for _, packet in packets:
        sim.send("a", packet.serialize(), a.address)
    sim.run(0.1)
    assert sim.runtime.counters.ignored_in == len(packets)
    assert digits(sim) == []
