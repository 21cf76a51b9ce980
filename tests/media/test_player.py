"""Audio sources: tone frequency and phase continuity, silence, sharing one source per tick.

Decoding files (WAV, MP3, resampling) is miniaudio's job: tests/media_engine/test_media_decode.py."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from bridgeline.media import g711
from bridgeline.media.player import (
    FRAME_SAMPLES,
    SharedSource,
    SilenceSource,
    ToneSource,
)


def peak_hz(x: NDArray[np.int16], rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spectrum))])


def frames_of(source: ToneSource, n: int) -> NDArray[np.int16]:
    return np.concatenate([source.next_frame() for _ in range(n)])


@pytest.mark.parametrize("freq", [350.0, 440.0, 1000.0, 1633.0, 3000.0])
def test_tone_frequency(freq: float) -> None:
    x = frames_of(ToneSource(freq, 0.5), 50)  # one second: 1 Hz FFT bins
    assert abs(peak_hz(x) - freq) <= 2
    assert 0.45 * 32767 < np.abs(x).max() <= 0.5 * 32767 + 1


def test_tone_phase_is_continuous_across_frames() -> None:
    tone = ToneSource(440, 0.5)
    x = frames_of(tone, 500).astype(np.float64)  # 10 s, long enough for phase drift to show
    expected = 0.5 * 32767 * np.sin(2 * np.pi * 440 * np.arange(x.size) / 8000)
    assert np.abs(x - expected).max() <= 1.0


def test_dual_tone_has_both_components() -> None:
    x = frames_of(ToneSource((440.0, 480.0), 0.5), 50)
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64)))
    assert sorted(np.argsort(spectrum)[-2:].tolist()) == [440, 480]
    assert np.abs(x).max() <= 0.5 * 32767 + 1


def test_silence_and_bad_tone_arguments() -> None:
    frame = SilenceSource().next_frame()
    assert frame.shape == (FRAME_SAMPLES,) and not frame.any() and not SilenceSource().finished
    with pytest.raises(ValueError):
        ToneSource(440, 1.5)


def test_shared_source_advances_once_per_tick() -> None:
    shared = SharedSource(ToneSource(440))
    reference = ToneSource(440)
    for tick in range(5):
        first = shared.frame_at(tick)
        assert all(shared.frame_at(tick) is first for _ in range(3))  # many listeners, one frame
        assert (first == reference.next_frame()).all()
    assert not shared.finished


def test_shared_source_encodes_once_per_tick_and_codec() -> None:
    """Every listener of a tick gets the same bytes object per codec (one encode, not one per leg),
    the bytes are that tick's frame encoded, and a new tick encodes anew."""
    shared = SharedSource(ToneSource(440))
    reference = ToneSource(440)
    for tick in range(4):
        frame = reference.next_frame()
        ulaw = shared.codes_at(tick, g711.PCMU)
        alaw = shared.codes_at(tick, g711.PCMA)
        assert shared.codes_at(tick, g711.PCMU) is ulaw and shared.codes_at(tick, g711.PCMA) is alaw
        assert ulaw == g711.ulaw_encode(frame) and alaw == g711.alaw_encode(frame)
        assert shared.frame_at(tick) is shared.frame_at(tick)  # asking for codes did not advance it
