"""Bad input, RTCP, DTMF, the port pool, teardown without leaks, and the tick schedule."""

from __future__ import annotations

import asyncio
import random
import socket
import time

import pytest
from media_peer import dominant_freq, join, peers, port_range, settle, until

from bridgeline.adapters.carriers.sip.media_engine import (
    MediaEngine,
    MediaPortsExhausted,
    UnknownLeg,
)
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.core.model import Music
from bridgeline.media import g711
from bridgeline.media.dtmf import dtmf_packets
from bridgeline.media.player import ToneSource
from bridgeline.media.rtp import RtpPacket

PCMU = g711.PCMU
RTCP_RR = bytes([0x81, 201, 0x00, 0x01]) + (0x1234).to_bytes(4, "big")  # receiver report, one block-less


async def test_malformed_datagrams_are_counted_and_dropped(engine: MediaEngine) -> None:
    rng = random.Random(7)
    garbage = [bytes([rng.randrange(0, 64)]) + rng.randbytes(rng.randrange(0, 200)) for _ in range(30)]
    garbage += [
        b"\x80\x00\x00",  # truncated header
        bytes([0x40, 0]) + bytes(170),  # RTP version 1
        bytes([0x8F, 0]) + bytes(10),  # 15 CSRCs announced, none present
        bytes([0x90, 0]) + bytes(10) + b"\x00\x00\x00\x09",  # header extension longer than the packet
        bytes([0xA0, 0]) + bytes(10) + b"\xff",  # padding longer than the packet
    ]
    async with peers((440, PCMU), (880, PCMU)) as (a, b):
        port_a = await join(engine, "a", a)
        await join(engine, "b", b)
        engine.set_routes("c1", [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None)], MusicSources())
        for data in garbage:
            b.send_raw(data, ("127.0.0.1", port_a))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:  # asyncio skips empty datagrams
            raw.sendto(b"", ("127.0.0.1", port_a))
        assert await until(lambda: engine.stats["malformed_in"] == len(garbage) + 1)
        mark = await settle(0.5)
        assert dominant_freq(b.pcm_since(mark - 0.2)) == pytest.approx(440, abs=4)  # a still heard
        assert a.received[-1].source[1] == port_a  # garbage from b's address did not latch
        assert engine.stats["rtcp_in"] == 0


async def test_rtcp_is_counted_on_either_port(engine: MediaEngine) -> None:
    async with peers((None, PCMU)) as (a,):
        port = await join(engine, "a", a)
        a.send_raw(RTCP_RR, ("127.0.0.1", port))  # rtcp-mux style, on the RTP port
        a.send_raw(RTCP_RR, ("127.0.0.1", port + 1))
        a.send_raw(RTCP_RR + b"\x81", ("127.0.0.1", port + 1))  # trailing byte: malformed
        assert await until(lambda: engine.stats["rtcp_in"] == 2 and engine.stats["malformed_in"] == 1)


async def test_dtmf_event_reported_once(engine: MediaEngine) -> None:
    digits: list[tuple[str, str]] = []
    engine.on_dtmf(lambda leg, digit: digits.append((leg, digit)))
    async with peers((440, PCMU)) as (a,):
        port = await join(engine, "a", a)
        await asyncio.sleep(0.1)
        for digit, start_ts in (("5", 10_000), ("#", 12_000)):
            packets = dtmf_packets(digit, ssrc=a.ssrc, sequence=a.seq, timestamp=start_ts, payload_type=101)
            for _, packet in packets:  # 5 updates + 3 end copies
                a.send_packet(packet, ("127.0.0.1", port))
            a.seq += len(packets)
        assert await until(lambda: len(digits) == 2)
        await asyncio.sleep(0.1)
        assert digits == [("a", "5"), ("a", "#")]


async def test_dtmf_ignored_without_negotiated_event_type(engine: MediaEngine) -> None:
    digits: list[tuple[str, str]] = []
    engine.on_dtmf(lambda leg, digit: digits.append((leg, digit)))
    async with peers((None, PCMU)) as (a,):
        port = await join(engine, "a", a, telephone_event_pt=None, start=False)
        for _, packet in dtmf_packets("1", ssrc=9, sequence=1, timestamp=1):
            a.send_packet(packet, ("127.0.0.1", port))
        assert await until(lambda: engine.stats["ignored_in"] >= 7)
        assert digits == []


