"""RTP source latching against hijacking ("RTP bleed"), on real UDP sockets: a foreign socket sprays
a live call's ports and the call keeps its audio; the legitimate ways to move a leg still work."""

from __future__ import annotations

import asyncio
import socket

import pytest
import structlog
from media_peer import RtpPeer, dominant_freq, join, level_at, peers, settle, until

from bridgeline.adapters.carriers.sip.media_engine import LatchPolicy, MediaEngine
from bridgeline.adapters.carriers.sip.rtp_udp import Counters, RtpLeg
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.media import g711
from bridgeline.media.dtmf import dtmf_packets

PCMU = g711.PCMU
RTCP_RR = bytes([0x81, 201, 0x00, 0x01]) + (0x1234).to_bytes(4, "big")
TWO_WAY = [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None)]


async def _spray(attacker: RtpPeer, port: int, seconds: float) -> None:
    """Three G.711 packets per 20 ms at the RTP port (its own SSRC), plus RTCP and DTMF events."""
    attacker.ssrc = 0x0BAD_0BAD
    for n in range(int(seconds * 50)):
        for _ in range(3):
            attacker.send_packet(attacker.next_audio_packet(), ("127.0.0.1", port))
        attacker.send_raw(RTCP_RR, ("127.0.0.1", port + 1))
        if n % 10 == 0:
            for _, packet in dtmf_packets("9", ssrc=attacker.ssrc, sequence=n, timestamp=n * 1000):
                attacker.send_packet(packet, ("127.0.0.1", port))
        await asyncio.sleep(0.02)


async def test_foreign_spray_does_not_hijack_a_live_call(engine: MediaEngine) -> None:
    digits: list[tuple[str, str]] = []
    engine.on_dtmf(lambda leg, digit: digits.append((leg, digit)))
    async with peers((440, PCMU), (880, PCMU), (1500, PCMU)) as (a, b, attacker):
        port_a = await join(engine, "a", a)
        await join(engine, "b", b)
        engine.set_routes("c1", TWO_WAY, MusicSources())
        a.send_raw(RTCP_RR, ("127.0.0.1", port_a + 1))  # the peer's own RTCP latches first
        assert await until(lambda: len(a.received) >= 10)
        spray = asyncio.create_task(_spray(attacker, port_a, 1.2))
        mark = await settle(0.4)
        await asyncio.sleep(0.6)
        await spray
        assert not attacker.received  # nothing of the call reached the attacker
        heard_by_a, heard_by_b = a.pcm_since(mark), b.pcm_since(mark)
        assert len(heard_by_a) >= 0.9 * 8000 * 0.6  # the real phone kept getting its audio
        assert dominant_freq(heard_by_a) == pytest.approx(880, abs=4)
        assert dominant_freq(heard_by_b) == pytest.approx(440, abs=4)
        assert level_at(heard_by_b, 1500) < 0.02  # the attacker is not in the mix
        assert digits == []  # nor its DTMF
        stats = engine.stats
        assert stats["rtp_refused_foreign_source"] >= 100
        assert stats["dtmf_refused_foreign_source"] >= 8
        assert stats["rtcp_refused_foreign_source"] >= 30
        assert stats["relatched"] == 0


async def test_a_spray_racing_the_call_loses_to_the_sdp_address(engine: MediaEngine) -> None:
    async with peers((440, PCMU), (880, PCMU), (1500, PCMU)) as (a, b, attacker):
        port_a = await join(engine, "a", a, start=False)  # the attacker speaks before the phone
        await join(engine, "b", b)
        engine.set_routes("c1", TWO_WAY, MusicSources())
        spray = asyncio.create_task(_spray(attacker, port_a, 1.2))
        await asyncio.sleep(0.2)
        a.start(("127.0.0.1", port_a))
        mark = await settle(0.3)
        await asyncio.sleep(0.6)
        await spray
        assert attacker.count_since(mark) == 0
        assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
        heard_by_b = b.pcm_since(mark)
        assert dominant_freq(heard_by_b) == pytest.approx(440, abs=4)
        assert level_at(heard_by_b, 1500) < 0.02


async def test_nat_rebinding_follows_the_latched_ssrc_only(quick_engine: MediaEngine) -> None:
    engine = quick_engine
    async with peers((440, PCMU), (880, PCMU), (440, PCMU), (1500, PCMU)) as (a, b, a_rebound, attacker):
        port_a = await join(engine, "a", a)
        await join(engine, "b", b)
        engine.set_routes("c1", TWO_WAY, MusicSources())
        assert await until(lambda: len(a.received) >= 10)
        a.stop()  # the NAT mapping changes: the same stream now comes from another port
        a_rebound.ssrc, a_rebound.seq, a_rebound.ts = a.ssrc, a.seq, a.ts
        attacker.ssrc = 0x0BAD_0BAD
        attacker.start(("127.0.0.1", port_a), seconds=1.5)  # another SSRC: never followed
        a_rebound.start(("127.0.0.1", port_a), seconds=1.5)
        assert await until(lambda: len(a_rebound.received) >= 10)
        mark = await settle(0.2)
        await asyncio.sleep(0.4)
        assert dominant_freq(a_rebound.pcm_since(mark)) == pytest.approx(880, abs=4)
        assert not attacker.received
        assert a.count_since(mark) == 0
        assert engine.stats["relatched"] == 1


