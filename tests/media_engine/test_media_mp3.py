"""Hold music and messages from MP3 files, decoded in-process by miniaudio (no external decoder)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from media_peer import dominant_freq

from bridgeline.adapters.carriers.sip.music import MusicLibrary
from bridgeline.adapters.carriers.sip.music_decode import decode_audio
from bridgeline.adapters.carriers.sip.music_fetch import MediaLimits

TONE_MP3 = Path(__file__).parent / "data" / "tone600.mp3"  # 1.5 s of 600 Hz, encoded once with lame


def test_an_mp3_decodes_to_8khz_samples() -> None:
    samples = decode_audio(TONE_MP3.read_bytes(), max_seconds=60)
    assert samples.dtype == np.int16
    assert 1.3 * 8000 < len(samples) < 1.8 * 8000
    assert dominant_freq(samples[2000:10000]) == pytest.approx(600, abs=5)


def test_a_message_from_an_mp3_plays_its_tone_then_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no mpg123, ffmpeg or sox to fall back on
    shutil.copy(TONE_MP3, tmp_path / "tone.mp3")
    loaded = threading.Event()
    library = MusicLibrary(MediaLimits(media_dir=tmp_path), on_loaded=loaded.set)
    source = library.message("tone.mp3")
    assert loaded.wait(10)  # set by the worker when the load ends
    assert library.poll() == [] and not library.loading
    frames: list[np.ndarray] = []
    while not source.finished and len(frames) < 500:
        frames.append(source.next_frame())
    pcm = np.concatenate(frames)
    library.close()
    assert dominant_freq(pcm[2000:10000]) == pytest.approx(600, abs=5)
