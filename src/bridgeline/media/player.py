"""Audio sources that yield consecutive 20 ms int16 frames at 8 kHz: tones and silence, and the
shared wrapper that lets one source serve many listeners in a tick (decoded files and URLs are
the SIP carrier's `music.py` `LoopSource`, decoded by miniaudio in its `music_decode.py`).

A source is asked once per tick and its frame may be routed to any number of listeners, so one
music player serves every held member of a conference. Returned frames are read-only.
"""

from __future__ import annotations

import math
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray

from bridgeline.media import g711
from bridgeline.media.resample import Upsampler

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160

_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
_SILENCE.flags.writeable = False


class AudioSource(Protocol):
    """Anything the conference tick can pull a frame from."""

    @property
    def finished(self) -> bool: ...

    def next_frame(self) -> NDArray[np.int16]: ...


class SharedSource:
    """Lets many conferences pull one source in the same tick: it advances once per tick number."""

    def __init__(self, source: AudioSource) -> None:
        self.source = source
        self._tick: int | None = None
        self._frame = _SILENCE
        self._codes: dict[int, bytes] = {}  # this tick's frame, encoded, by G.711 payload type
        # For conferences mixed at 16 kHz: the frame upsampled, once per tick (one stream state).
        self._upsampler: Upsampler | None = None
        self._wide: NDArray[np.int16] | None = None

    @property
    def finished(self) -> bool:
        return self.source.finished

    def frame_at(self, tick: int) -> NDArray[np.int16]:
        """The source's frame for `tick`; asking again with the same tick returns the same frame."""
        if tick != self._tick:
            self._tick = tick
            self._frame = self.source.next_frame()
            self._codes.clear()
            self._wide = None
        return self._frame

    def wide_frame_at(self, tick: int) -> NDArray[np.int16]:
        """frame_at(tick) upsampled to 16 kHz (320 samples), computed once per tick however many
        wideband conferences hear it. The sources themselves stay 8 kHz (telephone-band music and
        prompts: decoded files are resampled to 8 kHz once, when loaded)."""
        frame = self.frame_at(tick)
        if self._wide is None:
            if self._upsampler is None:
                self._upsampler = Upsampler()
            self._wide = self._upsampler.process(frame)
        return self._wide

    def codes_at(self, tick: int, payload_type: int) -> bytes:
        """The frame for `tick` encoded for a G.711 payload type: encoded once per tick and codec,
        however many legs hear it (hold music for thousands of held calls is one encode)."""
        frame = self.frame_at(tick)
        codes = self._codes.get(payload_type)
        if codes is None:
            codes = self._codes[payload_type] = g711.encode_array(payload_type, frame).tobytes()
        return codes


class SilenceSource:
    """Endless silence; never finishes."""

    finished = False

    def next_frame(self) -> NDArray[np.int16]:
        return _SILENCE


class ToneSource:
    """A continuous sine (or a sum of sines, e.g. 440 + 480 Hz ringback) with phase kept across frames.

    amplitude is the peak as a fraction of full scale; with several frequencies it is shared equally.
    """

    finished = False

    def __init__(self, freq_hz: float | tuple[float, ...], amplitude: float = 0.25) -> None:
        freqs = (freq_hz,) if isinstance(freq_hz, int | float) else tuple(freq_hz)
        if not freqs or not 0.0 <= amplitude <= 1.0:
            raise ValueError("need at least one frequency and 0 <= amplitude <= 1")
        self._step = np.array([2 * math.pi * f / SAMPLE_RATE for f in freqs])  # radians per sample
        self._phase = np.zeros(len(freqs))
        self._ramp = np.arange(FRAME_SAMPLES, dtype=np.float64)
        self._scale = 32767.0 * amplitude / len(freqs)

    def next_frame(self) -> NDArray[np.int16]:
        angles = self._phase[:, None] + self._step[:, None] * self._ramp
        frame: NDArray[np.int16] = np.rint(np.sin(angles).sum(axis=0) * self._scale).astype(np.int16)
        # Advance and wrap the phase so it stays accurate however long the tone plays.
        self._phase = np.mod(self._phase + self._step * FRAME_SAMPLES, 2 * math.pi)
        frame.flags.writeable = False
        return frame
