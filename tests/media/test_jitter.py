"""Jitter buffer: reordering, duplicates, loss concealment, wrap-around, SSRC change, 10/30 ms ptime."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray

from bridgeline.media import g711
from bridgeline.media.jitter import FRAME_SAMPLES, JitterBuffer
from bridgeline.media.rtp import RtpPacket

Frame = NDArray[np.int16] | None


def audio(index: int, n: int = FRAME_SAMPLES) -> NDArray[np.int16]:
    """A recognisable, exactly G.711-representable ramp for packet `index`."""
    pcm = ((np.arange(n) * 37 + index * 1009) % 16000 - 8000).astype(np.int16)
    return g711.ulaw_decode(g711.ulaw_encode(pcm))


def packet(
    index: int, *, seq0: int = 1000, ts0: int = 50_000, n: int = FRAME_SAMPLES, ssrc: int = 7, pt: int = 0
) -> RtpPacket:
    return RtpPacket(
        payload_type=pt,
        sequence=(seq0 + index) & 0xFFFF,
        timestamp=(ts0 + index * n) & 0xFFFF_FFFF,
        ssrc=ssrc,
        payload=g711.ulaw_encode(audio(index, n)),
    )


def run(jb: JitterBuffer, arrivals: Sequence[Sequence[RtpPacket]], extra_ticks: int = 2) -> list[Frame]:
    """Per 20 ms tick: push that tick's arrivals, then pull one frame; the extra ticks drain a 60 ms
    buffer exactly, so trailing concealment does not show up in the stats."""
    out: list[Frame] = []
    for tick in range(len(arrivals) + extra_ticks):
        for p in arrivals[tick] if tick < len(arrivals) else ():
            jb.push(p, now=tick * 0.02)
        out.append(jb.pop_frame())
    return out


def played(frames: Sequence[Frame]) -> list[Frame]:
    """Drop the leading Nones of the prefill."""
    start = next(i for i, f in enumerate(frames) if f is not None)
    return list(frames[start:])


def same(a: Frame, b: NDArray[np.int16]) -> bool:
    return a is not None and a.shape == b.shape and bool((a == b).all())


def test_in_order_stream_plays_after_prefill() -> None:
    jb = JitterBuffer(delay_ms=60)
    frames = run(jb, [[packet(i)] for i in range(10)])
    assert frames[:2] == [None, None]  # 60 ms of prefill
    assert all(same(frames[i + 2], audio(i)) for i in range(10))
    assert jb.stats.played == 10 and jb.stats.late == jb.stats.duplicate == 0
    assert jb.jitter_ms == 0.0


def test_reordering_within_window() -> None:
    order = [0, 2, 1, 3, 6, 4, 5, 7, 9, 8, 10, 11]
    frames = played(run(JitterBuffer(), [[packet(i)] for i in order]))
    assert all(same(frames[i], audio(i)) for i in range(12))


@given(st.lists(st.floats(0, 2.4), min_size=5, max_size=40))
def test_any_displacement_up_to_two_packets_is_repaired(jitter: list[float]) -> None:
    order = sorted(range(len(jitter)), key=lambda i: i + jitter[i])
    frames = played(run(JitterBuffer(delay_ms=60), [[packet(i)] for i in order]))
    assert all(same(frames[i], audio(i)) for i in range(len(order)))


def test_duplicates_are_dropped() -> None:
    jb = JitterBuffer()
    arrivals = [[packet(0)], [packet(1), packet(1)], [packet(2)], [packet(3), packet(0)], [packet(4)]]
    frames = played(run(jb, arrivals))
    assert all(same(frames[i], audio(i)) for i in range(5))
    assert jb.stats.duplicate == 1  # the copy of packet 1, still buffered
    assert jb.stats.late == 1  # the copy of packet 0, already played


def test_late_packet_is_dropped() -> None:
    jb = JitterBuffer(delay_ms=40)
    arrivals = [[packet(i)] for i in range(8) if i != 3] + [[packet(3)]]
    frames = played(run(jb, arrivals, extra_ticks=1))
    assert jb.stats.late == 1 and jb.stats.concealed == 1
    assert same(frames[4], audio(4))


def test_single_loss_is_concealed_by_attenuated_repeat() -> None:
    jb = JitterBuffer(conceal_gains=(0.5, 0.25))
    frames = played(run(jb, [[packet(i)] if i != 4 else [] for i in range(8)]))
    assert same(frames[3], audio(3))
    assert same(frames[4], (audio(3) * 0.5).astype(np.int16))
    assert same(frames[5], audio(5))
    assert jb.stats.concealed == 1


def test_burst_loss_fades_then_goes_silent() -> None:
    jb = JitterBuffer(conceal_gains=(0.5, 0.25))
    frames = played(run(jb, [[packet(i)] if not 3 <= i <= 6 else [] for i in range(10)]))
    assert same(frames[3], (audio(2) * 0.5).astype(np.int16))
    assert same(frames[4], (audio(2) * 0.25).astype(np.int16))
    assert frames[5] is None and frames[6] is None
    assert same(frames[7], audio(7))
    assert jb.stats.concealed == 2 and jb.stats.silent == 2


def test_nothing_received_means_none() -> None:
    jb = JitterBuffer()
    assert [jb.pop_frame() for _ in range(5)] == [None] * 5
    assert jb.buffered_ms == 0.0


def test_sequence_and_timestamp_wrap_around() -> None:
    seq0, ts0 = 65533, 0xFFFF_FFFF - 2 * FRAME_SAMPLES + 1
    order = [0, 1, 3, 2, 4, 5, 6, 7]  # reordering right across 65535 -> 0
    frames = played(run(JitterBuffer(), [[packet(i, seq0=seq0, ts0=ts0)] for i in order]))
    assert all(same(frames[i], audio(i)) for i in range(8))


def test_ssrc_change_resets() -> None:
    jb = JitterBuffer(delay_ms=40)
    old = [[packet(i, ssrc=1)] for i in range(4)]
    new = [[packet(i + 100, ssrc=2, seq0=5, ts0=999)] for i in range(6)]
    frames = run(jb, old + new, extra_ticks=1)
    assert jb.stats.resets == 1 and jb.ssrc == 2
    tail = played(frames[5:])
    assert all(same(tail[i], audio(i + 100)) for i in range(6))


def test_10ms_packets_are_reframed() -> None:
    jb = JitterBuffer()
    arrivals = [[packet(2 * t, n=80), packet(2 * t + 1, n=80)] for t in range(8)]
    frames = played(run(jb, arrivals))
    for t in range(8):
        assert same(frames[t], np.concatenate([audio(2 * t, 80), audio(2 * t + 1, 80)]))


def test_30ms_packets_are_reframed() -> None:
    jb = JitterBuffer()
    # Two 30 ms packets every three ticks, as a 30 ms sender would deliver them.
    arrivals: list[list[RtpPacket]] = [[] for _ in range(12)]
    for i in range(8):
        arrivals[(i * 3) // 2].append(packet(i, n=240))
    stream = np.concatenate([audio(i, 240) for i in range(8)])
    frames = played(run(jb, arrivals))
    for t in range(12):
        assert same(frames[t], stream[t * FRAME_SAMPLES : (t + 1) * FRAME_SAMPLES])


def test_partly_late_packet_still_plays_its_remainder() -> None:
    jb = JitterBuffer(delay_ms=40)
    stream = np.concatenate([audio(i, 240) for i in range(3)])
    frames = run(jb, [[packet(0, n=240)], [], [], [packet(1, n=240)], [packet(2, n=240)]], extra_ticks=0)
    assert frames[0] is None and same(frames[1], stream[:160])
    assert same(frames[2], np.concatenate([stream[160:240], np.zeros(80, np.int16)]))  # 240.. missing
    assert same(frames[3], stream[320:480])  # packet 1 came 80 samples late: its tail still plays
    assert jb.stats.late == 0


def test_non_audio_payload_types_are_ignored() -> None:
    jb = JitterBuffer()
    event = RtpPacket(payload_type=101, sequence=1, timestamp=0, ssrc=7, payload=b"\x01\x0a\x00\xa0")
    assert not jb.push(event, 0.0)
    assert jb.stats.ignored == 1 and jb.ssrc is None


def test_pcma_is_decoded_with_its_own_table() -> None:
    jb = JitterBuffer(delay_ms=0)
    pcm = audio(3)
    p = RtpPacket(payload_type=8, sequence=1, timestamp=0, ssrc=7, payload=g711.alaw_encode(pcm))
    assert jb.push(p, 0.0)
    assert same(jb.pop_frame(), g711.alaw_decode(g711.alaw_encode(pcm)))


def test_silence_suppression_gap_plays_silence_then_resumes() -> None:
    jb = JitterBuffer(idle_frames=4)
    talk = [[packet(i)] for i in range(5)]
    resumed = [[packet(i)] for i in range(50, 58)]  # timestamps jump by 45 frames, no packets between
    frames = played(run(jb, talk + [[]] * 45 + resumed))
    assert all(same(frames[i], audio(i)) for i in range(5))
    tail = played(frames[5 + 6 :])
    assert all(same(tail[i], audio(50 + i)) for i in range(8))


def test_sender_behind_us_is_followed_after_starving() -> None:
    jb = JitterBuffer(delay_ms=40)
    first = [[packet(i)] for i in range(5)]
    # The sender stalls for three ticks, then carries on from where it was (timestamps now behind).
    frames = run(jb, [*first, [], [], [], *[[packet(i)] for i in range(5, 12)]])
    assert jb.stats.resets == 1
    tail = played(frames[9:])
    assert all(same(tail[i], audio(5 + i)) for i in range(7))


def test_overfull_buffer_drops_to_target_delay() -> None:
    jb = JitterBuffer(delay_ms=60, max_delay_ms=200)
    for i in range(30):  # a 600 ms burst after a network stall
        jb.push(packet(i), now=0.0)
    assert jb.stats.dropped > 0 and 60 <= jb.buffered_ms <= 200
    frames = played([jb.pop_frame() for _ in range(12)])
    first = next(k for k in range(30) if same(frames[0], audio(k)))
    assert first >= 20  # the oldest audio was discarded ...
    assert all(same(frames[i], audio(first + i)) for i in range(30 - first))  # ... the rest plays in order


def test_jitter_estimate_grows_with_irregular_arrival() -> None:
    jb = JitterBuffer()
    for i in range(50):
        jb.push(packet(i), now=i * 0.02 + (0.015 if i % 2 else 0.0))
    assert 3.0 < jb.jitter_ms < 15.0


@given(
    st.lists(
        st.lists(
            st.tuples(st.integers(0, 80), st.sampled_from([80, 160, 240]), st.sampled_from([1, 2])),
            max_size=4,
        ),
        max_size=60,
    )
)
def test_arbitrary_arrivals_never_break_the_buffer(ticks: list[list[tuple[int, int, int]]]) -> None:
    jb = JitterBuffer()
    for t, arrivals in enumerate(ticks):
        for index, n, ssrc in arrivals:
            jb.push(packet(index, n=n, ssrc=ssrc), now=t * 0.02)
        frame = jb.pop_frame()
        assert frame is None or (frame.shape == (FRAME_SAMPLES,) and frame.dtype == np.int16)
        assert jb.buffered_ms <= 200 + 30


def test_whole_packets_come_out_undecoded_and_the_rest_as_samples() -> None:
    """pop_payload forwards a 20 ms packet's codes untouched; reframed and concealed audio is decoded."""
    jb = JitterBuffer()
    whole = [packet(i, pt=g711.PCMA) for i in range(4)]
    for i, p in enumerate(whole):
        jb.push(p, now=i * 0.02)
    got = [jb.pop_payload() for _ in range(4)]
    assert got[:2] == [None, None]  # prefill
    assert got[2:] == [(g711.PCMA, whole[0].payload), (g711.PCMA, whole[1].payload)]
    jb = JitterBuffer(delay_ms=20)
    jb.push(packet(0, n=80), now=0.0)
    jb.push(packet(1, n=80), now=0.01)
    frame = jb.pop_payload()
    assert isinstance(frame, np.ndarray) and same(frame, np.concatenate([audio(0, 80), audio(1, 80)]))
    concealed = jb.pop_payload()
    assert isinstance(concealed, np.ndarray) and same(concealed, (frame * 0.7).astype(np.int16))
