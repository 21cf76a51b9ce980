"""What each peer hears, measured on real UDP sockets: conferences, hold music, codecs, latching, play()."""

from __future__ import annotations

import asyncio
import itertools
import wave
from pathlib import Path

import numpy as np
import pytest
from media_peer import dominant_freq, join, level_at, peak_freqs, peers, rms, settle, until

from bridgeline.adapters.carriers.sip.media_engine import MediaEngine, UnknownLeg
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.core.model import Music
from bridgeline.media import g711

NO_SETTINGS = MusicSources()
PCMU, PCMA = g711.PCMU, g711.PCMA


def talk(*pairs: tuple[str, tuple[str, ...]]) -> list[LegAudio]:
    return [LegAudio(leg, hears, None) for leg, hears in pairs]


async def test_two_legs_hear_each_other(engine: MediaEngine) -> None:
    async with peers((440, PCMU), (880, PCMU)) as (a, b):
        await join(engine, "a", a)
        await join(engine, "b", b)
        # A route naming the listener itself (an upstream slip) must not echo it back.
        engine.set_routes("c1", talk(("a", ("a", "b")), ("b", ("a",))), NO_SETTINGS)
        mark = await settle(0.5)
        await asyncio.sleep(0.5)
        assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
        assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)
        assert level_at(a.pcm_since(mark), 440) < 0.02  # nobody hears themselves


async def test_outgoing_rtp_headers_are_continuous(engine: MediaEngine) -> None:
    async with peers((440, PCMU)) as (a,):
        await join(engine, "a", a)
        engine.set_routes("c1", talk(("a", ("a",))), NO_SETTINGS)  # hearing itself: ignored, no echo
        assert await until(lambda: len(a.received) >= 20)
        packets = [r.packet for r in a.received]
        assert packets[0].marker and not any(p.marker for p in packets[1:])
        assert len({p.ssrc for p in packets}) == 1
        assert all(p.payload_type == PCMU and len(p.payload) == 160 for p in packets)
        for prev, cur in itertools.pairwise(packets):
            assert (cur.sequence - prev.sequence) & 0xFFFF == 1
            assert (cur.timestamp - prev.timestamp) & 0xFFFF_FFFF == 160
        assert rms(a.pcm_since(0)) < 50  # silence


async def test_three_legs_each_hear_the_other_two(engine: MediaEngine) -> None:
    async with peers((440, PCMU), (700, PCMU), (1100, PCMU)) as (a, b, c):
        for leg, peer in zip("abc", (a, b, c), strict=True):
            await join(engine, leg, peer)
        engine.set_routes("c1", talk(("a", ("b", "c")), ("b", ("a", "c")), ("c", ("a", "b"))), NO_SETTINGS)
        mark = await settle(0.5)
        await asyncio.sleep(0.5)
        expected = {"a": [700, 1100], "b": [440, 1100], "c": [440, 700]}
        for leg, peer in zip("abc", (a, b, c), strict=True):
            assert peak_freqs(peer.pcm_since(mark), 2) == pytest.approx(expected[leg], abs=4)


async def test_held_leg_hears_hold_music_and_nobody_hears_it(engine: MediaEngine) -> None:
    settings = MusicSources(agent_hold="tone:300")
    async with peers((500, PCMU), (700, PCMU), (1100, PCMU)) as (a, b, c):
        for leg, peer in zip("abc", (a, b, c), strict=True):
            await join(engine, leg, peer)
        legs = [LegAudio("a", (), Music.AGENT_HOLD), *talk(("b", ("c",)), ("c", ("b",)))]
        engine.set_routes("c1", legs, settings)
        mark = await settle(0.5)
        await asyncio.sleep(0.5)
        held, heard_by_b = a.pcm_since(mark), b.pcm_since(mark)
        assert dominant_freq(held) == pytest.approx(300, abs=4)
        assert level_at(held, 700) < 0.02 and level_at(held, 1100) < 0.02
        assert dominant_freq(heard_by_b) == pytest.approx(1100, abs=4)
        assert level_at(heard_by_b, 500) < 0.02 and level_at(heard_by_b, 300) < 0.02
        assert level_at(c.pcm_since(mark), 500) < 0.02


async def test_default_music_per_kind(engine: MediaEngine) -> None:
    async with peers((None, PCMU), (None, PCMU)) as (a, b):
        await join(engine, "a", a)
        await join(engine, "b", b)
        legs = [LegAudio("a", (), Music.AGENT_HOLD), LegAudio("b", (), Music.WAIT)]
        engine.set_routes("c1", legs, NO_SETTINGS)
        mark = await settle(0.3)
        await asyncio.sleep(0.5)
        assert dominant_freq(a.pcm_since(mark)) == pytest.approx(440, abs=4)
        assert peak_freqs(b.pcm_since(mark), 2) == pytest.approx([350, 440], abs=4)


