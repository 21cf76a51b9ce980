"""The music library: per-kind defaults, sharing, loading files from the media directory in worker
threads (the default plays meanwhile), refusing what is not a regular file inside it, the content
cache, and messages (no sockets)."""

from __future__ import annotations

import os
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from media_peer import dominant_freq, peak_freqs
from numpy.typing import NDArray

from bridgeline.adapters.carriers.sip.music import (
    BEEP_SAMPLES,
    CHIME_SAMPLES,
    DEFAULT_SPECS,
    SILENCE,
    LoopSource,
    MusicLibrary,
    spec_for,
)
from bridgeline.adapters.carriers.sip.music_fetch import MediaLimits
from bridgeline.core.effects import MusicSources
from bridgeline.core.model import Music
from bridgeline.media.player import AudioSource


def test_spec_for_uses_settings_then_defaults() -> None:
    settings = MusicSources(agent_hold="tone:300", wait=" ", voicemail="vm.wav")
    assert spec_for(Music.AGENT_HOLD, settings) == "tone:300"
    assert spec_for(Music.WAIT, settings) == DEFAULT_SPECS[Music.WAIT]  # blank: default
    assert spec_for(Music.CUSTOMER_HOLD, settings) == DEFAULT_SPECS[Music.CUSTOMER_HOLD]
    assert spec_for(Music.VOICEMAIL, settings) == SILENCE  # the message is play()'s job


def frames(source: AudioSource, n: int) -> NDArray[np.int16]:
    return np.concatenate([source.next_frame() for _ in range(n)])


def test_music_is_shared_per_spec_and_advances_once_per_tick() -> None:
    library = MusicLibrary()
    a = library.music("tone:440", "tone:440")
    assert library.music("tone:440", "tone:440") is a
    first = a.frame_at(1)
    assert a.frame_at(1) is first and a.frame_at(2) is not first
    library.prune(set())
    assert library.music("tone:440", "tone:440") is not a


def test_defaults_sound_as_documented() -> None:
    library = MusicLibrary()
    agent = library.music(DEFAULT_SPECS[Music.AGENT_HOLD], SILENCE).source
    wait = library.music(DEFAULT_SPECS[Music.WAIT], SILENCE).source
    assert dominant_freq(frames(agent, 25)) == pytest.approx(440, abs=4)
    assert peak_freqs(frames(wait, 25), 2) == pytest.approx([350, 440], abs=4)
    chime = frames(library.music(DEFAULT_SPECS[Music.CUSTOMER_HOLD], SILENCE).source, 100)  # one 2 s cycle
    assert chime.size == CHIME_SAMPLES.size
    assert peak_freqs(chime[:4800], 2) == pytest.approx([523, 659], abs=6)
    assert np.abs(chime[4800:]).max() == 0
    assert np.abs(chime).max() < 0.25 * 32767  # gentle


@pytest.fixture
def media(tmp_path: Path) -> Path:
    (tmp_path / "media").mkdir()
    return tmp_path / "media"


class WatchedLibrary(MusicLibrary):
    """A library whose workers' "a load ended" can be waited for."""

    def __init__(self, limits: MediaLimits | None = None) -> None:
        self.load_ended = threading.Event()
        super().__init__(limits, on_loaded=self.load_ended.set)


@pytest.fixture
def library(media: Path) -> Iterator[MusicLibrary]:
    lib = WatchedLibrary(MediaLimits(media_dir=media, max_bytes=200_000))
    yield lib
    lib.close()


def settle(library: MusicLibrary) -> list[tuple[str, str]]:
    """Poll until no load is under way (bounded): the failures reported meanwhile."""
    assert isinstance(library, WatchedLibrary)
    failures = []
    while True:
        library.load_ended.clear()  # before poll(): a load ending after it sets the event again
        failures += library.poll()
        if not library.loading:
            return failures
        assert library.load_ended.wait(10), "loads still running"


