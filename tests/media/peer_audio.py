"""A test phone's audio, shared by the runtime's tests (media_sim.py) and the engine shell's
(tests/media_engine/media_peer.py, which finds this folder through its conftest): what it sends (a
G.711 tone as consecutive RTP packets) and what it heard, as numbers (decoded in sequence order,
the spectrum, its strongest tones, the level at one frequency, the RMS)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from bridgeline.media import g711
from bridgeline.media.player import ToneSource
from bridgeline.media.rtp import RtpPacket

RATE = 8000


class ToneSender:
    """Mixin for a test phone: `tone` (None: silence) as consecutive RTP packets of `payload_type`,
    from `ssrc`, `seq` and `ts`, which the phone sets and a test may change (a NAT rebinding, a
    second stream)."""

    tone: ToneSource | None
    payload_type: int
    ssrc: int
    seq: int
    ts: int

    def next_audio_packet(self) -> RtpPacket:
        frame = self.tone.next_frame() if self.tone is not None else np.zeros(160, dtype=np.int16)
        packet = RtpPacket(
            payload_type=self.payload_type,
            sequence=self.seq & 0xFFFF,
            timestamp=self.ts & 0xFFFF_FFFF,
            ssrc=self.ssrc,
            payload=g711.encode_array(self.payload_type, frame).tobytes(),
        )
        self.seq += 1
        self.ts += 160
        return packet


def decoded(packets: Iterable[RtpPacket]) -> NDArray[np.int16]:
    """The G.711 audio of the packets, in sequence order (other payload types are left out)."""
    audio = sorted((p for p in packets if g711.is_g711(p.payload_type)), key=lambda p: p.sequence)
    if not audio:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([g711.decode(p.payload_type, p.payload) for p in audio])


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
