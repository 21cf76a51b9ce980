"""Opus legs through the MediaRuntime on a virtual clock: RTP on the 48 kHz clock, tones heard at
the right frequency and level through a conference with G.711 and G.722 legs, loss concealment,
and the peer's other packet times. No sockets, no waiting."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from media_sim import (
    FREQS,
    G722,
    OPUS,
    PCMA,
    PCMU,
    Sim,
    SimPeer,
    assert_isolated,
    dominant_freq,
    level_at,
    peak_freqs,
    rms,
)

from bridgeline.core.effects import LegAudio
from bridgeline.core.model import Music
from bridgeline.media.dtmf import dtmf_packets
from bridgeline.media.player import ToneSource
from bridgeline.media.rtp import RtpPacket
from bridgeline.media.runtime import DtmfReceived
from bridgeline.media.srtp import SrtpKeys


def talk(*pairs: tuple[str, tuple[str, ...]]) -> list[LegAudio]:
    return [LegAudio(leg, hears, None) for leg, hears in pairs]


def test_opus_and_g711_legs_hear_each_other_at_the_right_frequency_and_level() -> None:
    sim = Sim()
    wide, narrow = sim.peer(1000, OPUS), sim.peer(440, PCMU)
    sim.join("o", wide)
    sim.join("n", narrow)
    sim.runtime.set_routes("c1", talk(("o", ("n",)), ("n", ("o",))), {})
    mark = sim.settle(0.5)
    sim.run(0.5)
    assert {p.payload_type for p in wide.packets} == {OPUS}
    assert {p.payload_type for p in narrow.packets} == {PCMU}
    heard_by_opus, heard_by_g711 = wide.pcm_since(mark), narrow.pcm_since(mark)
    assert heard_by_opus.size == 2 * heard_by_g711.size  # 16 kHz against 8 kHz, same duration
    assert dominant_freq(heard_by_opus, wide.rate) == pytest.approx(440, abs=4)
    assert dominant_freq(heard_by_g711) == pytest.approx(1000, abs=4)
    # both tones are sent at 0.25 of full scale (RMS ~5800): no loss of level on the way
    assert rms(heard_by_g711) > 4500 and rms(heard_by_opus) > 4500


def test_three_party_mix_of_opus_g722_and_g711() -> None:
    sim = Sim()
    o, w, n = sim.peer(500, OPUS), sim.peer(1300, G722), sim.peer(2100, PCMU)
    for leg, peer in zip("own", (o, w, n), strict=True):
        sim.join(leg, peer)
    sim.runtime.set_routes("c1", talk(("o", ("w", "n")), ("w", ("o", "n")), ("n", ("o", "w"))), {})
    mark = sim.settle(0.5)
    sim.run(0.4)
    assert peak_freqs(o.pcm_since(mark), 2, rate=o.rate) == pytest.approx([1300, 2100], abs=4)
    assert peak_freqs(w.pcm_since(mark), 2, rate=w.rate) == pytest.approx([500, 2100], abs=4)
    assert peak_freqs(n.pcm_since(mark), 2) == pytest.approx([500, 1300], abs=4)
    assert level_at(o.pcm_since(mark), 500, rate=o.rate) < 0.02  # never itself


def test_a_6khz_tone_from_opus_reaches_g722_ears_and_no_alias_reaches_g711_ears() -> None:
    sim = Sim()
    high, wide, narrow = sim.peer(6000, OPUS), sim.peer(None, G722), sim.peer(None, PCMU)
    for leg, peer in (("h", high), ("w", wide), ("n", narrow)):
        sim.join(leg, peer)
    sim.runtime.set_routes("c1", talk(("h", ("w", "n")), ("w", ("h", "n")), ("n", ("h", "w"))), {})
    mark = sim.settle(0.5)
    sim.run(0.5)
    assert dominant_freq(wide.pcm_since(mark), wide.rate) == pytest.approx(6000, abs=4)
    assert rms(wide.pcm_since(mark)) > 3000
    assert rms(narrow.pcm_since(mark)) < 60  # filtered out, not folded to 2 kHz


@pytest.mark.parametrize("ptime_ms", [20, 40, 60])
def test_opus_rtp_runs_on_the_48khz_clock(ptime_ms: int) -> None:
    """RFC 7587 4.1: timestamps count 48 kHz samples whatever the audio's rate: +960 per 20 ms; one
    Opus packet per packet time, whose size varies with what it carries."""
    sim = Sim()
    o, n = sim.peer(None, OPUS), sim.peer(700, PCMU)
    sim.join("o", o, ptime_ms=ptime_ms)
    sim.join("n", n)
    sim.runtime.set_routes("c1", talk(("o", ("n",)), ("n", ("o",))), {})
    sim.run(1.2)
    packets = o.packets
    assert len(packets) == 1200 // ptime_ms
    assert {p.payload_type for p in packets} == {OPUS}
    steps = {(b.timestamp - a.timestamp) & 0xFFFF_FFFF for a, b in itertools.pairwise(packets)}
    assert steps == {48 * ptime_ms}
    assert {(b.sequence - a.sequence) & 0xFFFF for a, b in itertools.pairwise(packets)} == {1}
    assert len({len(p.payload) for p in packets}) > 1  # variable bit rate: sizes vary
    heard = o.pcm_since(0.0)
    assert heard.size == 1200 * 16  # each packet decodes to its packet time at 16 kHz
    assert dominant_freq(heard[-8000:], o.rate) == pytest.approx(700, abs=4)


def frame_levels(pcm: np.ndarray, rate: int) -> list[float]:
    """The RMS of each 20 ms of `pcm`."""
    size = rate // 50
    return [rms(pcm[i : i + size]) for i in range(0, pcm.size - size + 1, size)]


def run_lossy(sim: Sim, sender: SimPeer, leg_id: str, seconds: float, *, lose: set[int]) -> float:
    """Like sim.run, but the sender's packets numbered (from 0, this call) in `lose` never arrive."""
    mark, sent = sim.now, 0
    sim.stop_talking(sender)
    for _ in range(round(seconds / 0.02)):
        for datagram in sender.audio_packets():
            if sent not in lose:
                sim.send(leg_id, datagram, sender.address)
            sent += 1
        sim.step()
    return mark


