"""G.722 (wideband) legs through the MediaRuntime on a virtual clock, alone and mixed with G.711 legs:
what each hears, at which frequency, and the RTP a G.722 leg is sent. No sockets, no waiting."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from media_sim import (
    FREQS,
    G722,
    PCMA,
    PCMU,
    Sim,
    assert_isolated,
    dominant_freq,
    level_at,
    peak_freqs,
    rms,
    spectrum,
)

from bridgeline.core.effects import LegAudio
from bridgeline.core.model import Music
from bridgeline.media.dtmf import dtmf_packets
from bridgeline.media.player import ToneSource
from bridgeline.media.runtime import DtmfReceived


def talk(*pairs: tuple[str, tuple[str, ...]]) -> list[LegAudio]:
    return [LegAudio(leg, hears, None) for leg, hears in pairs]


def test_g722_and_g711_legs_hear_each_other_at_the_right_frequency() -> None:
    sim = Sim()
    wide, narrow = sim.peer(1000, G722), sim.peer(440, PCMU)
    sim.join("w", wide)
    sim.join("n", narrow)
    sim.runtime.set_routes("c1", talk(("w", ("n",)), ("n", ("w",))), {})
    mark = sim.settle(0.5)
    sim.run(0.5)
    assert {p.payload_type for p in wide.packets} == {G722}
    assert {p.payload_type for p in narrow.packets} == {PCMU}
    heard_by_wide, heard_by_narrow = wide.pcm_since(mark), narrow.pcm_since(mark)
    assert heard_by_wide.size == 2 * heard_by_narrow.size  # 16 kHz against 8 kHz, same duration
    assert dominant_freq(heard_by_wide, wide.rate) == pytest.approx(440, abs=4)
    assert dominant_freq(heard_by_narrow) == pytest.approx(1000, abs=4)
    assert rms(heard_by_narrow) > 3000 and rms(heard_by_wide) > 3000  # no loss of level on the way


def test_a_6khz_tone_reaches_g722_ears_and_no_alias_reaches_g711_ears() -> None:
    """Mixed at 16 kHz, G.722 to G.722 keeps what G.711 cannot carry; G.711 listeners get it through
    the anti-alias filter, so the 6 kHz tone does not fold to 2 kHz."""
    sim = Sim()
    high, other_wide, narrow = sim.peer(6000, G722), sim.peer(None, G722), sim.peer(None, PCMA)
    for leg, peer in (("h", high), ("w", other_wide), ("n", narrow)):
        sim.join(leg, peer)
    sim.runtime.set_routes("c1", talk(("h", ("w", "n")), ("w", ("h", "n")), ("n", ("h", "w"))), {})
    mark = sim.settle(0.5)
    sim.run(0.5)
    heard = other_wide.pcm_since(mark)
    assert dominant_freq(heard, other_wide.rate) == pytest.approx(6000, abs=4)
    assert rms(heard) > 3000
    freqs, mags = spectrum(narrow.pcm_since(mark))
    at_2khz = float(mags[abs(freqs - 2000) <= 20].max())
    assert at_2khz < 0.002 * float(spectrum(heard, other_wide.rate)[1].max())  # folded: below -54 dB
    assert rms(narrow.pcm_since(mark)) < 60  # what is left: G.722's own noise near 4 kHz


def test_three_party_mix_of_both_codecs() -> None:
    sim = Sim()
    a, b, c = sim.peer(500, G722), sim.peer(1300, PCMU), sim.peer(2100, PCMA)
    for leg, peer in zip("abc", (a, b, c), strict=True):
        sim.join(leg, peer)
    sim.runtime.set_routes("c1", talk(("a", ("b", "c")), ("b", ("a", "c")), ("c", ("a", "b"))), {})
    mark = sim.settle(0.5)
    sim.run(0.4)
    assert peak_freqs(a.pcm_since(mark), 2, rate=a.rate) == pytest.approx([1300, 2100], abs=4)
    assert peak_freqs(b.pcm_since(mark), 2) == pytest.approx([500, 2100], abs=4)
    assert peak_freqs(c.pcm_since(mark), 2) == pytest.approx([500, 1300], abs=4)
    assert level_at(a.pcm_since(mark), 500, rate=a.rate) < 0.02  # never itself


def test_a_g722_leg_joining_a_plain_g711_conference_switches_it_to_wideband() -> None:
    """Routes set before the G.722 leg connects (a plain 8 kHz conference); its connect re-lays the
    conference out at 16 kHz, and its leaving brings it back."""
    sim = Sim()
    a, b, w = sim.peer(700, PCMU), sim.peer(1100, PCMU), sim.peer(1900, G722)
    sim.join("a", a)
    sim.join("b", b)
    sim.runtime.set_routes("c1", talk(("a", ("b", "w")), ("b", ("a", "w")), ("w", ("a", "b"))), {})
    sim.join("w", w)
    mark = sim.settle(0.5)
    sim.run(0.4)
    assert peak_freqs(w.pcm_since(mark), 2, rate=w.rate) == pytest.approx([700, 1100], abs=4)
    assert peak_freqs(a.pcm_since(mark), 2) == pytest.approx([1100, 1900], abs=4)
    sim.runtime.close_leg("w")
    mark = sim.settle(0.3)
    sim.run(0.4)
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(1100, abs=4)
    assert level_at(a.pcm_since(mark), 1900) < 0.02


def test_g722_rtp_timestamps_advance_160_per_20ms_with_160_byte_payloads() -> None:
    """RFC 3551 4.5.2: G.722's RTP clock is 8000 although it samples at 16 kHz."""
    sim = Sim()
    w = sim.peer(None, G722)
    sim.join("w", w)  # in no conference: silence, still G.722
    sim.run(0.2)
    packets = w.packets
    assert len(packets) == 10
    assert {p.payload_type for p in packets} == {G722}
    assert {len(p.payload) for p in packets} == {160}
    assert {(b.timestamp - a.timestamp) & 0xFFFF_FFFF for a, b in itertools.pairwise(packets)} == {160}
    assert rms(w.pcm_since(0)) < 30


