"""G.722 (wideband, 16 kHz audio at 64 kbit/s) through Sippy's libg722 (PyPI `G722`, public domain,
bit-exact to the ITU reference).

G.722's RTP quirk (RFC 3551 4.5.2): the payload type is static 9 and SDP says `G722/8000`, although
the audio is sampled at 16 kHz, so timestamps advance 160 per 20 ms like G.711's, and 20 ms is 160
bytes (one byte per 8 kHz timestamp unit, which is why the jitter buffer and the packetiser need no
change of arithmetic). G.722 is ADPCM: encoder and decoder carry state from frame to frame, so every
leg has its own `G722Stream`, fed each direction's frames in order, once each.
"""

from __future__ import annotations

from typing import Final

import G722
import numpy as np
from numpy.typing import NDArray

PAYLOAD_TYPE: Final = 9  # static (RFC 3551 table 4)
SAMPLE_RATE: Final = 16000
BIT_RATE: Final = 64000  # the mode every SIP G.722 phone speaks; 48/56k only drop low bits
FRAME_BYTES: Final = 160  # 20 ms
FRAME_SAMPLES: Final = 320  # 20 ms at 16 kHz


class G722Stream:
    """One leg's encoder (what we send) and decoder (what it sends us)."""

    __slots__ = ("_decoder", "_encoder")

    def __init__(self) -> None:
        # Two objects: each direction's ADPCM state is its own. use_numpy=False: decode returns an
        # array('h'), which np.frombuffer takes without a copy, whatever extras are installed.
        self._encoder = G722.G722(SAMPLE_RATE, BIT_RATE, use_numpy=False)
        self._decoder = G722.G722(SAMPLE_RATE, BIT_RATE, use_numpy=False)

    def encode(self, pcm: NDArray[np.int16]) -> bytes:
        """16 kHz int16 samples (320 per 20 ms) to G.722 codes (160 bytes)."""
        codes: bytes = self._encoder.encode(np.ascontiguousarray(pcm, dtype=np.int16))
        return codes

    def decode(self, codes: bytes) -> NDArray[np.int16]:
        """G.722 codes to 16 kHz int16 samples (two per byte)."""
        return np.frombuffer(self._decoder.decode(codes), dtype=np.int16)
