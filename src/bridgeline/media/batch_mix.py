"""Mix-minus for many plain conferences of the same size at once, and G.711 over whole batches.

A media engine with hundreds of ten-party conferences would otherwise pay a handful of numpy calls
per conference per tick (decode, reduce, subtract, clip, cast, encode), and at small N a numpy call
costs more in overhead than in arithmetic. Stacking K conferences of N members into one (K, N, 160)
array makes that four calls for all of them: the sum over each conference's members, the subtraction
of each member's own frame, the clip and the cast, exactly what `Mixer`'s mix-minus does per
conference (same saturation, so the same samples).

Rows are conference-major: conference k's member j is row k * N + j of `inputs` and of the result.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from bridgeline.media import g711
from bridgeline.media.mixer import FRAME_SAMPLES, saturate


class MixMinusBatch:
    """K conferences of N members each, every member hearing all the others (and not itself).

    Write frames into `inputs` (rows keep their value between ticks), call `mix()`, and read
    listener row r from the result, a buffer that the next `mix()` overwrites.
    """

    def __init__(self, conferences: int, members: int, frame_samples: int = FRAME_SAMPLES) -> None:
        if conferences < 1 or members < 1:
            raise ValueError("a batch needs at least one conference of at least one member")
        self.conferences, self.members = conferences, members
        shape = (conferences, members, frame_samples)
        self._in3: NDArray[np.int16] = np.zeros(shape, dtype=np.int16)
        self.inputs: NDArray[np.int16] = self._in3.reshape(conferences * members, frame_samples)
        self._total = np.zeros((conferences, 1, frame_samples), dtype=np.int32)
        self._acc = np.zeros(shape, dtype=np.int32)
        self._out3: NDArray[np.int16] = np.zeros(shape, dtype=np.int16)
        self.out: NDArray[np.int16] = self._out3.reshape(conferences * members, frame_samples)

    def mix(self) -> NDArray[np.int16]:
        """Row r of the result is the clipped sum of the other rows of r's conference."""
        np.add.reduce(self._in3, axis=1, dtype=np.int32, out=self._total, keepdims=True)
        np.subtract(self._total, self._in3, out=self._acc)
        saturate(self._acc, self._out3)
        return self.out

    def decode_into(self, payload_type: int, codes: bytes) -> None:
        """Decode one 160-byte G.711 frame per row, for every row, straight into `inputs`."""
        index = np.frombuffer(codes, dtype=np.uint8).astype(np.intp)  # intp: the fast take()
        g711.decode_table(payload_type).take(index, out=self.inputs.reshape(-1), mode="clip")


def encode_rows(payload_type: int, pcm: NDArray[np.int16]) -> bytes:
    """All rows of `pcm` encoded in one table lookup: row r's codes are bytes r*160 .. r*160+160."""
    return g711.encode_array(payload_type, pcm).tobytes()