def test_hold_music_and_messages_play_to_a_g722_leg() -> None:
    """Music and messages are 8 kHz sources: upsampled for a G.722 listener, in a wideband mix (here
    a held member beside two talking ones) and as a message replacing its routes."""
    sim = Sim()
    held, b, c = sim.peer(None, G722), sim.peer(700, PCMU), sim.peer(1100, G722)
    for leg, peer in (("a", held), ("b", b), ("c", c)):
        sim.join(leg, peer)
    legs = [LegAudio("a", (), Music.AGENT_HOLD), *talk(("b", ("c",)), ("c", ("b",)))]
    sim.runtime.set_routes("c1", legs, {Music.AGENT_HOLD: ToneSource(300)})
    mark = sim.settle(0.5)
    sim.run(0.5)
    assert dominant_freq(held.pcm_since(mark), held.rate) == pytest.approx(300, abs=4)
    assert level_at(held.pcm_since(mark), 700, rate=held.rate) < 0.02
    assert dominant_freq(b.pcm_since(mark)) == pytest.approx(1100, abs=4)
    assert dominant_freq(c.pcm_since(mark), c.rate) == pytest.approx(700, abs=4)
    sim.runtime.play("a", ToneSource(1200), token="hello")
    mark = sim.settle(0.1)
    sim.run(0.4)
    assert dominant_freq(held.pcm_since(mark), held.rate) == pytest.approx(1200, abs=4)


def test_dtmf_from_a_g711_leg_is_relayed_to_a_g722_leg() -> None:
    """telephone-event/8000 pairs with G722/8000: the same event clock as G.711's."""
    sim = Sim()
    w, n = sim.peer(None, G722), sim.peer(None, PCMU)
    sim.join("w", w)
    sim.join("n", n)
    sim.runtime.set_routes("c1", talk(("w", ("n",)), ("n", ("w",))), {})
    sim.run(0.1)
    packets = dtmf_packets("5", ssrc=n.ssrc, sequence=n.seq + 100, timestamp=77_000, payload_type=101)
    for _, packet in packets:
        sim.send("n", packet.serialize(), n.address)
    sim.run(0.3)
    assert DtmfReceived("n", "5") in sim.events
    events = [p for p in w.packets if p.payload_type == 101]
    assert events and events[0].payload[0] == 5  # the event code of digit 5
    assert events[0].marker


# As in test_runtime_routing: distinguishable tones whose low-order products land on none of them.


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 2), min_size=len(FREQS), max_size=len(FREQS)),  # conference of each leg
    st.lists(st.sets(st.integers(0, len(FREQS) - 1)), min_size=len(FREQS), max_size=len(FREQS)),
    st.lists(st.sampled_from((PCMU, PCMA, G722)), min_size=len(FREQS), max_size=len(FREQS)),
)
def test_nobody_hears_itself_or_another_conference_whatever_the_codecs(
    conf_of: list[int], hears: list[set[int]], codecs: list[int]
) -> None:
    assert_isolated(conf_of, hears, codecs)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=1200), st.integers(0, 2000)), min_size=1, max_size=30))
def test_hostile_g722_payloads_never_break_the_mix(packets: list[tuple[bytes, int]]) -> None:
    """Any bytes at any size and timestamp: ADPCM decodes anything, frames are cut to 20 ms, and
    every leg still gets one 160-byte packet per tick."""
    from bridgeline.media.rtp import RtpPacket

    sim = Sim()
    w, n = sim.peer(None, G722), sim.peer(None, PCMU)
    sim.join("w", w, talk=False)
    sim.join("n", n)
    sim.runtime.set_routes("c1", talk(("w", ("n",)), ("n", ("w",))), {})
    for i, (payload, ts_step) in enumerate(packets):
        packet = RtpPacket(
            payload_type=G722, sequence=i, timestamp=5000 + i * ts_step, ssrc=7, payload=payload
        )
        sim.send("w", packet.serialize(), w.address)
        sim.step()
    sim.run(0.3)
    ticks = len(packets) + 15
    assert len(w.packets) == len(n.packets) == ticks
    assert {len(p.payload) for p in w.packets} == {160}
    assert {len(p.payload) for p in n.packets if p.payload_type == PCMU} == {160}
