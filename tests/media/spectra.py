"""What a peer heard, as numbers: the spectrum of a PCM capture, its strongest tones, the level
at one frequency and the RMS. Shared by the runtime's tests (media_sim.py) and the engine shell's
(tests/media_engine/media_peer.py, which finds this folder through its conftest)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

RATE = 8000


def spectrum(pcm: NDArray[np.int16]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    x = pcm.astype(np.float64)
    mags = np.abs(np.fft.rfft(x * np.hanning(x.size))) / max(x.size, 1)
    return np.fft.rfftfreq(x.size, 1 / RATE).astype(np.float64), mags


def dominant_freq(pcm: NDArray[np.int16]) -> float:
    freqs, mags = spectrum(pcm)
    return float(freqs[int(np.argmax(mags))])


def peak_freqs(pcm: NDArray[np.int16], count: int, min_gap_hz: float = 60.0) -> list[float]:
    """The `count` strongest spectral peaks at least min_gap_hz apart, in ascending frequency."""
    freqs, mags = spectrum(pcm)
    mags = mags.copy()
    peaks: list[float] = []
    for _ in range(count):
        i = int(np.argmax(mags))
        peaks.append(float(freqs[i]))
        mags[np.abs(freqs - freqs[i]) < min_gap_hz] = 0
    return sorted(peaks)


def level_at(pcm: NDArray[np.int16], freq: float, width_hz: float = 20.0) -> float:
    """Spectral magnitude around `freq` relative to the strongest peak (0..1)."""
    freqs, mags = spectrum(pcm)
    top = float(mags.max()) or 1.0
    return float(mags[np.abs(freqs - freq) <= width_hz].max()) / top


def rms(pcm: NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0
