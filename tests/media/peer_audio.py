"""A test phone's audio, shared by the runtime's tests (media_sim.py) and the engine shell's
(tests/media_engine/media_peer.py, which finds this folder through its conftest): what it sends (a
G.711 tone, or a G.722 one at 16 kHz, as consecutive RTP packets) and what it heard, as numbers
(decoded in sequence order, the spectrum, its strongest tones, the level at one frequency, the RMS;
pass rate=16000 for what a G.722 phone heard)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from bridgeline.media import g711, g722, opus
from bridgeline.media.player import ToneSource
from bridgeline.media.rtp import RtpPacket

RATE = 8000
WIDE_RATE = 16000
OPUS_PT = 111  # the dynamic number the test phones give Opus (the runtime knows it as opus.CODEC_ID)


class WideTone:
    """A continuous sine at 16 kHz, 320 samples per 20 ms frame (what a G.722 phone's microphone
    would give; ToneSource is the engine's own 8 kHz one)."""

    finished = False

    def __init__(self, freq_hz: float, amplitude: float = 0.25) -> None:
        self._step = 2 * math.pi * freq_hz / WIDE_RATE
        self._phase = 0.0
        self._scale = 32767.0 * amplitude

    def next_frame(self) -> NDArray[np.int16]:
        angles = self._phase + self._step * np.arange(g722.FRAME_SAMPLES)
        self._phase = math.fmod(self._phase + self._step * g722.FRAME_SAMPLES, 2 * math.pi)
        return np.rint(np.sin(angles) * self._scale).astype(np.int16)


class ToneSender:
    """Mixin for a test phone: `tone` (None: silence) as consecutive RTP packets of `payload_type`,
    from `ssrc`, `seq` and `ts`, which the phone sets and a test may change (a NAT rebinding, a
    second stream)."""

    tone: ToneSource | WideTone | None
    payload_type: int
    ssrc: int
    seq: int
    ts: int
    opus_ms: int = 20  # an Opus phone's packet time (10, 20, 40, 60 ms)
    opus_fec: bool = False  # an Opus phone adding in-band FEC (asked to by our useinbandfec=1)

    def next_audio_packets(self) -> list[RtpPacket]:
        """What the phone sends in one 20 ms tick: one packet, except an Opus phone whose packet
        time is not 20 ms (two 10 ms packets; a 60 ms one every third tick)."""
        if self.payload_type != OPUS_PT or self.opus_ms == 20:
            return [self.next_audio_packet()]
        pcm = self.__dict__.setdefault("_opus_pcm", [])
        pcm.append(self.tone.next_frame() if self.tone is not None else np.zeros(320, dtype=np.int16))
        samples = np.concatenate(pcm)
        size = self.opus_ms * 16
        packets = []
        while samples.size >= size:
            packets.append(self._opus_packet(samples[:size]))
            samples = samples[size:]
        pcm[:] = [samples] if samples.size else []
        return packets

    def _opus_packet(self, samples: NDArray[np.int16]) -> RtpPacket:
        encoder = self.__dict__.setdefault("_opus", opus.OpusStream(opus.OpusParams(fec=self.opus_fec)))
        packet = RtpPacket(
            OPUS_PT, self.seq & 0xFFFF, self.ts & 0xFFFF_FFFF, self.ssrc, encoder.encode(samples)
        )
        self.seq += 1
        self.ts += samples.size * opus.TS_PER_SAMPLE  # the 48 kHz RTP clock
        return packet

    def next_audio_packet(self) -> RtpPacket:
        if self.payload_type == OPUS_PT:
            return self._opus_packet(
                self.tone.next_frame() if self.tone is not None else np.zeros(320, dtype=np.int16)
            )
        if self.payload_type == g722.PAYLOAD_TYPE:
            frame = self.tone.next_frame() if self.tone is not None else np.zeros(320, dtype=np.int16)
            encoder = self.__dict__.setdefault("_g722", g722.G722Stream())  # one stream: stateful
            payload = encoder.encode(frame)
        else:
            frame = self.tone.next_frame() if self.tone is not None else np.zeros(160, dtype=np.int16)
            payload = g711.encode_array(self.payload_type, frame).tobytes()
        packet = RtpPacket(
            payload_type=self.payload_type,
            sequence=self.seq & 0xFFFF,
            timestamp=self.ts & 0xFFFF_FFFF,
            ssrc=self.ssrc,
            payload=payload,
        )
        self.seq += 1
        self.ts += 160
        return packet


def decoded(packets: Iterable[RtpPacket]) -> NDArray[np.int16]:
    """The G.711 audio of the packets, in sequence order (other payload types are left out); for
    G.722 packets (a G.722 phone receives no G.711), their 16 kHz audio, decoded by one decoder."""
    ordered = sorted(packets, key=lambda p: p.sequence)
    if any(p.payload_type == OPUS_PT for p in ordered):  # an Opus phone: 16 kHz, one decoder
        decoder = opus.OpusStream()
        return np.concatenate([decoder.decode(p.payload) for p in ordered if p.payload_type == OPUS_PT])
    wide = [p for p in ordered if p.payload_type == g722.PAYLOAD_TYPE]
    if wide:
        decoder = g722.G722Stream()
        return np.concatenate([decoder.decode(p.payload) for p in wide])
    audio = [p for p in ordered if g711.is_g711(p.payload_type)]
    if not audio:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([g711.decode(p.payload_type, p.payload) for p in audio])


def spectrum(pcm: NDArray[np.int16], rate: int = RATE) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    x = pcm.astype(np.float64)
    mags = np.abs(np.fft.rfft(x * np.hanning(x.size))) / max(x.size, 1)
    return np.fft.rfftfreq(x.size, 1 / rate).astype(np.float64), mags


def dominant_freq(pcm: NDArray[np.int16], rate: int = RATE) -> float:
    freqs, mags = spectrum(pcm, rate)
    return float(freqs[int(np.argmax(mags))])


def peak_freqs(pcm: NDArray[np.int16], count: int, min_gap_hz: float = 60.0, rate: int = RATE) -> list[float]:
    """The `count` strongest spectral peaks at least min_gap_hz apart, in ascending frequency."""
    freqs, mags = spectrum(pcm, rate)
    mags = mags.copy()
    peaks: list[float] = []
    for _ in range(count):
        i = int(np.argmax(mags))
        peaks.append(float(freqs[i]))
        mags[np.abs(freqs - freqs[i]) < min_gap_hz] = 0
    return sorted(peaks)


def level_at(pcm: NDArray[np.int16], freq: float, width_hz: float = 20.0, rate: int = RATE) -> float:
    """Spectral magnitude around `freq` relative to the strongest peak (0..1)."""
    freqs, mags = spectrum(pcm, rate)
    top = float(mags.max()) or 1.0
    return float(mags[np.abs(freqs - freq) <= width_hz].max()) / top


def rms(pcm: NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0