def write_wav(path: Path, samples: NDArray[np.int64], rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def tone_wav(path: Path, freq: float, seconds: float = 1.0, rate: int = 8000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    write_wav(path, np.rint(6000 * np.sin(2 * np.pi * freq * t)).astype(np.int64), rate)


def test_a_file_plays_the_default_while_it_loads_then_itself(library: MusicLibrary, media: Path) -> None:
    tone_wav(media / "hold.wav", 600, rate=44100)  # resampled to 8 kHz by miniaudio
    music = library.music("hold.wav", "tone:440")
    assert dominant_freq(frames(music.source, 10)) == pytest.approx(440, abs=10)  # not loaded yet
    assert settle(library) == []
    assert dominant_freq(frames(music.source, 25)) == pytest.approx(600, abs=4)
    assert library.music("hold.wav", "tone:440") is music


def test_wav_looped_or_played_once_from_the_same_decoded_samples(library: MusicLibrary, media: Path) -> None:
    write_wav(media / "hold.wav", np.arange(400) - 200)  # 2.5 frames
    music = library.music("hold.wav", SILENCE)
    settle(library)
    looped = np.concatenate([music.frame_at(t) for t in range(5)])
    assert np.array_equal(looped, np.tile(np.arange(400) - 200, 2))
    message = library.message("hold.wav")
    assert not message.finished and not message.next_frame().any()  # silent while it loads
    settle(library)
    played = frames(message, 3)
    assert np.array_equal(played[:400], np.arange(400) - 200) and not played[400:].any()
    assert library.cache.decodes == 1  # the same bytes: decoded once
    assert message.finished


def test_equal_content_under_two_names_is_decoded_once(library: MusicLibrary, media: Path) -> None:
    tone_wav(media / "a.wav", 500)
    (media / "copy").mkdir()
    (media / "copy" / "b.wav").write_bytes((media / "a.wav").read_bytes())
    a, b = library.music("a.wav", SILENCE), library.music("copy/b.wav", SILENCE)
    settle(library)
    assert library.cache.decodes == 1
    assert isinstance(a.source, object) and np.array_equal(frames(a.source, 5), frames(b.source, 5))


def test_what_is_not_a_regular_file_inside_the_media_dir_is_never_read(
    library: MusicLibrary, media: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.wav"
    tone_wav(outside, 700)  # audible if it were read
    (media / "out.wav").symlink_to(outside)
    (media / "up").symlink_to(tmp_path)
    (media / "zero.wav").symlink_to("/dev/zero")
    os.mkfifo(media / "fifo.wav")  # opening it for reading would wait for a writer forever
    (media / "dir.wav").mkdir()
    tone_wav(media / "big.wav", 400, seconds=20)  # 320 KB > 200 KB
    (media / "text.wav").write_text("root:x:0:0:root:/root:/bin/bash\n" * 10)
    cases = {
        "out.wav": "leads out of the media directory",
        "up/outside.wav": "leads out of the media directory",
        "zero.wav": "leads out of the media directory",
        "fifo.wav": "not a regular file",
        "dir.wav": "not a regular file",
        "big.wav": "larger than 200000 bytes",
        "text.wav": "not a WAV, MP3 or FLAC",
        "missing.wav": "no such file",
        "/etc/passwd": "invalid music spec",
        "../outside.wav": "invalid music spec",
    }
    sources = {spec: library.music(spec, "tone:440") for spec in cases}
    failures = dict(settle(library))
    for spec, reason in cases.items():
        assert reason in failures[spec], spec
        assert library.failure(spec) == failures[spec]
        assert dominant_freq(frames(sources[spec].source, 25)) == pytest.approx(440, abs=4)  # the default
    assert str(tmp_path) not in " ".join(failures.values())  # reasons name no server path
    library.prune(set())
    assert library.failure("fifo.wav") is None  # tried again when next needed


def test_a_link_inside_the_media_dir_is_followed(library: MusicLibrary, media: Path) -> None:
    (media / "real").mkdir()
    tone_wav(media / "real" / "hold.wav", 800)
    (media / "alias.wav").symlink_to(media / "real" / "hold.wav")
    music = library.music("alias.wav", SILENCE)
    assert settle(library) == []
    assert dominant_freq(frames(music.source, 25)) == pytest.approx(800, abs=4)


def test_a_failed_message_plays_the_beeps(library: MusicLibrary) -> None:
    message = library.message("missing.wav")
    assert [spec for spec, _ in settle(library)] == ["missing.wav"]
    assert np.array_equal(
        frames(message, BEEP_SAMPLES.size // 160), BEEP_SAMPLES[: BEEP_SAMPLES.size // 160 * 160]
    )


def test_messages_tone_and_default_beeps() -> None:
    library = MusicLibrary()
    tone = library.message("tone:700")
    n = 0
    while not tone.finished and n < 1000:
        tone.next_frame()
        n += 1
    assert n == 100  # 2 s
    beeps = library.message(None)
    assert isinstance(beeps, LoopSource) and beeps.samples is BEEP_SAMPLES and not beeps.loop
    assert dominant_freq(BEEP_SAMPLES) == pytest.approx(1000, abs=4)
