"""A process that records a tone until it is killed (or 60 s pass): the crash tests kill it with SIGKILL.

Usage: python recording_child.py DIR wav|mp3 [FSIZE_LIMIT_BYTES]
With a size limit it instead records two recordings, a long one past the limit and a short one under
it, closes both and prints each on_finished as a JSON line (the full-disk test).
"""

from __future__ import annotations

import json
import resource
import signal
import sys
import time
from pathlib import Path

from recordkit import frames, tone

from bridgeline.adapters.recordings import (
    RecordingFileInfo,
    RecordingFormat,
    RecordingWriters,
    WriterSettings,
)


def crash_run(directory: Path, fmt: RecordingFormat) -> None:
    writers = RecordingWriters(lambda *_: None, WriterSettings(header_interval_s=0.2))
    writers.open("crash", directory / f"crash.{fmt.value}", fmt, 8000, 1)
    second = frames(tone(440, 1.0))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for frame in second:
            writers.write("crash", frame)
            time.sleep(0.002)  # about ten times real time: the file grows while the parent watches


def full_disk_run(directory: Path, limit: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit write() fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    results: list[dict[str, object]] = []

    def on_finished(rid: str, info: RecordingFileInfo | None, error: str | None) -> None:
        results.append({"id": rid, "error": error, "duration_ms": info.duration_ms if info else None})

    writers = RecordingWriters(on_finished, WriterSettings(header_interval_s=0.2))
    writers.open("big", directory / "big.wav", RecordingFormat.WAV, 8000, 1)
    writers.open("small", directory / "small.wav", RecordingFormat.WAV, 8000, 1)
    big, small = frames(tone(440, 10.0)), frames(tone(880, 1.0))
    for i, frame in enumerate(big):
        writers.write("big", frame)
        if i < len(small):
            writers.write("small", small[i])
    writers.close("big")
    writers.close("small")
    writers.stop()
    for result in results:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 3:
        full_disk_run(Path(sys.argv[1]), int(sys.argv[3]))
    else:
        crash_run(Path(sys.argv[1]), RecordingFormat(sys.argv[2]))
