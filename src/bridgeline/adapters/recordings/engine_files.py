"""The app's `RecordingFiles` port (app/ports.py) over `RecordingWriters`, with files in the data directory.

The conference engine records 8 kHz mono (what every leg's audio is mixed down to); files live at
`<data-dir>/recordings/<account>/<recording id>.<wav|mp3>` and a location is that path relative to
the recordings directory, so a stored row never names a path outside it. The writers' answer comes on
their thread and is passed on as it is (the recording manager hops to the loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from bridgeline.app.ports import FileFinished, RecordedFile

from .files import InvalidRecordingId, RecordingFileInfo, RecordingFormat, part_path, recording_path
from .recover import finalize_unfinished
from .wav import NotARecording, repair_wav
from .writers import RecordingWriters, WriterSettings

CHUNK_BYTES = 64 * 1024
SAMPLE_RATE = 8000
CHANNELS = 1


class WriterFiles:
    """`open`/`write`/`close` for the recording manager; `recover` for what a crash left open."""

    def __init__(self, root: Path, settings: WriterSettings | None = None) -> None:
        self.root = root
        self._finished: FileFinished | None = None
        self._writers = RecordingWriters(self._on_finished, settings)

    def bind(self, finished: FileFinished) -> None:
        self._finished = finished

    def open(self, auth_id: str, recording_id: str, file_format: str) -> None:
        try:
            fmt = RecordingFormat(file_format)
            path = recording_path(self.root, auth_id, recording_id, fmt)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writers.open(recording_id, path, fmt, SAMPLE_RATE, CHANNELS)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ValueError(f"cannot start the recording file: {exc}") from None

    def write(self, recording_id: str, pcm: bytes) -> None:
        self._writers.write(recording_id, pcm)

    def close(self, recording_id: str) -> None:
        self._writers.close(recording_id)

    def stop(self) -> None:
        """Server shutdown: flush and close every open file (their answers follow, on this thread)."""
        self._writers.stop()

    def path_of(self, location: str) -> Path:
        """The file at a stored location; ValueError for one that would leave the recordings directory."""
        path = (self.root / location).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError("a recording location outside the recordings directory")
        return path

    async def size(self, location: str) -> int:
        return (await asyncio.to_thread(self.path_of(location).stat)).st_size

    async def read_range(self, location: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes start..end (included) of the file, in chunks read off the loop."""
        path = self.path_of(location)
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            left = end - start + 1
            while left > 0:
                chunk = await asyncio.to_thread(handle.read, min(CHUNK_BYTES, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def delete(self, location: str) -> None:
        await asyncio.to_thread(self.path_of(location).unlink, True)

    async def recover(self, auth_id: str, recording_id: str, file_format: str) -> RecordedFile:
        try:
            path = recording_path(self.root, auth_id, recording_id, RecordingFormat(file_format))
        except (InvalidRecordingId, ValueError) as exc:
            raise ValueError(str(exc)) from None
        part = part_path(path)
        try:
            if part.exists():
                info = await asyncio.to_thread(finalize_unfinished, part)
            elif path.exists() and path.suffix == ".wav":  # closed, but the crash came before its row
                info = await asyncio.to_thread(repair_wav, path)
            elif path.exists():
                from .mp3 import repair_mp3

                info = await asyncio.to_thread(repair_mp3, path)
            else:
                raise ValueError("its file is missing")
        except NotARecording as exc:
            raise ValueError(f"its file holds no audio ({exc})") from None
        except OSError as exc:
            raise ValueError(f"its file could not be repaired: {exc.strerror or exc}") from None
        return self._recorded(info)

    def _recorded(self, info: RecordingFileInfo) -> RecordedFile:
        return RecordedFile(str(info.path.relative_to(self.root)), info.size_bytes, info.duration_ms)

    def _on_finished(self, recording_id: str, info: RecordingFileInfo | None, error: str | None) -> None:
        if self._finished is not None:
            self._finished(recording_id, None if info is None else self._recorded(info), error)