async def test_leg_with_send_false_receives_nothing_until_resumed(engine: MediaEngine) -> None:
    async with peers((440, PCMU), (880, PCMU)) as (a, b):
        await join(engine, "a", a, send=False)
        await join(engine, "b", b)
        engine.set_routes("c1", talk(("a", ("b",)), ("b", ("a",))), NO_SETTINGS)
        mark = await settle(0.5)
        assert not a.received
        assert dominant_freq(b.pcm_since(mark - 0.2)) == pytest.approx(440, abs=4)  # it still hears a
        engine.update_leg("a", send=True)
        assert await until(lambda: len(a.received) >= 10)
        assert a.received[0].packet.marker


async def test_send_is_latched_to_the_source_address(engine: MediaEngine) -> None:
    async with peers((None, PCMU), (440, PCMU)) as (sdp_addr, actual):
        port = await join(engine, "a", sdp_addr, start=False)
        assert await until(lambda: len(sdp_addr.received) >= 3)  # before any media: the SDP address
        actual.start(("127.0.0.1", port))
        assert await until(lambda: len(actual.received) >= 5)
        assert actual.received[0].source == ("127.0.0.1", port)
        engine.update_leg("a", remote=sdp_addr.address, send=True)  # re-INVITE repeating the SDP address
        before = len(sdp_addr.received)
        await asyncio.sleep(0.2)
        assert len(sdp_addr.received) <= before + 1  # at most one packet already in flight


async def test_pcma_and_pcmu_legs_mix(engine: MediaEngine) -> None:
    async with peers((440, PCMU), (880, PCMA)) as (a, b):
        await join(engine, "a", a)
        await join(engine, "b", b)
        engine.set_routes("c1", talk(("a", ("b",)), ("b", ("a",))), NO_SETTINGS)
        mark = await settle(0.5)
        await asyncio.sleep(0.4)
        assert {r.packet.payload_type for r in a.received} == {PCMU}
        assert {r.packet.payload_type for r in b.received} == {PCMA}
        assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
        assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)


async def test_conferences_never_mix(engine: MediaEngine) -> None:
    async with peers((440, PCMU), (880, PCMU), (1300, PCMU), (1700, PCMU)) as (a, b, c, d):
        for leg, peer in zip("abcd", (a, b, c, d), strict=True):
            await join(engine, leg, peer)
        # c1's routes even name d (a routing bug upstream): still only c1's legs are mixed.
        engine.set_routes("c1", talk(("a", ("b", "d")), ("b", ("a",))), NO_SETTINGS)
        engine.set_routes("c2", talk(("c", ("d",)), ("d", ("c",))), NO_SETTINGS)
        mark = await settle(0.5)
        await asyncio.sleep(0.4)
        heard = a.pcm_since(mark)
        assert dominant_freq(heard) == pytest.approx(880, abs=4)
        assert level_at(heard, 1300) < 0.02 and level_at(heard, 1700) < 0.02
        # Moving b to c2 takes it out of c1: a (whose route still names b) now hears nothing.
        engine.set_routes("c2", talk(("b", ("c",)), ("c", ("d", "b")), ("d", ("c",))), NO_SETTINGS)
        mark = await settle(0.3)
        await asyncio.sleep(0.3)
        assert rms(a.pcm_since(mark)) < 50
        assert dominant_freq(b.pcm_since(mark)) == pytest.approx(1300, abs=4)


async def test_ptime_30_packets(engine: MediaEngine) -> None:
    async with peers((440, PCMU)) as (a,):
        await join(engine, "a", a, ptime_ms=30)
        assert await until(lambda: len(a.received) >= 10)
        packets = [r.packet for r in a.received]
        assert all(len(p.payload) == 240 for p in packets)
        assert all((q.timestamp - p.timestamp) & 0xFFFF_FFFF == 240 for p, q in itertools.pairwise(packets))


