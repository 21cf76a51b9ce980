"""Audio sources that yield consecutive 20 ms int16 frames at 8 kHz: WAV files, tones, silence.

A source is asked once per tick and its frame may be routed to any number of listeners, so one
music player serves every held member of a conference. Returned frames are read-only.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from pathlib import Path
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray

from bridgeline.media import g711

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160
WAVE_FORMAT_PCM: Final = 1
WAVE_FORMAT_ALAW: Final = 6
WAVE_FORMAT_MULAW: Final = 7
WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE

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

    @property
    def finished(self) -> bool:
        return self.source.finished

    def frame_at(self, tick: int) -> NDArray[np.int16]:
        """The source's frame for `tick`; asking again with the same tick returns the same frame."""
        if tick != self._tick:
            self._tick = tick
            self._frame = self.source.next_frame()
        return self._frame


class WavFormatError(ValueError):
    """The file is not a WAV this player understands."""


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


class WavPlayer:
    """Plays a WAV file as 8 kHz mono frames, once or looped.

    Accepts PCM (8/16/24/32-bit, any rate, any channel count: channels are averaged and the rate is
    converted by linear interpolation) and G.711 u-law/A-law WAV (format tags 7/6). The whole file is
    decoded up front; hold music is short and shared, so per-tick work is a slice.
    """

    def __init__(self, source: str | Path | bytes, *, loop: bool = False) -> None:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        samples = load_wav(data)
        samples.flags.writeable = False
        self.samples: NDArray[np.int16] = samples
        self.loop = loop
        self._pos = 0

    @property
    def finished(self) -> bool:
        return not self.loop and self._pos >= self.samples.size

    @property
    def duration_s(self) -> float:
        return self.samples.size / SAMPLE_RATE

    def rewind(self) -> None:
        self._pos = 0

    def next_frame(self) -> NDArray[np.int16]:
        """The next frame; the last partial frame is padded with silence, then silence once finished."""
        samples, pos, n = self.samples, self._pos, self.samples.size
        if pos + FRAME_SAMPLES <= n:
            self._pos = pos + FRAME_SAMPLES
            return samples[pos : pos + FRAME_SAMPLES]
        if n == 0 or (pos >= n and not self.loop):
            self._pos = n
            return _SILENCE
        if not self.loop:
            self._pos = n
            frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            frame[: n - pos] = samples[pos:]
        else:  # wrap seamlessly, even when the file is shorter than a frame
            idx = (pos + np.arange(FRAME_SAMPLES)) % n
            frame = samples[idx]
            self._pos = int(idx[-1]) + 1
        frame.flags.writeable = False
        return frame


def load_wav(data: bytes) -> NDArray[np.int16]:
    """Decode a WAV file's bytes to 8 kHz mono int16 samples."""
    fmt, payload = _riff_chunks(data)
    if len(fmt) < 16:
        raise WavFormatError("fmt chunk too short")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if channels < 1 or rate < 1:
        raise WavFormatError(f"bad WAV header: {channels} channels at {rate} Hz")
    if tag == WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # the sub-format GUID starts with the plain tag
        if tag == WAVE_FORMAT_PCM:  # the 3.11 wave module rejects extensible headers: read it here
            return _to_8k_mono(_to_float(payload, bits // 8), channels, rate)
    if tag in (WAVE_FORMAT_MULAW, WAVE_FORMAT_ALAW):
        if bits != 8:
            raise WavFormatError(f"G.711 WAV must have 8-bit samples, not {bits}")
        codes = np.frombuffer(payload, dtype=np.uint8)
        codes = codes[: codes.size - codes.size % channels]
        pcm = g711.ulaw_decode(codes) if tag == WAVE_FORMAT_MULAW else g711.alaw_decode(codes)
        width = 2
        raw = pcm.tobytes()
    elif tag == WAVE_FORMAT_PCM:
        try:  # the stdlib reader validates the header and handles odd chunk layouts
            with wave.open(io.BytesIO(data), "rb") as wav:
                width = wav.getsampwidth()
                raw = wav.readframes(wav.getnframes())
        except (wave.Error, EOFError) as exc:
            raise WavFormatError(str(exc)) from None
    else:
        raise WavFormatError(f"unsupported WAV format tag {tag:#x}")
    return _to_8k_mono(_to_float(raw, width), channels, rate)


def _riff_chunks(data: bytes) -> tuple[bytes, bytes]:
    """(fmt chunk body, data chunk body) from a RIFF/WAVE file; other chunks are skipped."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavFormatError("not a RIFF/WAVE file")
    fmt: bytes | None = None
    offset = 12
    while offset + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, offset)
        body = data[offset + 8 : offset + 8 + size]  # a truncated final chunk is read as far as it goes
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            if fmt is None:
                raise WavFormatError("data chunk before fmt chunk")
            return fmt, body
        offset += 8 + size + (size & 1)  # chunks are padded to even length
    raise WavFormatError("no fmt/data chunk")


def _to_float(raw: bytes, width: int) -> NDArray[np.float64]:
    if width == 1:  # 8-bit PCM is unsigned
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64)
    if width == 3:
        b = np.frombuffer(raw[: len(raw) - len(raw) % 3], dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return (np.where(v & 0x800000, v - 0x1000000, v) / 256.0).astype(np.float64)
    if width == 4:
        return np.frombuffer(raw, dtype="<i4") / 65536.0
    raise WavFormatError(f"unsupported sample width {width}")


def _to_8k_mono(x: NDArray[np.float64], channels: int, rate: int) -> NDArray[np.int16]:
    if channels > 1:
        x = x[: x.size - x.size % channels].reshape(-1, channels).mean(axis=1)
    if rate != SAMPLE_RATE and x.size:
        ratio = rate / SAMPLE_RATE
        if ratio > 1:  # crude anti-alias: average over one output period before decimating
            width = math.ceil(ratio)
            x = np.convolve(x, np.full(width, 1.0 / width), mode="same")
        n_out = int(x.size / ratio)
        x = np.interp(np.arange(n_out) * ratio, np.arange(x.size), x)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)
