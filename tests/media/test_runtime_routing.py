"""What each peer hears through the MediaRuntime on a virtual clock: conferences, mix-minus, music,
codecs, moves between conferences, ghosts. No sockets, no waiting."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from media_sim import FREQS, PCMA, PCMU, Sim, assert_isolated, dominant_freq, level_at, peak_freqs, rms

from bridgeline.core.effects import LegAudio
from bridgeline.core.model import Music
from bridgeline.media.player import ToneSource


def talk(*pairs: tuple[str, tuple[str, ...]]) -> list[LegAudio]:
    return [LegAudio(leg, hears, None) for leg, hears in pairs]


def test_two_legs_hear_each_other_and_never_themselves() -> None:
    sim = Sim()
    a, b = sim.peer(440), sim.peer(880)
    sim.join("a", a)
    sim.join("b", b)
    # A route naming the listener itself (an upstream slip) must not echo it back.
    sim.runtime.set_routes("c1", talk(("a", ("a", "b")), ("b", ("a",))), {})
    mark = sim.settle(0.5)
    sim.run(0.5)
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
    assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)
    assert level_at(a.pcm_since(mark), 440) < 0.02


def test_outgoing_rtp_headers_are_continuous() -> None:
    sim = Sim()
    a = sim.peer(440)
    sim.join("a", a)
    sim.runtime.set_routes("c1", talk(("a", ("a",))), {})  # hearing itself: ignored, no echo
    sim.run(0.5)
    packets = a.packets
    assert len(packets) == 25  # one per tick
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert len({p.ssrc for p in packets}) == 1
    assert all(p.payload_type == PCMU and len(p.payload) == 160 for p in packets)
    for prev, cur in itertools.pairwise(packets):
        assert (cur.sequence - prev.sequence) & 0xFFFF == 1
        assert (cur.timestamp - prev.timestamp) & 0xFFFF_FFFF == 160
    assert rms(a.pcm_since(0)) < 50  # silence


def test_streams_start_at_random_points() -> None:
    """RFC 3550: random SSRC, sequence and timestamp; from the injected generator, so two runtimes
    with different seeds differ and equal seeds repeat (the shell seeds from OS entropy)."""
    starts = []
    for seed in (1, 2, 1):
        sim = Sim(seed=seed)
        a = sim.peer(None)
        sim.join("a", a, talk=False)
        sim.run(0.02)
        p = a.packets[0]
        starts.append((p.ssrc, p.sequence, p.timestamp))
    assert starts[0] != starts[1] and starts[0] == starts[2]


def test_three_legs_each_hear_the_other_two() -> None:
    sim = Sim()
    peers = [sim.peer(f) for f in (440, 700, 1100)]
    for leg, peer in zip("abc", peers, strict=True):
        sim.join(leg, peer)
    sim.runtime.set_routes("c1", talk(("a", ("b", "c")), ("b", ("a", "c")), ("c", ("a", "b"))), {})
    mark = sim.settle(0.5)
    sim.run(0.5)
    expected = {"a": [700, 1100], "b": [440, 1100], "c": [440, 700]}
    for leg, peer in zip("abc", peers, strict=True):
        assert peak_freqs(peer.pcm_since(mark), 2) == pytest.approx(expected[leg], abs=4)


def test_held_leg_hears_hold_music_and_nobody_hears_it() -> None:
    sim = Sim()
    a, b, c = sim.peer(500), sim.peer(700), sim.peer(1100)
    for leg, peer in zip("abc", (a, b, c), strict=True):
        sim.join(leg, peer)
    legs = [LegAudio("a", (), Music.AGENT_HOLD), *talk(("b", ("c",)), ("c", ("b",)))]
    sim.runtime.set_routes("c1", legs, {Music.AGENT_HOLD: ToneSource(300)})
    mark = sim.settle(0.5)
    sim.run(0.5)
    held, heard_by_b = a.pcm_since(mark), b.pcm_since(mark)
    assert dominant_freq(held) == pytest.approx(300, abs=4)
    assert level_at(held, 700) < 0.02 and level_at(held, 1100) < 0.02
    assert dominant_freq(heard_by_b) == pytest.approx(1100, abs=4)
    assert level_at(heard_by_b, 500) < 0.02 and level_at(heard_by_b, 300) < 0.02
    assert level_at(c.pcm_since(mark), 500) < 0.02


def test_a_kind_without_a_source_is_silent() -> None:
    sim = Sim()
    a = sim.peer(None)
    sim.join("a", a)
    sim.runtime.set_routes("c1", [LegAudio("a", (), Music.VOICEMAIL)], {Music.WAIT: ToneSource(300)})
    mark = sim.settle(0.3)
    assert rms(a.pcm_since(mark)) < 50


def test_one_music_source_advances_once_per_tick_for_every_conference() -> None:
    class Counting(ToneSource):
        frames = 0

        def next_frame(self):  # type: ignore[no-untyped-def]
            Counting.frames += 1
            return super().next_frame()

    sim = Sim()
    a, b = sim.peer(None), sim.peer(None)
    sim.join("a", a)
    sim.join("b", b)
    music = Counting(300)
    sim.runtime.set_routes("c1", [LegAudio("a", (), Music.WAIT)], {Music.WAIT: music})
    sim.runtime.set_routes("c2", [LegAudio("b", (), Music.AGENT_HOLD)], {Music.AGENT_HOLD: music})
    mark = sim.run(0.5)
    assert Counting.frames == 25
    assert dominant_freq(a.pcm_since(mark)) == dominant_freq(b.pcm_since(mark)) == pytest.approx(300, abs=4)
    assert a.pcm_since(mark).tolist() == b.pcm_since(mark).tolist()  # the same point of the same stream


def test_leg_with_send_false_receives_nothing_until_resumed() -> None:
    sim = Sim()
    a, b = sim.peer(440), sim.peer(880)
    sim.join("a", a, send=False)
    sim.join("b", b)
    sim.runtime.set_routes("c1", talk(("a", ("b",)), ("b", ("a",))), {})
    mark = sim.settle(0.5)
    sim.run(0.3)
    assert not a.received
    assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)  # it still hears a
    sim.runtime.update_leg("a", send=True, now=sim.now)
    sim.run(0.2)
    assert len(a.received) == 10
    assert a.packets[0].marker


def test_pcma_and_pcmu_legs_mix() -> None:
    sim = Sim()
    a, b = sim.peer(440, PCMU), sim.peer(880, PCMA)
    sim.join("a", a)
    sim.join("b", b)
    sim.runtime.set_routes("c1", talk(("a", ("b",)), ("b", ("a",))), {})
    mark = sim.settle(0.5)
    sim.run(0.4)
    assert {p.payload_type for p in a.packets} == {PCMU}
    assert {p.payload_type for p in b.packets} == {PCMA}
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
    assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)


def test_mixed_codecs_in_a_three_party_mix() -> None:
    sim = Sim()
    a, b, c = sim.peer(440, PCMU), sim.peer(700, PCMA), sim.peer(1100, PCMU)
    for leg, peer in zip("abc", (a, b, c), strict=True):
        sim.join(leg, peer)
    sim.runtime.set_routes("c1", talk(("a", ("b", "c")), ("b", ("a", "c")), ("c", ("a", "b"))), {})
    mark = sim.settle(0.5)
    sim.run(0.4)
    assert {p.payload_type for p in b.packets} == {PCMA}
    assert peak_freqs(b.pcm_since(mark), 2) == pytest.approx([440, 1100], abs=4)
    assert peak_freqs(a.pcm_since(mark), 2) == pytest.approx([700, 1100], abs=4)


def test_conferences_never_mix_and_a_moved_leg_leaves_its_old_one() -> None:
    sim = Sim()
    a, b, c, d = (sim.peer(f) for f in (440, 880, 1300, 1700))
    for leg, peer in zip("abcd", (a, b, c, d), strict=True):
        sim.join(leg, peer)
    # c1's routes even name d (a routing bug upstream): still only c1's legs are mixed.
    sim.runtime.set_routes("c1", talk(("a", ("b", "d")), ("b", ("a",))), {})
    sim.runtime.set_routes("c2", talk(("c", ("d",)), ("d", ("c",))), {})
    mark = sim.settle(0.5)
    sim.run(0.4)
    heard = a.pcm_since(mark)
    assert dominant_freq(heard) == pytest.approx(880, abs=4)
    assert level_at(heard, 1300) < 0.02 and level_at(heard, 1700) < 0.02
    # Moving b to c2 takes it out of c1: a (whose route still names b) now hears nothing.
    sim.runtime.set_routes("c2", talk(("b", ("c",)), ("c", ("d", "b")), ("d", ("c",))), {})
    mark = sim.settle(0.3)
    sim.run(0.3)
    assert rms(a.pcm_since(mark)) < 50
    assert dominant_freq(b.pcm_since(mark)) == pytest.approx(1300, abs=4)
    assert sim.runtime.conference_count == 2
    sim.runtime.set_routes("c1", [], {})  # an empty routing ends the conference
    assert sim.runtime.conference_count == 1


def test_ptime_30_packets() -> None:
    sim = Sim()
    a = sim.peer(440)
    sim.join("a", a, ptime_ms=30)
    sim.run(0.6)
    packets = a.packets
    assert len(packets) == 20  # 30 ticks of 20 ms in 30 ms packets
    assert all(len(p.payload) == 240 for p in packets)
    assert all((q.timestamp - p.timestamp) & 0xFFFF_FFFF == 240 for p, q in itertools.pairwise(packets))


def test_leg_hearing_a_leg_and_music_gets_both() -> None:
    sim = Sim()
    a, b = sim.peer(None), sim.peer(880)
    sim.join("a", a)
    sim.join("b", b)
    legs = [LegAudio("a", ("b",), Music.WAIT), LegAudio("b", (), None)]
    sim.runtime.set_routes("c1", legs, {Music.WAIT: ToneSource(300)})
    mark = sim.settle(0.5)
    sim.run(0.4)
    assert peak_freqs(a.pcm_since(mark), 2) == pytest.approx([300, 880], abs=4)
    assert rms(b.pcm_since(mark)) < 50


def test_plain_conferences_of_one_size_are_mixed_apart_and_ghosts_join_when_opened() -> None:
    # Two three-party conferences share one batched mix; a member of c2 (a ghost) is opened only
    # after the routes name it (silent until then), and a member of c1 plays a message meanwhile.
    c1_freqs, c2_freqs = (440, 700, 1100), (1300, 1700, 2100)
    sim = Sim()
    a, b, c, d, e, f = (sim.peer(freq) for freq in c1_freqs + c2_freqs)
    for leg, peer in zip("abcde", (a, b, c, d, e), strict=True):
        sim.join(leg, peer)
    sim.runtime.set_routes("c1", talk(("a", ("b", "c")), ("b", ("a", "c")), ("c", ("a", "b"))), {})
    sim.runtime.set_routes("c2", talk(("d", ("e", "f")), ("e", ("d", "f")), ("f", ("d", "e"))), {})
    mark = sim.settle(0.5)
    sim.run(0.4)
    assert dominant_freq(d.pcm_since(mark)) == pytest.approx(1700, abs=4)
    assert level_at(d.pcm_since(mark), 2100) < 0.02  # f is not open yet
    sim.join("f", f)
    sim.runtime.play("a", ToneSource(1000), token="msg")  # endless: it never finishes
    mark = sim.settle(0.5)
    sim.run(0.4)
    assert peak_freqs(d.pcm_since(mark), 2) == pytest.approx([1700, 2100], abs=4)
    assert peak_freqs(b.pcm_since(mark), 2) == pytest.approx([440, 1100], abs=4)  # a still heard
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(1000, abs=4)  # the message, not b or c
    for listeners, foreign in (((b, c), c2_freqs), ((d, e, f), c1_freqs)):
        for peer in listeners:
            assert all(level_at(peer.pcm_since(mark), freq) < 0.02 for freq in foreign)


def test_a_closed_leg_leaves_its_conference_and_the_others_go_on() -> None:
    sim = Sim()
    a, b, c = sim.peer(440), sim.peer(700), sim.peer(1100)
    for leg, peer in zip("abc", (a, b, c), strict=True):
        sim.join(leg, peer)
    sim.runtime.set_routes("c1", talk(("a", ("b", "c")), ("b", ("a", "c")), ("c", ("a", "b"))), {})
    sim.settle(0.3)
    sim.runtime.close_leg("c")
    sim.runtime.close_leg("c")  # idempotent
    count = c.count_since(0)
    mark = sim.run(0.4)
    assert c.count_since(0) == count  # nothing more to a closed leg
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(700, abs=4)
    assert level_at(a.pcm_since(mark), 1100) < 0.02
    assert sim.runtime.leg_count == 2


# One per leg, far enough apart to tell in 0.4 s of audio, and chosen so that no 2nd- or 3rd-order
# product of two or three of them (folded at 4 kHz) lands within 40 Hz of another: a loud mix clips,
# and evenly spaced tones (2 * 950 - 550 = 1350) would make a leg seem to hear one it does not.


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 2), min_size=len(FREQS), max_size=len(FREQS)),  # conference of each leg
    st.lists(st.sets(st.integers(0, len(FREQS) - 1)), min_size=len(FREQS), max_size=len(FREQS)),
)
def test_nobody_hears_itself_or_another_conference(conf_of: list[int], hears: list[set[int]]) -> None:
    """Random route sets, including routes to oneself and across conferences: a listener hears
    exactly the legs of its own conference that its route names, never itself, never a stranger."""
    assert_isolated(conf_of, hears)
