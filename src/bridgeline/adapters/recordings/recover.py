"""Startup recovery: the files a crash left open, made playable and given their final names."""

from __future__ import annotations

import os
from pathlib import Path

from .files import PART_SUFFIX, RecordingFileInfo, RecordingFormat, format_of
from .mp3 import repair_mp3
from .wav import NotARecording, repair_wav


def finalize_unfinished(part: Path) -> RecordingFileInfo:
    """Repair one `<name>.<wav|mp3>.part` left by a crash and rename it to `<name>.<wav|mp3>`.

    Its recording id is the final name's stem (`info.path.stem`). Raises NotARecording when the file
    holds nothing playable (then it is left where it is), OSError when the disk refuses.
    """
    fmt = format_of(part)
    if fmt is None or not part.name.endswith(PART_SUFFIX):
        raise NotARecording(f"{part.name} is not an unfinished recording")
    info = repair_wav(part) if fmt is RecordingFormat.WAV else repair_mp3(part)
    final = part.with_name(part.name.removesuffix(PART_SUFFIX))
    os.replace(part, final)
    return RecordingFileInfo(
        path=final,
        format=info.format,
        size_bytes=info.size_bytes,
        duration_ms=info.duration_ms,
        sample_rate=info.sample_rate,
        channels=info.channels,
    )
