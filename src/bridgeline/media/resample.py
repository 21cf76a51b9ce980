"""8 kHz <-> 16 kHz for mixing G.711 legs with wideband (G.722) ones: streaming 2x up/down sampling.

One Kaiser-windowed sinc low-pass (designed once at import with numpy) serves both directions: going
down it is the anti-alias filter (a 6 kHz tone from a wideband phone must not fold to 2 kHz in a
G.711 ear), going up the interpolation filter that removes the spectral image of zero-stuffing.
Cut-off 3.9 kHz, 96 taps, beta 8: flat to about 3.4 kHz (the G.711 band), below -70 dB from about
4.4 kHz; 3 ms of delay each way.

Each stream (one leg's input or output, one music source) keeps its own `Upsampler`/`Downsampler`,
whose history of the previous frame's last samples makes consecutive 20 ms frames join without a
click; the filtering is one float32 matrix product per frame, over a sliding-window view of that
history and the new frame (made once per stream: no gather, no copy per frame).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

NARROW_FRAME: Final = 160  # 20 ms at 8 kHz
WIDE_FRAME: Final = 320  # 20 ms at 16 kHz
TAPS: Final = 96
_CUTOFF_HZ: Final = 3900.0
_WIDE_RATE: Final = 16000.0
_KAISER_BETA: Final = 8.0


def _design() -> NDArray[np.float32]:
    k = np.arange(TAPS) - (TAPS - 1) / 2
    band = 2 * _CUTOFF_HZ / _WIDE_RATE
    taps = band * np.sinc(band * k) * np.kaiser(TAPS, _KAISER_BETA)
    unity: NDArray[np.float32] = (taps / taps.sum()).astype(np.float32)  # unity gain at DC
    return unity


LOWPASS: Final = _design()  # symmetric, so convolution and correlation are the same


# 0-d arrays, and the ufuncs themselves: np.clip's argument handling costs more than a frame's clipping.
_LO, _HI = np.array(-32768, dtype=np.float32), np.array(32767, dtype=np.float32)


def _to_int16(samples: NDArray[np.float32]) -> NDArray[np.int16]:
    np.minimum(samples, _HI, out=samples)  # the filter's ripple may overshoot full scale
    np.maximum(samples, _LO, out=samples)
    return samples.astype(np.int16)  # truncation: under one step of error, far below G.711's


class Upsampler:
    """8 kHz frames in, 16 kHz frames out (twice as many samples): zero-stuffing and the low-pass,
    computed as its two polyphase halves."""

    _HISTORY: Final = TAPS // 2 - 1
    # Output sample 2m+p is 2 * sum_j h[2j+p] * x[m-j]: window m holds x[m-47..m], oldest first.
    _PHASES: Final = np.stack([LOWPASS[0::2][::-1], LOWPASS[1::2][::-1]], axis=1) * np.float32(2)

    def __init__(self) -> None:
        self._buffer = np.zeros(self._HISTORY + NARROW_FRAME, dtype=np.float32)
        self._windows = sliding_window_view(self._buffer, TAPS // 2)  # (160, 48), a view

    def process(self, frame: NDArray[np.int16]) -> NDArray[np.int16]:
        buffer = self._buffer
        buffer[: self._HISTORY] = buffer[NARROW_FRAME:]
        buffer[self._HISTORY :] = frame
        wide = np.dot(self._windows, self._PHASES)  # (160, 2): even and odd outputs
        return _to_int16(wide.reshape(WIDE_FRAME))


class Downsampler:
    """16 kHz frames in, 8 kHz frames out: the low-pass (anti-alias), then every other sample."""

    _HISTORY: Final = TAPS - 1

    def __init__(self) -> None:
        self._buffer = np.zeros(self._HISTORY + WIDE_FRAME, dtype=np.float32)
        # Window m ends at input sample 2m+1: every other window of the history and the frame.
        self._windows = sliding_window_view(self._buffer, TAPS)[1::2]  # (160, 96), a view

    def process(self, frame: NDArray[np.int16]) -> NDArray[np.int16]:
        buffer = self._buffer
        buffer[: self._HISTORY] = buffer[WIDE_FRAME:]
        buffer[self._HISTORY :] = frame
        return _to_int16(np.dot(self._windows, LOWPASS))
