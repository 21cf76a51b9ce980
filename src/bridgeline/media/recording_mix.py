"""What a recording hears, for carriers with synthetic voices (the sim carrier's virtual phones).

Pure: frame numbers in, 8 kHz int16 PCM out. Each virtual phone "says" a steady tone of its own
(`phone_tone_hz`, derived from its address), so a recording's spectrum shows who was heard. Frame n
of a tone is the same whoever asks, so a recording that starts late, or is paused, stays in phase
with the phone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

import numpy as np
from numpy.typing import NDArray

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160  # 20 ms
TONE_AMPLITUDE: Final = 6000  # a phone's tone peak: several summed stay far from clipping
_TONE_STEPS: Final = 24  # 400, 500, ..., 2700 Hz: inside G.711's band, a bin apart in a 1 s FFT


def phone_tone_hz(address: str) -> int:
    """The tone the virtual phone at `address` says: 400-2700 Hz in 100 Hz steps, by its address."""
    digest = hashlib.sha256(address.encode()).digest()
    return 400 + 100 * (int.from_bytes(digest[:4], "big") % _TONE_STEPS)


def tone_frame(hz: int, n: int) -> NDArray[np.int16]:
    """Frame n (20 ms) of a steady tone."""
    t = (np.arange(FRAME_SAMPLES) + n * FRAME_SAMPLES) / SAMPLE_RATE
    return (TONE_AMPLITUDE * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def mix_tones(tones: Iterable[int], n: int) -> bytes:
    """Frame n of the given tones summed (clipped to int16), as little-endian PCM; silence for none."""
    total = np.zeros(FRAME_SAMPLES, dtype=np.int32)
    for hz in tones:
        total += tone_frame(hz, n)
    return np.clip(total, -32768, 32767).astype("<i2").tobytes()
