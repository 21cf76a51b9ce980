"""What a peer heard: the RTP that reached its media ports in a capture, decoded (G.711, with tables
of our own rather than the server's codec; G.722 by libg722 itself and Opus by libopus through
opuslib-next's own decoder class, both to 8 kHz, not through the server's glue) and measured by its
spectrum.

Every sound source in these tests is a pure tone of a distinct frequency (each phone says its own,
and every kind of music is set to a tone by the node's settings), so "who hears whom" is the set of
frequencies that carry the energy of a stretch of received audio.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

import G722
import numpy as np
import opuslib_next
from numpy.typing import NDArray
from pcapkit import Datagram

RATE = 8000
PCMU, PCMA, G722_PT = 0, 8, 9
OPUS_PT = 111  # the number Bridgeline's offers give Opus (sip/offer_answer.py), which answers keep
BAND_HZ = 25.0  # a tone's energy is counted within +/- this of its frequency
HEARD_SHARE = 0.10  # a source is heard when its band holds at least this share of the energy
ABSENT_SHARE = 0.02  # ... and not heard when it holds at most this share
SILENCE_RMS = 60.0  # a stretch quieter than this (int16 RMS) is silence


def _ulaw_table() -> NDArray[np.int16]:
    table = np.zeros(256, np.int16)
    for code in range(256):
        u = ~code & 0xFF
        exponent, mantissa = (u >> 4) & 7, u & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
        table[code] = -magnitude if u & 0x80 else magnitude
    return table


def _alaw_table() -> NDArray[np.int16]:
    table = np.zeros(256, np.int16)
    for code in range(256):
        a = code ^ 0x55
        exponent, mantissa = (a >> 4) & 7, a & 0x0F
        magnitude = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
        table[code] = magnitude if a & 0x80 else -magnitude
    return table


DECODE = {PCMU: _ulaw_table(), PCMA: _alaw_table()}


@dataclass(frozen=True, slots=True)
class RtpFrame:
    at: float
    sport: int
    dport: int
    payload_type: int
    sequence: int
    ssrc: int
    payload: bytes
    timestamp: int = 0


def rtp_frames(
    datagrams: Iterable[Datagram], to_ports: set[int], from_ports: Iterable[int]
) -> list[RtpFrame]:
    """Audio RTP packets sent from `from_ports` (the server's RTP range) to the peer's `to_ports`."""
    sources = set(from_ports)
    frames = []
    for d in datagrams:
        if d.dport not in to_ports or d.sport not in sources or len(d.payload) < 12:
            continue
        b0, b1, sequence, timestamp, ssrc = struct.unpack_from("!BBHII", d.payload)
        if b0 >> 6 != 2:
            continue
        offset = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10 and len(d.payload) >= offset + 4:
            offset += 4 + 4 * struct.unpack_from("!H", d.payload, offset + 2)[0]
        payload = d.payload[offset:]
        if b0 & 0x20 and payload:
            payload = payload[: -payload[-1]]
        frames.append(RtpFrame(d.at, d.sport, d.dport, b1 & 0x7F, sequence, ssrc, payload, timestamp))
    return frames


def audio(
    frames: Iterable[RtpFrame], start: float, end: float, *, opus_pt: int = OPUS_PT
) -> NDArray[np.float64]:
    """The decoded samples of the G.711, G.722 or Opus packets captured in [start, end), in arrival
    order (G.722 decoded at 8 kHz, libg722's narrowband output mode, and Opus by a decoder at 8 kHz,
    so that every stretch has one rate; `opus_pt`: the number the peer's SDP gave Opus)."""
    wideband = G722.G722(8000, 64000, use_numpy=False)  # one stream's decoder state
    opus = opuslib_next.Decoder(8000, 1)
    chunks = []
    for f in frames:
        if not start <= f.at < end:
            continue
        if f.payload_type in DECODE:
            chunks.append(DECODE[f.payload_type][np.frombuffer(f.payload, np.uint8)])
        elif f.payload_type == G722_PT:
            chunks.append(np.frombuffer(wideband.decode(f.payload), np.int16))
        elif f.payload_type == opus_pt:
            chunks.append(np.frombuffer(opus.decode(f.payload, 960), np.int16))  # up to 120 ms
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)


class Heard:
    """The spectrum of one stretch of received audio."""

    def __init__(self, samples: NDArray[np.float64], label: str = "") -> None:
        self.samples = samples
        self.label = label
        self.seconds = samples.size / RATE
        self.rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
        if samples.size >= 64:
            windowed = (samples - samples.mean()) * np.hanning(samples.size)
            self.power = np.abs(np.fft.rfft(windowed)) ** 2
            self.freqs = np.fft.rfftfreq(samples.size, 1 / RATE)
        else:
            self.power = np.zeros(1)
            self.freqs = np.zeros(1)
        self.total = float(self.power[1:].sum()) or 1.0

    def share(self, freq: float) -> float:
        band = (self.freqs >= freq - BAND_HZ) & (self.freqs <= freq + BAND_HZ)
        return float(self.power[band].sum()) / self.total

    def peaks(self, count: int = 4) -> list[tuple[int, float]]:
        """The strongest frequencies (Hz, share of the energy), merged within the band width."""
        found: list[tuple[int, float]] = []
        order = np.argsort(self.power[1:])[::-1] + 1
        for index in order[:400]:
            freq = float(self.freqs[index])
            if all(abs(freq - f) > 2 * BAND_HZ for f, _ in found):
                found.append((round(freq), round(self.share(freq), 3)))
            if len(found) == count:
                break
        return found

    def describe(self) -> str:
        return f"{self.label}: {self.seconds:.2f} s, rms {self.rms:.0f}, peaks (Hz, share) {self.peaks()}"

    @property
    def silent(self) -> bool:
        return self.rms < SILENCE_RMS


def assert_hears(
    heard: Heard, expected: Iterable[float], absent: Iterable[float], min_seconds: float = 0.5
) -> None:
    """The stretch holds every expected tone, none of the absent ones, and little else."""
    expected, absent = list(expected), list(absent)
    assert heard.seconds >= min_seconds, f"too little audio captured: {heard.describe()}"
    assert not heard.silent, f"silence where {expected} Hz was expected: {heard.describe()}"
    for freq in expected:
        assert heard.share(freq) >= HEARD_SHARE, f"{freq} Hz not heard: {heard.describe()}"
    for freq in absent:
        assert heard.share(freq) <= ABSENT_SHARE, f"{freq} Hz heard but should not be: {heard.describe()}"
    covered = sum(heard.share(f) for f in expected)
    assert covered >= 0.8, f"unexpected sound besides {expected} Hz: {heard.describe()}"


def assert_silent(heard: Heard, min_seconds: float = 0.5) -> None:
    assert heard.seconds >= min_seconds, f"too little audio captured: {heard.describe()}"
    assert heard.silent, f"expected silence: {heard.describe()}"