def write_tone_wav(path: Path, freq: float, seconds: float) -> None:
    t = np.arange(int(seconds * 8000)) / 8000
    pcm = (np.sin(2 * np.pi * freq * t) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(pcm.tobytes())


async def test_play_replaces_routes_then_calls_on_finished(engine: MediaEngine, tmp_path: Path) -> None:
    message = tmp_path / "vm.wav"
    write_tone_wav(message, 1000, 0.6)
    finished: list[float] = []
    loop = asyncio.get_running_loop()
    async with peers((440, PCMU), (880, PCMU)) as (a, b):
        await join(engine, "a", a)
        await join(engine, "b", b)
        engine.set_routes("c1", talk(("a", ("b",)), ("b", ("a",))), NO_SETTINGS)
        await asyncio.sleep(0.2)
        started = loop.time()
        engine.play("a", message.name, lambda: finished.append(loop.time()))  # the media dir is tmp_path
        await asyncio.sleep(0.5)
        during = a.pcm_since(started + 0.1)
        assert dominant_freq(during) == pytest.approx(1000, abs=4)
        assert level_at(during, 880) < 0.02  # only the message
        assert level_at(b.pcm_since(started + 0.1), 1000) < 0.02  # b does not hear it
        assert await until(lambda: bool(finished))
        assert len(finished) == 1 and 0.55 <= finished[0] - started <= 0.8
        mark = await settle(0.3)
        assert dominant_freq(a.pcm_since(mark - 0.2)) == pytest.approx(880, abs=4)  # routes again
        assert len(finished) == 1


async def test_play_default_beeps_and_close_cancels(engine: MediaEngine) -> None:
    calls: list[str] = []
    async with peers((None, PCMU), (None, PCMA)) as (a, b):
        await join(engine, "a", a)
        await join(engine, "b", b)
        engine.play("a", None, lambda: calls.append("a"))
        engine.play("b", "no/such/file.wav", lambda: calls.append("b"))  # falls back to the beeps
        mark = asyncio.get_running_loop().time()
        await asyncio.sleep(0.15)
        engine.close_leg("b")
        assert await until(lambda: bool(calls), within=2.0)
        assert dominant_freq(a.pcm_since(mark)) == pytest.approx(1000, abs=4)
        await asyncio.sleep(0.1)
        assert calls == ["a"]  # b was closed while playing: no on_finished
        with pytest.raises(UnknownLeg):
            engine.play("b", None, lambda: None)


async def test_mixed_codecs_in_a_three_party_mix(engine: MediaEngine) -> None:
    async with peers((440, PCMU), (700, PCMA), (1100, PCMU)) as (a, b, c):
        for leg, peer in zip("abc", (a, b, c), strict=True):
            await join(engine, leg, peer)
        engine.set_routes("c1", talk(("a", ("b", "c")), ("b", ("a", "c")), ("c", ("a", "b"))), NO_SETTINGS)
        mark = await settle(0.5)
        await asyncio.sleep(0.4)
        assert {r.packet.payload_type for r in b.received} == {PCMA}
        assert peak_freqs(b.pcm_since(mark), 2) == pytest.approx([440, 1100], abs=4)
        assert peak_freqs(a.pcm_since(mark), 2) == pytest.approx([700, 1100], abs=4)


async def test_leg_hearing_a_leg_and_music_gets_both(engine: MediaEngine) -> None:
    settings = MusicSources(wait="tone:300")
    async with peers((None, PCMU), (880, PCMU)) as (a, b):
        await join(engine, "a", a)
        await join(engine, "b", b)
        engine.set_routes("c1", [LegAudio("a", ("b",), Music.WAIT), LegAudio("b", (), None)], settings)
        mark = await settle(0.5)
        await asyncio.sleep(0.4)
        assert peak_freqs(a.pcm_since(mark), 2) == pytest.approx([300, 880], abs=4)
        assert rms(b.pcm_since(mark)) < 50


async def test_plain_conferences_of_one_size_are_mixed_apart(engine: MediaEngine) -> None:
    # Two three-party conferences share one batched mix; a member of c2 is opened only after the
    # routes name it (silent until then), and a member of c1 plays a message meanwhile.
    c1_freqs, c2_freqs = (440, 700, 1100), (1300, 1700, 2100)
    async with peers(*((f, PCMU) for f in c1_freqs + c2_freqs)) as (a, b, c, d, e, f):
        for leg, peer in zip("abcde", (a, b, c, d, e), strict=True):
            await join(engine, leg, peer)
        engine.set_routes("c1", talk(("a", ("b", "c")), ("b", ("a", "c")), ("c", ("a", "b"))), NO_SETTINGS)
        engine.set_routes("c2", talk(("d", ("e", "f")), ("e", ("d", "f")), ("f", ("d", "e"))), NO_SETTINGS)
        mark = await settle(0.5)
        await asyncio.sleep(0.4)
        assert dominant_freq(d.pcm_since(mark)) == pytest.approx(1700, abs=4)
        assert level_at(d.pcm_since(mark), 2100) < 0.02  # f is not open yet
        await join(engine, "f", f)
        engine.play("a", "tone:1000", lambda: None)
        mark = await settle(0.5)
        await asyncio.sleep(0.4)
        assert peak_freqs(d.pcm_since(mark), 2) == pytest.approx([1700, 2100], abs=4)
        assert peak_freqs(b.pcm_since(mark), 2) == pytest.approx([440, 1100], abs=4)  # a still heard
        assert dominant_freq(a.pcm_since(mark)) == pytest.approx(1000, abs=4)  # the message, not b or c
        for listeners, foreign in (((b, c), c2_freqs), ((d, e, f), c1_freqs)):
            for peer in listeners:
                assert all(level_at(peer.pcm_since(mark), freq) < 0.02 for freq in foreign)