async def test_a_reinvite_to_a_new_address_reopens_learning(engine: MediaEngine) -> None:
    async with peers((440, PCMU), (880, PCMU), (660, PCMU)) as (a, b, moved):
        port_a = await join(engine, "a", a)
        await join(engine, "b", b)
        engine.set_routes("c1", TWO_WAY, MusicSources())
        assert await until(lambda: len(a.received) >= 5)
        a.stop()
        engine.update_leg("a", remote=moved.address, send=True)
        moved.start(("127.0.0.1", port_a))
        mark = await settle(0.3)
        await asyncio.sleep(0.4)
        assert dominant_freq(moved.pcm_since(mark)) == pytest.approx(880, abs=4)
        assert dominant_freq(b.pcm_since(mark)) == pytest.approx(660, abs=4)
        assert a.count_since(mark) == 0


async def test_a_repeated_sdp_address_keeps_the_latch(engine: MediaEngine) -> None:
    async with peers((None, PCMU), (440, PCMU), (1500, PCMU)) as (sdp_addr, actual, attacker):
        port = await join(engine, "a", sdp_addr, start=False)
        actual.start(("127.0.0.1", port))  # behind NAT: its media comes from elsewhere than its SDP
        assert await until(lambda: len(actual.received) >= 5)
        engine.update_leg("a", remote=sdp_addr.address, send=True)  # hold/resume re-INVITEs repeat it
        attacker.start(("127.0.0.1", port), seconds=0.5)
        mark = await settle(0.6)
        assert actual.count_since(mark - 0.4) >= 15
        assert not attacker.received


def test_learning_window_closes() -> None:
    """Pure timing on a virtual clock: after the window, only the SDP address can latch."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtcp,
    ):
        counters = Counters()
        leg = RtpLeg("a", 0, rtp, rtcp, counters, lambda leg, digit: None, LatchPolicy(learning_window_s=2.0))
        sdp, nat = ("127.0.0.1", 40000), ("127.0.0.1", 40002)
        leg.connect(sdp, PCMU, None, True, 20, now=100.0)
        packet = RtpPeer(440).next_audio_packet().serialize()
        leg.rtp_received(packet, nat, now=102.5)
        assert counters.rtp_refused_foreign_source == 1 and leg.dest == sdp
        leg.rtp_received(packet, sdp, now=103.0)
        assert counters.rtp_refused_foreign_source == 1 and leg.dest == sdp
        leg.update(("127.0.0.1", 40004), None, now=200.0)  # a new SDP address: learning again
        leg.rtp_received(packet, nat, now=201.9)
        assert leg.dest == nat
        leg.update(("0.0.0.0", 40004), None, now=300.0)  # RFC 2543 hold: send nothing, keep the latch
        assert leg.dest is None
        leg.update(("127.0.0.1", 40004), None, now=301.0)
        assert leg.dest == nat


def test_refusals_are_logged_once_per_interval_for_the_whole_engine() -> None:
    """A spray over many legs yields one log line per interval, carrying the count, not one a packet."""
    policy = LatchPolicy(learning_window_s=0.0, refused_log_interval_s=10.0)
    counters = Counters()
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(6)]
    try:
        legs = [
            RtpLeg(f"leg{i}", 0, socks[2 * i], socks[2 * i + 1], counters, lambda leg, digit: None, policy)
            for i in range(3)
        ]
        for leg in legs:
            leg.connect(("127.0.0.1", 40000), PCMU, 101, True, 20, now=0.0)
        packet = RtpPeer(440).next_audio_packet().serialize()
        foreign = ("127.0.0.1", 50000)
        with structlog.testing.capture_logs() as logs:
            for n in range(3000):  # 30 s of a spray at 100 packets per second over three legs
                legs[n % 3].rtp_received(packet, foreign, now=1.0 + n / 100)
        refused = [entry for entry in logs if entry["event"] == "rtp_foreign_source_refused"]
        assert counters.rtp_refused_foreign_source == 3000
        assert len(refused) == 3  # at 1 s, 11 s and 21 s
        assert [entry["refused_since_last_log"] for entry in refused] == [1, 1000, 1000]
    finally:
        for sock in socks:
            sock.close()
