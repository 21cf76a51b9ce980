"""MP3 recordings: LAME (lameenc) on the writer thread, and the frame scan that repairs a crashed file.

An MP3 stream is a sequence of self-framed chunks, so a file cut by a crash is playable up to its last
whole frame; `repair_mp3` cuts a torn last frame off and measures the duration by counting frames.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import lameenc

from .files import RecordingFileInfo, RecordingFormat
from .wav import NotARecording

# Layer III bitrates (kbit/s) by index: MPEG-1, then MPEG-2 and 2.5 (which share a table).
_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
# Sample rates by the header's version bits (0: MPEG-2.5, 2: MPEG-2, 3: MPEG-1).
_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}
# Bitrates LAME accepts for each of our sample rates' MPEG version (what a setting may say).
ALLOWED_BITRATES = frozenset(_BITRATES_V2[1:]) | frozenset(_BITRATES_V1[1:])


def new_encoder(sample_rate: int, channels: int, bitrate_kbps: int) -> lameenc.Encoder:
    encoder = lameenc.Encoder()
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_channels(channels)
    encoder.set_bit_rate(bitrate_kbps)
    encoder.set_quality(5)  # LAME's "good" speed/quality middle; 2 costs ~2x the CPU for speech
    return encoder


@dataclass(frozen=True, slots=True)
class Mp3Scan:
    end: int  # offset just after the last whole frame
    frames: int
    sample_rate: int
    channels: int
    samples_per_frame: int

    @property
    def duration_ms(self) -> int:
        if not self.sample_rate:
            return 0
        return self.frames * self.samples_per_frame * 1000 // self.sample_rate


def _frame(data: bytes, at: int) -> tuple[int, int, int, int] | None:
    """(length, sample rate, channels, samples) of the Layer III frame header at `at`, or None."""
    if at + 4 > len(data):
        return None
    b1, b2, b3 = data[at + 1], data[at + 2], data[at + 3]
    if data[at] != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    rate = _RATES[version][rate_index]
    if version == 3:
        kbps, samples, factor = _BITRATES_V1[bitrate_index], 1152, 144
    else:
        kbps, samples, factor = _BITRATES_V2[bitrate_index], 576, 72
    length = factor * kbps * 1000 // rate + padding
    channels = 1 if b3 >> 6 == 3 else 2
    return length, rate, channels, samples


def scan(data: bytes) -> Mp3Scan:
    """Whole frames from the start of data (after an ID3v2 tag, if any), up to the first torn one."""
    at = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = data[6] << 21 | data[7] << 14 | data[8] << 7 | data[9]
        at = 10 + size
    frames = rate = channels = samples = 0
    while True:
        header = _frame(data, at)
        if header is None or at + header[0] > len(data):
            break
        length, rate, channels, samples = header
        at += length
        frames += 1
    return Mp3Scan(
        end=at if frames else 0, frames=frames, sample_rate=rate, channels=channels, samples_per_frame=samples
    )


def repair_mp3(path: Path) -> RecordingFileInfo:
    """Cut an MP3 left by a crash after its last whole frame; the duration counts its frames."""
    with path.open("r+b") as file:
        found = scan(file.read())
        if found.frames == 0 and file.tell() > 0:
            raise NotARecording("no MPEG Layer III frame")
        file.truncate(found.end)
        os.fsync(file.fileno())
    return RecordingFileInfo(
        path=path,
        format=RecordingFormat.MP3,
        size_bytes=found.end,
        duration_ms=found.duration_ms,
        sample_rate=found.sample_rate,
        channels=found.channels,
    )
