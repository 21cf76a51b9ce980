"""Bad input, RTCP, stream restarts, jitter and loss, bad parameters, and the tick schedule."""

from __future__ import annotations

import random

import pytest
from media_sim import PCMU, Sim, dominant_freq, rms

from bridgeline.core.effects import LegAudio
from bridgeline.core.model import Music
from bridgeline.media.player import ToneSource
from bridgeline.media.runtime import LATE_S, TICK_S, UnknownLeg

RTCP_RR = bytes([0x81, 201, 0x00, 0x01]) + (0x1234).to_bytes(4, "big")  # receiver report, one block-less
TWO_WAY = [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None)]


def test_malformed_datagrams_are_counted_and_dropped() -> None:
    rng = random.Random(7)
    garbage = [bytes([rng.randrange(0, 64)]) + rng.randbytes(rng.randrange(0, 200)) for _ in range(30)]
    garbage += [
        b"",
        b"\x80\x00\x00",  # truncated header
        bytes([0x40, 0]) + bytes(170),  # RTP version 1
        bytes([0x8F, 0]) + bytes(10),  # 15 CSRCs announced, none present
        bytes([0x90, 0]) + bytes(10) + b"\x00\x00\x00\x09",  # header extension longer than the packet
        bytes([0xA0, 0]) + bytes(10) + b"\xff",  # padding longer than the packet
    ]
    sim = Sim()
    a, b = sim.peer(440), sim.peer(880)
    sim.join("a", a)
    sim.join("b", b)
    sim.runtime.set_routes("c1", TWO_WAY, {})
    for data in garbage:
        sim.send("a", data, b.address)  # from b's address: a foreign source, but garbage first
    assert sim.runtime.counters.malformed_in == len(garbage)
    mark = sim.settle(0.3)
    sim.run(0.3)
    assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)  # a still heard
    assert a.count_since(mark) == 15  # garbage from b's address did not latch a to it
    assert sim.runtime.counters.rtcp_in == 0


def test_rtcp_is_counted_on_either_port() -> None:
    sim = Sim()
    a = sim.peer(None)
    sim.join("a", a, talk=False)
    sim.send("a", RTCP_RR, a.address)  # rtcp-mux style, on the RTP port
    sim.send("a", RTCP_RR, a.address, kind="rtcp")
    sim.send("a", RTCP_RR + b"\x81", a.address, kind="rtcp")  # trailing byte: malformed
    c = sim.runtime.counters
    assert c.rtcp_in == 2 and c.malformed_in == 1


def test_unknown_legs_and_bad_parameters() -> None:
    sim = Sim()
    rt = sim.runtime
    with pytest.raises(UnknownLeg):
        rt.connect_leg(
            "x", remote=("127.0.0.1", 9), payload_type=0, telephone_event_pt=None, send=True, now=0
        )
    with pytest.raises(UnknownLeg):
        rt.update_leg("x", send=False, now=0)
    rt.close_leg("x")  # idempotent, also for legs never opened
    rt.receive("x", "rtp", b"\x80\x00" + bytes(170), ("127.0.0.1", 9), sim.now)  # dropped, no error
    rt.open_leg("x")
    rt.open_leg("x")
    assert rt.leg_count == 1
    for pt, ptime in ((18, 20), (PCMU, 25), (PCMU, 140)):
        with pytest.raises(ValueError):
            rt.connect_leg(
                "x",
                remote=("127.0.0.1", 9),
                payload_type=pt,
                telephone_event_pt=None,
                send=True,
                now=0,
                ptime_ms=ptime,
            )
    # Routes may name legs that are not open (yet): they are silent, nothing breaks.
    rt.set_routes("c1", [LegAudio("x", ("ghost",), None), LegAudio("ghost", ("x",), Music.WAIT)], {})
    sim.run(0.06)
    rt.close_leg("x")
    rt.set_routes("c1", [], {})
    assert rt.conference_count == 0 and rt.leg_count == 0


def test_ssrc_change_restarts_the_stream() -> None:
    sim = Sim()
    a, b = sim.peer(440), sim.peer(None)
    sim.join("a", a)
    sim.join("b", b)
    sim.runtime.set_routes("c1", TWO_WAY, {})
    sim.run(0.3)
    a.tone = ToneSource(1200)  # same address, new stream and tone
    a.ssrc, a.seq, a.ts = 0xBEEF, 7, 999_999_999
    mark = sim.settle(0.4)
    sim.run(0.3)
    assert dominant_freq(b.pcm_since(mark)) == pytest.approx(1200, abs=4)


