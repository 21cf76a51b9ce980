"""Music and messages from URLs and the media directory, heard on real UDP sockets: a URL is fetched
and decoded off the event loop (the tick keeps sending the default music meanwhile), equal content is
decoded once, and a source that is slow, huge, redirected to another scheme or not a regular file
falls back to the default and is reported for the leg that should have heard it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from media_http import MediaServer, media_server, tone_wav
from media_peer import RtpPeer, dominant_freq, join, peak_freqs, peers, port_range, until

from bridgeline.adapters.carriers.sip.media_engine import MediaEngine
from bridgeline.adapters.carriers.sip.music_fetch import MediaLimits
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.core.model import Music
from bridgeline.media.g711 import PCMU

FETCH_TIMEOUT_S = 1.0
MAX_BYTES = 300_000


@pytest.fixture
def http() -> Iterator[MediaServer]:
    with media_server() as server:
        yield server


@pytest.fixture
async def sourced(tmp_path: Path) -> AsyncIterator[tuple[MediaEngine, list[tuple[str, str, str]], Path]]:
    """An engine whose media directory is tmp_path/media, with its failure reports collected."""
    media = tmp_path / "media"
    media.mkdir()
    low, high = port_range(40)
    limits = MediaLimits(media_dir=media, max_bytes=MAX_BYTES, fetch_timeout_s=FETCH_TIMEOUT_S)
    engine = MediaEngine(port_min=low, port_max=high, media=limits)
    failures: list[tuple[str, str, str]] = []
    engine.on_media_failed(lambda leg, setting, reason: failures.append((leg, setting, reason)))
    await engine.start()
    try:
        yield engine, failures, media
    finally:
        await engine.stop()
        assert engine.stats["open_sockets"] == 0


async def loaded(engine: MediaEngine) -> bool:
    return await until(lambda: engine.stats["media_loading"] == 0, within=FETCH_TIMEOUT_S * 4)


async def wait_music_heard(engine: MediaEngine, peer: RtpPeer, leg: str, spec: str) -> float:
    """Route the leg alone to wait music `spec`, let it load, and measure what the peer hears."""
    engine.set_routes(f"conf-{leg}", [LegAudio(leg, (), Music.WAIT)], MusicSources(wait=spec))
    assert await loaded(engine)
    await peer.listen(10)
    return dominant_freq(peer.pcm_since(await peer.listen(25)))


async def test_a_url_is_played_and_equal_content_is_decoded_once(
    sourced: tuple[MediaEngine, list[tuple[str, str, str]], Path], http: MediaServer
) -> None:
    engine, failures, _ = sourced
    async with peers((None, PCMU), (None, PCMU)) as (a, b):
        join(engine, "a", a)
        join(engine, "b", b)
        assert await wait_music_heard(engine, a, "a", f"{http.url}/tone600.wav") == pytest.approx(600, abs=4)
        # Another URL with the same bytes, and a redirect to them: fetched, not decoded again.
        assert await wait_music_heard(engine, b, "b", f"{http.url}/copy600.wav") == pytest.approx(600, abs=4)
        assert await wait_music_heard(engine, b, "b", f"{http.url}/to-tone600") == pytest.approx(600, abs=4)
        # Nobody hears the first URL any more; once needed again, its cached audio plays unfetched.
        engine.set_routes("conf-a", [LegAudio("a", (), None)], MusicSources())
        assert await wait_music_heard(engine, a, "a", f"{http.url}/tone600.wav") == pytest.approx(600, abs=4)
    assert engine.stats["media_decodes"] == 1 and failures == []
    assert http.requests == {"/tone600.wav": 2, "/copy600.wav": 1, "/to-tone600": 1}


async def test_a_slow_url_never_delays_the_tick_and_falls_back_with_a_report(
    sourced: tuple[MediaEngine, list[tuple[str, str, str]], Path], http: MediaServer
) -> None:
    engine, failures, _ = sourced
    async with peers((None, PCMU)) as (a,):
        join(engine, "a", a)
        await a.listen(10)
        before = engine.stats
        mark = asyncio.get_running_loop().time()
        engine.set_routes(
            "c1", [LegAudio("a", (), Music.AGENT_HOLD)], MusicSources(agent_hold=f"{http.url}/slow.wav")
        )
        assert engine.stats["media_loading"] == 1
        assert await loaded(engine)  # the server stalls; the fetch gives up after its time limit
        after = engine.stats
        heard = a.pcm_since(mark)
        ticks = int(after["ticks"]) - int(before["ticks"])
        assert ticks >= FETCH_TIMEOUT_S * 50 * 0.9
        assert after["skipped_ticks"] == before["skipped_ticks"]  # no stall of 60 ms or more
        assert a.count_since(mark) >= ticks - 2  # one packet per tick, all through the fetch
        assert dominant_freq(heard) == pytest.approx(440, abs=4)  # the default agent hold music
    assert failures == [("a", "agent_hold_music", f"{http.url}/slow.wav: no answer within 1 s")]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/huge.wav", f"larger than {MAX_BYTES} bytes"),
        ("/endless.wav", f"larger than {MAX_BYTES} bytes"),
        ("/trickle.wav", "not downloaded within the time limit"),
        ("/to-file", "redirect to a file: URL refused"),
        ("/missing.wav", "HTTP 404"),
        ("/passwd.wav", "not a WAV, MP3 or FLAC"),
    ],
)
async def test_a_bad_url_falls_back_to_the_default_with_a_report(
    sourced: tuple[MediaEngine, list[tuple[str, str, str]], Path], http: MediaServer, path: str, reason: str
) -> None:
    engine, failures, _ = sourced
    async with peers((None, PCMU)) as (a,):
        join(engine, "a", a)
        engine.set_routes("c1", [LegAudio("a", (), Music.WAIT)], MusicSources(wait=http.url + path))
        assert await loaded(engine)
        await a.listen(10)
        mark = await a.listen(20)
        assert peak_freqs(a.pcm_since(mark), 2) == pytest.approx([350, 440], abs=4)  # the default wait music
    assert len(failures) == 1 and failures[0][:2] == ("a", "wait_music") and reason in failures[0][2]


async def test_media_files_that_are_not_regular_files_inside_the_dir_fall_back(
    sourced: tuple[MediaEngine, list[tuple[str, str, str]], Path], tmp_path: Path
) -> None:
    engine, failures, media = sourced
    (tmp_path / "outside.wav").write_bytes(tone_wav(700))
    (media / "out.wav").symlink_to(tmp_path / "outside.wav")
    os.mkfifo(media / "fifo.wav")
    (media / "ok.wav").write_bytes(tone_wav(650))
    async with peers((None, PCMU), (None, PCMU), (None, PCMU)) as (a, b, c):
        for leg, peer in zip("abc", (a, b, c), strict=True):
            join(engine, leg, peer)
        engine.set_routes("c1", [LegAudio("a", (), Music.AGENT_HOLD)], MusicSources(agent_hold="out.wav"))
        engine.set_routes("c2", [LegAudio("b", (), Music.AGENT_HOLD)], MusicSources(agent_hold="fifo.wav"))
        engine.set_routes("c3", [LegAudio("c", (), Music.AGENT_HOLD)], MusicSources(agent_hold="ok.wav"))
        assert await loaded(engine)
        await c.listen(10)
        mark = await c.listen(25)
        assert dominant_freq(a.pcm_since(mark)) == pytest.approx(440, abs=4)  # not the 700 Hz outside
        assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)
        assert dominant_freq(c.pcm_since(mark)) == pytest.approx(650, abs=4)
    assert sorted(failures) == [
        ("a", "agent_hold_music", "out.wav: a link leads out of the media directory"),
        ("b", "agent_hold_music", "fifo.wav: not a regular file"),
    ]


async def test_a_leg_that_starts_hearing_a_failed_source_is_reported_too(
    sourced: tuple[MediaEngine, list[tuple[str, str, str]], Path],
) -> None:
    engine, failures, _ = sourced
    settings = MusicSources(customer_hold="missing.wav")
    async with peers((None, PCMU), (None, PCMU)) as (a, b):
        join(engine, "a", a)
        join(engine, "b", b)
        engine.set_routes("c1", [LegAudio("a", (), Music.CUSTOMER_HOLD), LegAudio("b", (), None)], settings)
        assert await loaded(engine) and await until(lambda: len(failures) == 1)
        engine.set_routes(
            "c1", [LegAudio("a", (), Music.CUSTOMER_HOLD), LegAudio("b", (), Music.CUSTOMER_HOLD)], settings
        )
        engine.set_routes(
            "c1", [LegAudio("a", (), Music.CUSTOMER_HOLD), LegAudio("b", (), Music.CUSTOMER_HOLD)], settings
        )
    reason = "missing.wav: no such file in the media directory"
    assert failures == [("a", "customer_hold_music", reason), ("b", "customer_hold_music", reason)]


@pytest.mark.parametrize(
    ("path", "freq", "reason"),
    [
        ("/tone750.wav", 750, None),
        ("/to-file", 1000, "/to-file: redirect to a file: URL refused"),  # 1000 Hz: the built-in beeps
    ],
)
async def test_a_message_from_a_url_plays_or_plays_the_beeps_and_is_reported(
    sourced: tuple[MediaEngine, list[tuple[str, str, str]], Path],
    http: MediaServer,
    path: str,
    freq: int,
    reason: str | None,
) -> None:
    engine, failures, _ = sourced
    finished = asyncio.Event()
    async with peers((None, PCMU)) as (a,):
        join(engine, "a", a)
        mark = asyncio.get_running_loop().time()
        engine.play("a", http.url + path, finished.set)
        await asyncio.wait_for(finished.wait(), 5)
        heard = a.pcm_since(mark)
    assert dominant_freq(heard) == pytest.approx(freq, abs=4)
    assert failures == ([] if reason is None else [("a", "voicemail_message", http.url + reason)])