def test_lost_opus_packets_are_concealed_not_silent() -> None:
    """One packet lost in every five: the decoder's loss concealment fills the hole, so a G.711
    listener hears the tone on without a drop-out in any 20 ms (FEC: test_opus_jitter.py)."""
    sim = Sim()
    o, n = sim.peer(800, OPUS), sim.peer(None, PCMU)
    sim.join("o", o)
    sim.join("n", n)
    sim.runtime.set_routes("c1", talk(("o", ("n",)), ("n", ("o",))), {})
    sim.settle(0.5)
    run_lossy(sim, o, "o", 0.4, lose=set())
    mark = run_lossy(sim, o, "o", 1.0, lose=set(range(2, 50, 5)))
    stats = sim.runtime._legs["o"].jitter.stats
    assert stats.concealed == 10
    heard = n.pcm_since(mark + 0.2)  # (the runtime plays 60 ms behind)
    levels = frame_levels(heard, 8000)
    assert min(levels) > 0.5 * max(levels)  # silence in the holes would read as ~0
    assert dominant_freq(heard) == pytest.approx(800, abs=4)


def test_a_long_loss_is_concealed_briefly_then_silent_then_playout_resumes() -> None:
    sim = Sim()
    o, n = sim.peer(800, OPUS), sim.peer(None, PCMU)
    sim.join("o", o)
    sim.join("n", n)
    sim.runtime.set_routes("c1", talk(("o", ("n",)), ("n", ("o",))), {})
    sim.settle(0.5)
    mark = run_lossy(sim, o, "o", 1.2, lose=set(range(10, 30)))  # 400 ms lost
    stats = sim.runtime._legs["o"].jitter.stats
    assert stats.concealed == 3  # conceal_ticks, then silence
    assert stats.silent == 8  # then silence until the talkspurt is over (idle_frames: a reset)
    levels = frame_levels(n.pcm_since(mark), 8000)
    assert min(levels) < 10  # silence in the middle
    assert min(levels[-10:]) > 3000  # and the tone again after it


@pytest.mark.parametrize("opus_ms", [10, 40, 60])
def test_a_peer_sending_other_opus_packet_times_is_heard_whole(opus_ms: int) -> None:
    sim = Sim()
    o, n = sim.peer(1200, OPUS), sim.peer(None, PCMU)
    o.opus_ms = opus_ms
    sim.join("o", o)
    sim.join("n", n)
    sim.runtime.set_routes("c1", talk(("o", ("n",)), ("n", ("o",))), {})
    mark = sim.settle(0.5)
    sim.run(1.0)
    stats = sim.runtime._legs["o"].jitter.stats
    assert stats.concealed == 0 and stats.late == 0
    heard = n.pcm_since(mark)
    assert dominant_freq(heard) == pytest.approx(1200, abs=4)
    levels = frame_levels(heard, 8000)
    assert min(levels) > 0.8 * max(levels)


