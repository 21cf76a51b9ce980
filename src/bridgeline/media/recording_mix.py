"""What a recording hears, for carriers with synthetic voices (the sim carrier's virtual phones).

Pure: frame numbers in, 8 kHz int16 PCM out. Each virtual phone "says" a steady tone of its own
(`phone_tone_hz`, derived from its address), so a recording's spectrum shows who was heard.

Plain Python (no numpy): a sim server starts without loading numpy (tests/app/test_startup_imports).
Every tone is a multiple of 100 Hz, so it repeats every 80 samples and each 20 ms frame (160 samples)
of it is the same: one frame per tone is computed once, and a recording stays in phase with the phone
whenever it starts or pauses.
"""

from __future__ import annotations

import hashlib
import math
import sys
from array import array
from collections.abc import Iterable
from functools import cache
from typing import Final

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160  # 20 ms
TONE_AMPLITUDE: Final = 6000  # a phone's tone peak: five summed stay below int16's limit
_TONE_STEPS: Final = 24  # 400, 500, ..., 2700 Hz: inside G.711's band
_SILENCE: Final = bytes(2 * FRAME_SAMPLES)


def phone_tone_hz(address: str) -> int:
    """The tone the virtual phone at `address` says: 400-2700 Hz in 100 Hz steps, by its address."""
    digest = hashlib.sha256(address.encode()).digest()
    return 400 + 100 * (int.from_bytes(digest[:4], "big") % _TONE_STEPS)


@cache
def tone_frame(hz: int) -> tuple[int, ...]:
    """Every 20 ms frame of a tone whose frequency is a multiple of 100 Hz (checked)."""
    if hz % 100 or hz <= 0:
        raise ValueError("a phone's tone is a positive multiple of 100 Hz")
    return tuple(
        round(TONE_AMPLITUDE * math.sin(2 * math.pi * hz * i / SAMPLE_RATE)) for i in range(FRAME_SAMPLES)
    )


def mix_tones(tones: Iterable[int]) -> bytes:
    """One 20 ms frame of the given tones summed (clipped to int16), little-endian PCM; silence for none."""
    frames = [tone_frame(hz) for hz in tones]
    if not frames:
        return _SILENCE
    if len(frames) == 1:
        samples = array("h", frames[0])
    else:
        samples = array("h", (max(-32768, min(32767, sum(column))) for column in zip(*frames, strict=True)))
    if sys.byteorder != "little":
        samples.byteswap()
    return samples.tobytes()
