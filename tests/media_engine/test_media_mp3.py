"""Hold music and messages from MP3 files, through an installed decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from media_peer import dominant_freq

from bridgeline.adapters.music import MP3_DECODERS, Mp3Unavailable, MusicLibrary, decode_mp3

TONE_MP3 = Path(__file__).parent / "data" / "tone600.mp3"  # 1.5 s of 600 Hz, encoded once with lame


def test_an_mp3_decodes_to_8khz_samples() -> None:
    samples = decode_mp3(TONE_MP3)
    assert samples.dtype == np.int16
    assert 1.3 * 8000 < len(samples) < 1.8 * 8000
    assert dominant_freq(samples[2000:10000]) == pytest.approx(600, abs=5)


def test_a_message_from_an_mp3_plays_its_tone_then_finishes() -> None:
    source = MusicLibrary().message(str(TONE_MP3))
    frames = []
    while not source.finished:
        frames.append(source.next_frame())
    pcm = np.concatenate(frames)
    assert dominant_freq(pcm[2000:10000]) == pytest.approx(600, abs=5)


def test_without_any_decoder_the_error_says_what_to_install() -> None:
    missing = (("no-such-decoder-xyz", ["{path}"]),)
    with pytest.raises(Mp3Unavailable, match="mpg123"):
        decode_mp3(TONE_MP3, decoders=missing)


def test_the_decoders_tried_cover_the_common_tools() -> None:
    assert [name for name, _ in MP3_DECODERS] == ["mpg123", "ffmpeg", "sox"]