def test_reordered_and_duplicated_opus_packets_play_in_order() -> None:
    sim = Sim()
    o, n = sim.peer(900, OPUS), sim.peer(None, PCMU)
    sim.join("o", o)
    sim.join("n", n)
    sim.runtime.set_routes("c1", talk(("o", ("n",)), ("n", ("o",))), {})
    sim.settle(0.5)
    sim.stop_talking(o)
    mark = sim.now
    held: list[bytes] = []
    for tick in range(50):
        datagrams = o.audio_packets()
        if tick % 4 == 1:
            held = datagrams  # arrives one tick late, after its successor
            datagrams = []
        elif held:
            datagrams = [*datagrams, *held, *held]  # late, and twice
            held = []
        for datagram in datagrams:
            sim.send("o", datagram, o.address)
        sim.step()
    stats = sim.runtime._legs["o"].jitter.stats
    assert stats.duplicate > 0 and stats.concealed == 0
    heard = n.pcm_since(mark + 0.2)
    levels = frame_levels(heard, 8000)
    assert min(levels) > 0.8 * max(levels)
    assert dominant_freq(heard) == pytest.approx(900, abs=4)


def test_garbage_and_foreign_payload_types_on_an_opus_leg_are_ignored() -> None:
    """Payloads that are not Opus packets (by their TOC byte: empty, a frame count with no frames,
    over 120 ms) never reach the decoder nor move the playout point (their timestamps are far
    off), and a G.711 packet from the same phone is not taken as Opus."""
    sim = Sim()
    o, n = sim.peer(900, OPUS), sim.peer(None, PCMU)
    sim.join("o", o)
    sim.join("n", n)
    sim.runtime.set_routes("c1", talk(("o", ("n",)), ("n", ("o",))), {})
    mark = sim.settle(0.5)
    for seq, payload in enumerate((b"", b"\x03", b"\xff\xff\xff\xff", b"\x0b\x99" + bytes(30))):
        bad = RtpPacket(OPUS, 30000 + seq, 10_000_000 + 960 * seq, o.ssrc, payload).serialize()
        sim.send("o", bad, o.address)
        pcmu = RtpPacket(PCMU, 31000 + seq, 20_000_000, o.ssrc, b"\x00" * 160).serialize()
        sim.send("o", pcmu, o.address)
    sim.run(0.5)
    assert sim.runtime._legs["o"].jitter.stats.ignored == 4
    assert dominant_freq(n.pcm_since(mark)) == pytest.approx(900, abs=4)
    assert min(frame_levels(n.pcm_since(mark), 8000)) > 3000


def test_dtmf_crosses_between_an_opus_leg_and_a_g711_leg_on_each_ones_clock() -> None:
    """telephone-event/48000 beside Opus (RFC 4733 2.1: the audio codec's clock): a digit from the
    Opus phone is read, and one relayed to it grows by 960 per 20 ms packet."""
    sim = Sim()
    o, n = sim.peer(None, OPUS), sim.peer(None, PCMU)
    sim.join("o", o, telephone_event_pt=110)
    sim.join("n", n)
    sim.runtime.set_routes("c1", talk(("o", ("n",)), ("n", ("o",))), {})
    sim.run(0.1)
    for digit, leg, peer, pt, clock in (("7", "o", o, 110, 48000), ("5", "n", n, 101, 8000)):
        for _, packet in dtmf_packets(
            digit,
            ssrc=peer.ssrc,
            sequence=peer.seq + 100,
            timestamp=77_000,
            payload_type=pt,
            clock_rate=clock,
        ):
            sim.send(leg, packet.serialize(), peer.address)
    sim.run(0.4)
    assert DtmfReceived("o", "7") in sim.events and DtmfReceived("n", "5") in sim.events
    to_opus = [p for p in o.packets if p.payload_type == 110]
    assert to_opus and to_opus[0].payload[0] == 5 and to_opus[0].marker
    durations = [int.from_bytes(p.payload[2:4], "big") for p in to_opus]
    assert durations[:5] == [960, 1920, 2880, 3840, 4800]  # 100 ms on the 48 kHz clock
    to_g711 = [p for p in n.packets if p.payload_type == 101]
    assert [int.from_bytes(p.payload[2:4], "big") for p in to_g711][:2] == [160, 320]
    audio = [p for p in o.packets if p.payload_type == OPUS]
    gaps = {(b.timestamp - a.timestamp) & 0xFFFF_FFFF for a, b in itertools.pairwise(audio)}
    assert gaps <= {960, 960 * 6, 960 * 7, 960 * 8}  # audio resumes on the same clock after the event


