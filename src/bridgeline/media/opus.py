"""Opus (RFC 6716; RTP format RFC 7587) through libopus, called with opuslib-next's ctypes prototypes
(the library itself is Debian's libopus0: `make deps-codecs`). Computation on bytes, like libg722.

What is particular to Opus on RTP:
- the RTP clock is always 48 kHz (`opus/48000/2` in SDP, whatever is really sent), so 20 ms is
  +960 in timestamps whatever our audio rate. We encode from and decode to 16 kHz, the wideband
  mix's rate: libopus does both directly, with no resampler of ours;
- a packet's size says nothing of its duration (variable bit rate, 2.5 to 120 ms per packet): the
  duration is read from the packet's table-of-contents byte (`duration`);
- a lost packet is concealed by the decoder itself (packet loss concealment: decoding "no data"
  for the missing duration), or recovered from the next packet's in-band FEC when it carries one.

Each leg has one `OpusStream` (an encoder for what we send, a decoder for what it sends us), fed
each direction's frames in order; the 48 kHz timeline and the loss handling are `opus_jitter.py`'s.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

try:
    from opuslib_next.api import ctl as _ctl
    from opuslib_next.api import decoder as _decoder
    from opuslib_next.api import encoder as _encoder
except Exception:
    AVAILABLE = False
else:
    AVAILABLE = True

# The media runtime knows codecs by RFC 3551's static numbers; Opus has none, so it gets a key of
# the runtime's own, outside RTP's 7 bits: no number a peer puts on the wire can ever mean it.
CODEC_ID: Final = 256
RTP_CLOCK: Final = 48000
SAMPLE_RATE: Final = 16000  # what we encode from and decode to: the wideband mix's rate
TS_PER_SAMPLE: Final = RTP_CLOCK // SAMPLE_RATE  # 3
FRAME_SAMPLES: Final = 320  # 20 ms at 16 kHz: one tick
TICK_TS: Final = 960  # 20 ms on the 48 kHz RTP clock
MAX_PACKET_SAMPLES: Final = 1920  # 120 ms at 16 kHz, the longest an Opus packet lasts
# Packet times we send (libopus >= 1.2 encodes up to 120 ms in one call); any other asked ptime
# (30 ms...) is sent at 20 ms. What we receive may be any Opus duration, 2.5 ms and up.
SENDABLE_PTIMES: Final = frozenset({10, 20, 40, 60, 80, 100, 120})
DEFAULT_BITRATE: Final = 24000  # wideband speech at full quality (RFC 7587 3.1.1 suggests 16-20k+)
MIN_BITRATE: Final = 6000  # RFC 7587 7.1: maxaverageplaybackrate 6000..510000
MAX_BITRATE: Final = 510000
FEC_LOSS_PERCENT: Final = 10  # the loss rate the encoder plans FEC for when the peer asks for it
_MAX_PAYLOAD: Final = 1500  # the encoder's output bound: one datagram
_APPLICATION_VOIP: Final = 2048
_NARROWBAND, _MEDIUMBAND, _WIDEBAND = 1101, 1102, 1103


@dataclass(frozen=True, slots=True)
class OpusParams:
    """What the peer's `a=fmtp` asks of what we send (RFC 7587 7.1); the rest of its parameters
    describe what it sends, which the decoder reads from the packets themselves."""

    fec: bool = False  # useinbandfec=1: the peer decodes FEC, so we add it
    max_playback_rate: int = SAMPLE_RATE  # maxplaybackrate: above 16 kHz changes nothing for us
    max_bitrate: int = MAX_BITRATE  # maxaveragebitrate

    @classmethod
    def from_fmtp(cls, fmtp: str | None) -> OpusParams:
        """The parameters of an fmtp value (`useinbandfec=1; maxplaybackrate=16000`): unknown names
        and unreadable or out-of-range values are ignored (the peer's text), never raised."""
        values: dict[str, str] = {}
        for item in (fmtp or "").split(";"):
            name, _, value = item.partition("=")
            values[name.strip().lower()] = value.strip()
        return cls(
            fec=values.get("useinbandfec") == "1",
            max_playback_rate=_number(values.get("maxplaybackrate"), 8000, RTP_CLOCK, SAMPLE_RATE),
            max_bitrate=_number(values.get("maxaveragebitrate"), MIN_BITRATE, MAX_BITRATE, MAX_BITRATE),
        )


def _number(text: str | None, low: int, high: int, default: int) -> int:
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 7:
        return default
    return min(max(int(text), low), high)


class OpusStream:
    """One leg's encoder (16 kHz mono in) and decoder (16 kHz mono out)."""

    __slots__ = ("_dec", "_enc", "_out", "_pcm", "_pcm_ptr")

    def __init__(self, params: OpusParams = OpusParams()) -> None:
        if not AVAILABLE:
            raise ValueError("Opus needs libopus (Debian: libopus0), which is not installed")
        self._enc: Any = _encoder.create_state(SAMPLE_RATE, 1, _APPLICATION_VOIP)
        self._dec: Any = _decoder.create_state(SAMPLE_RATE, 1)
        bitrate = min(DEFAULT_BITRATE, params.max_bitrate)
        _encoder.encoder_ctl(self._enc, _ctl.set_bitrate, bitrate)
        rate = params.max_playback_rate
        bandwidth = _NARROWBAND if rate <= 8000 else _MEDIUMBAND if rate <= 12000 else _WIDEBAND
        _encoder.encoder_ctl(self._enc, _ctl.set_max_bandwidth, bandwidth)
        if params.fec:
            _encoder.encoder_ctl(self._enc, _ctl.set_inband_fec, 1)
            _encoder.encoder_ctl(self._enc, _ctl.set_packet_loss_perc, FEC_LOSS_PERCENT)
        # Output buffers made once: the bindings' convenience calls build a Python list per frame.
        self._pcm = np.zeros(MAX_PACKET_SAMPLES, dtype=np.int16)
        self._pcm_ptr = self._pcm.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))
        self._out = ctypes.create_string_buffer(_MAX_PAYLOAD)

    def encode(self, pcm: NDArray[np.int16]) -> bytes:
        """16 kHz samples, one Opus frame's worth (160 per 10 ms ... 1920 per 120 ms), to a packet."""
        samples = np.ascontiguousarray(pcm, dtype=np.int16)
        pointer = samples.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))
        size = int(_encoder.libopus_encode(self._enc, pointer, len(samples), self._out, _MAX_PAYLOAD))
        if size < 0:
            raise ValueError(f"libopus could not encode {len(samples)} samples (error {size})")
        return self._out.raw[:size]

    def duration(self, payload: bytes) -> int:
        """The packet's duration on the 48 kHz RTP clock, from its TOC byte; -1 when it is not a
        well-formed Opus packet (or lasts over 120 ms, which no valid packet does)."""
        if not payload:
            return -1
        samples = int(_decoder.libopus_get_nb_samples(self._dec, payload, len(payload)))
        return samples * TS_PER_SAMPLE if 0 < samples <= MAX_PACKET_SAMPLES else -1

    def decode(self, payload: bytes) -> NDArray[np.int16] | None:
        """One packet to 16 kHz samples (a copy), or None when libopus refuses it (corrupt)."""
        return self._run(payload, MAX_PACKET_SAMPLES, 0)

    def conceal(self, samples: int, following: bytes | None = None) -> NDArray[np.int16]:
        """`samples` (a multiple of 40: 2.5 ms) of audio for a lost stretch: recovered from the
        in-band FEC of `following` (the packet right after the loss) when it carries one, else the
        decoder's loss concealment (which libopus also falls back to)."""
        pcm = None
        if following is not None:
            pcm = self._run(following, samples, 1)
        if pcm is None:
            pcm = self._run(None, samples, 0)
        return pcm if pcm is not None else np.zeros(samples, dtype=np.int16)

    def _run(self, payload: bytes | None, samples: int, fec: int) -> NDArray[np.int16] | None:
        size = 0 if payload is None else len(payload)
        count = int(_decoder.libopus_decode(self._dec, payload, size, self._pcm_ptr, samples, fec))
        if count < 0:
            return None
        return self._pcm[:count].copy()


__all__ = ["AVAILABLE", "CODEC_ID", "OpusParams", "OpusStream"]
