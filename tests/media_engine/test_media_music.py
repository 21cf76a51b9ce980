"""Music spec parsing, per-kind defaults, sharing and the WAV cache (no sockets)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from media_peer import dominant_freq, peak_freqs
from numpy.typing import NDArray

from bridgeline.adapters.music import (
    BEEP_SAMPLES,
    CHIME_SAMPLES,
    DEFAULT_SPECS,
    SILENCE,
    BuiltinSpec,
    FileSpec,
    LoopSource,
    MusicLibrary,
    MusicSpecError,
    ToneSpec,
    parse_spec,
    spec_for,
)
from bridgeline.core.model import Music
from bridgeline.media.player import AudioSource
from bridgeline.phlo.definition import NodeSettings


@pytest.mark.parametrize(
    ("text", "freqs"),
    [("tone:440", (440.0,)), ("tone:440+480", (440.0, 480.0)), (" TONE:350+440 ", (350.0, 440.0))],
)
def test_tone_specs(text: str, freqs: tuple[float, ...]) -> None:
    assert parse_spec(text) == ToneSpec(freqs)


@pytest.mark.parametrize(
    "text", ["", "  ", "tone:", "tone:abc", "tone:440+", "tone:10", "tone:4000", "tone:nan", "tone:1+2+3+4+5"]
)
def test_bad_specs(text: str) -> None:
    with pytest.raises(MusicSpecError):
        parse_spec(text)


def test_paths_and_builtins() -> None:
    assert parse_spec("/srv/hold.wav") == FileSpec(Path("/srv/hold.wav"))
    assert parse_spec("music/hold.wav") == FileSpec(Path("music/hold.wav"))
    assert parse_spec(SILENCE) == BuiltinSpec(SILENCE)


def test_spec_for_uses_settings_then_defaults() -> None:
    settings = NodeSettings(agent_hold_music="tone:300", wait_music=" ", voicemail_message="/vm.wav")
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


def test_invalid_music_falls_back_to_the_kind_default(tmp_path: Path) -> None:
    library = MusicLibrary()
    missing = library.music(str(tmp_path / "missing.wav"), "tone:440")
    assert dominant_freq(frames(missing.source, 25)) == pytest.approx(440, abs=4)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    assert library.music(str(bad), SILENCE).frame_at(0).any() == False  # noqa: E712


def write_wav(path: Path, samples: NDArray[np.int64]) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(samples.astype("<i2").tobytes())


def test_wav_loaded_once_and_looped_or_played_once(tmp_path: Path) -> None:
    path = tmp_path / "hold.wav"
    write_wav(path, np.arange(400) - 200)  # 2.5 frames
    library = MusicLibrary()
    music = library.music(str(path), SILENCE)
    looped = np.concatenate([music.frame_at(t) for t in range(5)])
    assert np.array_equal(looped, np.tile(np.arange(400) - 200, 2))
    path.unlink()  # cached: a message from the same file still plays
    message = library.message(str(path))
    played = frames(message, 3)
    assert np.array_equal(played[:400], np.arange(400) - 200) and not played[400:].any()
    assert message.finished


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