async def test_ssrc_change_restarts_the_stream(engine: MediaEngine) -> None:
    async with peers((440, PCMU), (None, PCMU)) as (a, b):
        await join(engine, "a", a)
        await join(engine, "b", b)
        engine.set_routes("c1", [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None)], MusicSources())
        await asyncio.sleep(0.3)
        a.tone = ToneSource(1200)  # same socket, new stream and tone
        a.ssrc, a.seq, a.ts = 0xBEEF, 7, 999_999_999
        mark = await settle(0.4)
        await asyncio.sleep(0.3)
        assert dominant_freq(b.pcm_since(mark)) == pytest.approx(1200, abs=4)


async def test_unknown_legs_and_bad_parameters(engine: MediaEngine) -> None:
    with pytest.raises(UnknownLeg):
        engine.connect_leg("x", remote=("127.0.0.1", 9), payload_type=0, telephone_event_pt=None, send=True)
    with pytest.raises(UnknownLeg):
        engine.update_leg("x", send=False)
    engine.close_leg("x")  # idempotent, also for legs never opened
    port = engine.open_leg("x")
    assert port % 2 == 0 and engine.open_leg("x") == port
    with pytest.raises(ValueError):
        engine.connect_leg("x", remote=("127.0.0.1", 9), payload_type=18, telephone_event_pt=None, send=True)
    # Routes may name legs that are not open (yet): they are silent, nothing breaks.
    engine.set_routes(
        "c1", [LegAudio("x", ("ghost",), None), LegAudio("ghost", ("x",), Music.WAIT)], MusicSources()
    )
    await asyncio.sleep(0.06)
    engine.close_leg("x")
    engine.close_leg("x")
    engine.set_routes("c1", [], MusicSources())
    assert engine.stats["conferences"] == 0


async def test_ports_exhausted() -> None:
    low, _ = port_range(4)
    engine = MediaEngine(port_min=low, port_max=low + 3)  # two RTP/RTCP pairs
    try:
        ports = [engine.open_leg("a"), engine.open_leg("b")]
        assert sorted(ports) == [low, low + 2]
        with pytest.raises(MediaPortsExhausted):
            engine.open_leg("c")
        engine.close_leg("a")
        assert await until(lambda: engine.stats["free_ports"] == 1)
        assert engine.open_leg("c") == low
    finally:
        await engine.stop()
    assert engine.stats["open_sockets"] == 0


async def test_200_legs_opened_and_closed_leave_nothing_behind() -> None:
    low, high = port_range(420)
    engine = MediaEngine(port_min=low, port_max=high)
    await engine.start()
    try:
        async with peers((440, PCMU)) as (peer,):
            ids = [f"leg{i}" for i in range(200)]
            ports = [engine.open_leg(leg) for leg in ids]
            assert engine.stats["open_sockets"] == 400 and len(set(ports)) == 200
            for leg, port in zip(ids, ports, strict=True):
                engine.connect_leg(
                    leg, remote=peer.address, payload_type=PCMU, telephone_event_pt=101, send=True
                )
                peer.send_packet(peer.next_audio_packet(), ("127.0.0.1", port))
            for i in range(0, 200, 10):  # 20 ten-party conferences, some legs held, some playing
                members = ids[i : i + 10]
                routes = [LegAudio(m, tuple(x for x in members if x != m), None) for m in members[1:]]
                engine.set_routes(
                    f"c{i}", [LegAudio(members[0], (), Music.CUSTOMER_HOLD), *routes], MusicSources()
                )
                engine.play(members[1], None, lambda: None)
            await asyncio.sleep(0.1)
            for leg in ids:
                engine.close_leg(leg)
            assert engine.stats["legs"] == 0 and engine.stats["conferences"] == 0
            assert await until(lambda: engine.stats["open_sockets"] == 0)
            assert engine.stats["free_ports"] == engine.port_capacity
    finally:
        await engine.stop()
    for port in ports:  # the OS agrees: every RTP and RTCP port can be bound again
        for p in (port, port + 1):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", p))