def test_jitter_and_loss_are_smoothed_into_one_frame_per_tick() -> None:
    """Packets arrive late, early, reordered and some never: the listener still gets one 20 ms frame
    per tick of the talker's tone (concealed over the losses), never a burst or a hole."""
    sim = Sim()
    a, b = sim.peer(440), sim.peer(None)
    sim.join("a", a, talk=False)
    sim.join("b", b)
    sim.runtime.set_routes("c1", TWO_WAY, {})
    rng = random.Random(3)
    in_flight: list[tuple[float, bytes]] = []
    for n in range(100):
        packet = a.audio_packet()
        if n % 17 != 5:  # about 6 % lost
            in_flight.append((sim.now + rng.uniform(0, 0.05), packet))  # up to 50 ms of jitter
        for _, data in sorted(d for d in in_flight if d[0] <= sim.now):
            sim.send("a", data, a.address)
        in_flight = [d for d in in_flight if d[0] > sim.now]
        sim.step()
    ticks = b.packets
    assert len(ticks) == 100  # one per tick
    heard = b.pcm_since(sim.now - 1.2)
    assert len(heard) == 60 * 160
    assert dominant_freq(heard) == pytest.approx(440, abs=4)
    frames = heard.reshape(60, 160)
    assert min(rms(frame) for frame in frames) > 1000  # no silent hole where packets were lost


def test_ticks_on_absolute_deadlines_and_skip_when_far_behind() -> None:
    """Every 20 ms slot is ticked or counted as skipped; a stall of more than 3 ticks is skipped,
    not replayed; lateness is measured against the absolute deadline."""
    sim = Sim()
    rt = sim.runtime
    a = sim.peer(None)
    sim.join("a", a, talk=False)
    origin = rt.next_tick_at
    sent: list[bytes] = []
    assert rt.tick(origin - 0.001) == []  # not due yet: nothing happens
    assert rt.tick_stats.ticks == 0
    for n in range(10):  # on time, or 3 ms late: neither late nor skipped
        sent += [data for _, data, _ in rt.tick(origin + n * TICK_S + (0.003 if n % 2 else 0))]
    assert (rt.tick_stats.ticks, rt.tick_stats.late, rt.tick_stats.skipped) == (10, 0, 0)
    assert rt.next_tick_at == pytest.approx(origin + 10 * TICK_S)
    assert len(sent) == 10
    sent += [
        data for _, data, _ in rt.tick(rt.next_tick_at + LATE_S + 0.001)
    ]  # late, but within 3 ticks: runs, and the next is due
    assert rt.tick_stats.late == 1 and rt.tick_stats.skipped == 0
    assert rt.next_tick_at == pytest.approx(origin + 11 * TICK_S)
    stall = rt.next_tick_at + 0.25  # a 250 ms stall (GC, a blocking call)
    out = rt.tick(stall)
    assert len(out) == 1  # one tick, not a burst of the 12 missed
    sent.append(out[0][1])
    stats = rt.tick_stats
    assert stats.late == 2 and stats.skipped == 12 and stats.max_lateness == pytest.approx(0.25)
    assert rt.next_tick_at == pytest.approx(origin + 24 * TICK_S)  # the schedule did not drift
    assert rt.next_tick_at <= stall + TICK_S
    assert stats.ticks + stats.skipped == 24
    seqs = [int.from_bytes(data[2:4], "big") for data in sent]
    assert len(seqs) == 12 and all((s - seqs[0]) & 0xFFFF == i for i, s in enumerate(seqs))  # no gap


def test_a_tick_that_raises_is_not_retried_and_the_next_one_runs() -> None:
    class Broken:
        finished = False

        def next_frame(self) -> None:
            raise RuntimeError("a source bug")

    sim = Sim()
    a = sim.peer(None)
    sim.join("a", a, talk=False)
    sim.runtime.play("a", Broken())  # type: ignore[arg-type]
    due = sim.runtime.next_tick_at
    with pytest.raises(RuntimeError):
        sim.runtime.tick(due)
    assert sim.runtime.next_tick_at == pytest.approx(due + TICK_S)  # the shell's loop moves on
    sim.runtime.play("a", ToneSource(500))
    sim.now = sim.runtime.next_tick_at
    sim.run(0.1)
    assert len(a.packets) == 5
