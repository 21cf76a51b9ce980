"""16-bit PCM WAV files that survive a crash: the header's sizes are rewritten as the file grows.

Written with struct rather than the stdlib `wave` module or soundfile: `wave` only fixes its header on
close (a killed process leaves sizes of 0) and soundfile brings libsndfile for a 44-byte header. The
header here is the canonical one (RIFF, `fmt ` of 16 bytes, `data` at offset 44), so its two size
fields are at fixed offsets and a crash costs at most the audio written since the last rewrite.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from .files import RecordingFileInfo, RecordingFormat

HEADER_BYTES = 44
SAMPLE_BYTES = 2
# The RIFF size field is 32 bits: a data chunk may hold at most this many bytes.
MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_BYTES - 8)


class NotARecording(ValueError):
    """A file that is not a recording this package wrote (so it cannot be repaired)."""


def header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    block_align = channels * SAMPLE_BYTES
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        HEADER_BYTES - 8 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        channels,
        sample_rate,
        sample_rate * block_align,
        block_align,
        SAMPLE_BYTES * 8,
        b"data",
        data_bytes,
    )


def write_header(fd: int, sample_rate: int, channels: int, data_bytes: int) -> None:
    """Rewrite the header with these sizes in one pwrite (the file's offset does not move)."""
    os.pwrite(fd, header(sample_rate, channels, data_bytes), 0)


def read_format(head: bytes) -> tuple[int, int]:
    """(sample rate, channels) of a header this package wrote, or NotARecording."""
    if len(head) < HEADER_BYTES:
        raise NotARecording("shorter than a WAV header")
    riff, _, wave, fmt, fmt_size, codec, channels, rate, _, align, bits, data, _ = struct.unpack(
        "<4sI4s4sIHHIIHH4sI", head[:HEADER_BYTES]
    )
    if (riff, wave, fmt, data) != (b"RIFF", b"WAVE", b"fmt ", b"data") or fmt_size != 16:
        raise NotARecording("not a canonical RIFF/WAVE header")
    if codec != 1 or bits != 16 or channels < 1 or rate < 1 or align != channels * SAMPLE_BYTES:
        raise NotARecording("not 16-bit PCM")
    return rate, channels


def duration_ms(data_bytes: int, sample_rate: int, channels: int) -> int:
    return data_bytes // (SAMPLE_BYTES * channels) * 1000 // sample_rate


def repair_wav(path: Path) -> RecordingFileInfo:
    """Make a WAV left by a crash playable: sizes from the file's length, a torn last sample dropped."""
    with path.open("r+b") as file:
        rate, channels = read_format(file.read(HEADER_BYTES))
        length = file.seek(0, os.SEEK_END)
        block = SAMPLE_BYTES * channels
        data_bytes = min(length - HEADER_BYTES, MAX_DATA_BYTES)
        data_bytes -= data_bytes % block
        if HEADER_BYTES + data_bytes != length:
            file.truncate(HEADER_BYTES + data_bytes)
        write_header(file.fileno(), rate, channels, data_bytes)
        os.fsync(file.fileno())
    return RecordingFileInfo(
        path=path,
        format=RecordingFormat.WAV,
        size_bytes=HEADER_BYTES + data_bytes,
        duration_ms=duration_ms(data_bytes, rate, channels),
        sample_rate=rate,
        channels=channels,
    )