@settings(max_examples=25, deadline=None)
@example(  # an Opus listener hearing two G.711 legs: the second tone ramps in over about a second
    [1, 2, 2, 1, 2, 2],
    [{0, 3}, {0, 4, 5}, {0, 1, 4}, {2}, {1, 2, 4, 5}, {1, 3, 4}],
    [PCMU, PCMA, OPUS, PCMU, PCMA, PCMU],
)
@example(  # an Opus listener in a six-leg conference: five tones in one Opus stream, more coding noise
    [0, 0, 0, 0, 0, 0],
    [set(), set(), set(), {0, 1, 2, 3, 4, 5}, set(), set()],
    [PCMU, PCMU, G722, OPUS, PCMU, OPUS],
)
@given(
    st.lists(st.integers(0, 2), min_size=len(FREQS), max_size=len(FREQS)),  # conference of each leg
    st.lists(st.sets(st.integers(0, len(FREQS) - 1)), min_size=len(FREQS), max_size=len(FREQS)),
    st.lists(st.sampled_from((PCMU, PCMA, G722, OPUS)), min_size=len(FREQS), max_size=len(FREQS)),
)
def test_nobody_hears_itself_or_another_conference_with_opus_legs_among_them(
    conf_of: list[int], hears: list[set[int]], codecs: list[int]
) -> None:
    assert_isolated(conf_of, hears, codecs)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=1200), st.integers(0, 6000)), min_size=1, max_size=30))
def test_hostile_opus_payloads_never_break_the_mix(packets: list[tuple[bytes, int]]) -> None:
    """Any bytes at any size and timestamp under the Opus number: every leg still gets its packet
    each tick, the Opus one a real Opus packet on the 48 kHz clock."""
    sim = Sim()
    o, n = sim.peer(None, OPUS), sim.peer(None, PCMU)
    sim.join("o", o, talk=False)
    sim.join("n", n)
    sim.runtime.set_routes("c1", talk(("o", ("n",)), ("n", ("o",))), {})
    for i, (payload, ts_step) in enumerate(packets):
        packet = RtpPacket(
            payload_type=OPUS, sequence=i, timestamp=5000 + i * ts_step, ssrc=7, payload=payload
        )
        sim.send("o", packet.serialize(), o.address)
        sim.step()
    sim.run(0.3)
    ticks = len(packets) + 15
    assert len(o.packets) == len(n.packets) == ticks
    assert {(b.timestamp - a.timestamp) & 0xFFFF_FFFF for a, b in itertools.pairwise(o.packets)} <= {960}
    assert o.pcm_since(0.0).size == ticks * 320  # each decodes to 20 ms
    assert {len(p.payload) for p in n.packets if p.payload_type == PCMU} == {160}


def test_hold_music_and_a_message_reach_an_opus_leg() -> None:
    """Music and messages are 8 kHz sources: upsampled, then encoded into the Opus leg's packets."""
    sim = Sim()
    held, b, c = sim.peer(None, OPUS), sim.peer(700, PCMU), sim.peer(1100, PCMU)
    for leg, peer in (("a", held), ("b", b), ("c", c)):
        sim.join(leg, peer)
    legs = [LegAudio("a", (), Music.AGENT_HOLD), *talk(("b", ("c",)), ("c", ("b",)))]
    sim.runtime.set_routes("c1", legs, {Music.AGENT_HOLD: ToneSource(300)})
    mark = sim.settle(0.5)
    sim.run(0.5)
    assert dominant_freq(held.pcm_since(mark), held.rate) == pytest.approx(300, abs=4)
    assert level_at(held.pcm_since(mark), 700, rate=held.rate) < 0.05
    sim.runtime.play("a", ToneSource(1200), token="hello")
    mark = sim.settle(0.1)
    sim.run(0.4)
    assert dominant_freq(held.pcm_since(mark), held.rate) == pytest.approx(1200, abs=4)


def test_an_srtp_opus_leg_hears_and_is_heard() -> None:
    sim = Sim()
    o, n = sim.peer(1000, OPUS), sim.peer(440, PCMU)
    sim.join("o", o, srtp=SrtpKeys("AES_CM_128_HMAC_SHA1_80", bytes(range(30)), bytes(range(30, 60))))
    sim.join("n", n)
    sim.runtime.set_routes("c1", talk(("o", ("n",)), ("n", ("o",))), {})
    mark = sim.settle(0.5)
    sim.run(0.5)
    assert o.wire and all(len(d) == 12 + len(p.payload) + 10 for d, p in zip(o.wire, o.packets, strict=True))
    assert dominant_freq(o.pcm_since(mark), o.rate) == pytest.approx(440, abs=4)
    assert dominant_freq(n.pcm_since(mark)) == pytest.approx(1000, abs=4)