async def test_stop_closes_open_legs() -> None:
    low, high = port_range(20)
    engine = MediaEngine(port_min=low, port_max=high)
    await engine.start()
    for i in range(5):
        engine.open_leg(f"l{i}")
    await engine.stop()
    assert engine.stats["open_sockets"] == 0 and engine.stats["legs"] == 0
    assert engine.stats["free_ports"] == engine.port_capacity


async def test_ticks_on_absolute_deadlines_and_skip_after_a_stall(engine: MediaEngine) -> None:
    """Absolute deadlines: every 20 ms slot since the start is either ticked or counted as skipped,
    however loaded the machine is, so the schedule never drifts; a stall is skipped, not replayed."""
    loop = asyncio.get_running_loop()

    def slots() -> int:
        stats = engine.stats
        return int(stats["ticks"] + stats["skipped_ticks"])

    t0, slots0 = loop.time(), slots()
    await asyncio.sleep(1.0)
    assert slots() - slots0 == pytest.approx((loop.time() - t0) / 0.02, abs=3)
    before_stall = engine.stats["skipped_ticks"]
    time.sleep(0.25)  # noqa: ASYNC251  # deliberately block the loop: the engine must skip and carry on
    await asyncio.sleep(0.2)
    stats = engine.stats
    assert stats["late_ticks"] >= 1 and stats["max_lateness_ms"] >= 200
    assert stats["skipped_ticks"] - before_stall >= 9
    assert slots() - slots0 == pytest.approx((loop.time() - t0) / 0.02, abs=3)


async def test_engine_survives_callback_errors(engine: MediaEngine) -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("callback bug")

    engine.on_dtmf(boom)
    async with peers((None, PCMU)) as (a,):
        port = await join(engine, "a", a, start=False)
        engine.play("a", "tone:700", boom)
        for _, packet in dtmf_packets("9", ssrc=1, sequence=1, timestamp=1):
            a.send_packet(packet, ("127.0.0.1", port))
        a.send_packet(RtpPacket(0, 5, 5, 1, bytes(160)), ("127.0.0.1", port))
        ticks = engine.stats["ticks"]
        await asyncio.sleep(2.3)  # the 2 s tone message ends and its failing on_finished runs
        assert engine.stats["ticks"] > ticks + 100  # the tick outlived both failing callbacks
        assert len(a.received) >= 100  # and the whole 2 s message (100 packets) went out


async def test_close_frees_sockets_and_port_at_once(engine: MediaEngine) -> None:
    port = engine.open_leg("x")
    assert engine.stats["open_sockets"] == 2
    engine.close_leg("x")
    assert engine.stats["open_sockets"] == 0 and engine.stats["free_ports"] == engine.port_capacity
    for p in (port, port + 1):  # the OS agrees, without waiting for the event loop
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", p))


async def test_a_flooded_port_does_not_starve_the_others(engine: MediaEngine) -> None:
    """Each tick reads a bounded number of datagrams per socket, so junk poured on one leg's port
    neither stalls the tick nor keeps the other legs' audio from being read."""
    async with peers((440, PCMU), (880, PCMU), (None, PCMU)) as (a, b, flooder):
        port_a = await join(engine, "a", a)
        await join(engine, "b", b)
        engine.set_routes("c1", [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None)], MusicSources())
        junk = bytes([0x40, 0]) + bytes(170)  # RTP version 1: malformed, so it latches nothing
        for _ in range(40):  # a burst far beyond one tick's rounds, every ~20 ms for 0.4 s
            for _ in range(60):
                flooder.send_raw(junk, ("127.0.0.1", port_a))
            await asyncio.sleep(0.02)
        mark = await settle(0.4)
        assert dominant_freq(a.pcm_since(mark - 0.2)) == pytest.approx(880, abs=4)
        assert engine.stats["malformed_in"] > 100
