"""The app's `RecordingFiles` port (app/ports.py) over `RecordingWriters` and a `RecordingStorage`.

The conference engine records 8 kHz mono (what every leg's audio is mixed down to). Files are written
at `<data-dir>/recordings/<account>/<recording id>.<wav|mp3>`; once the writer has closed one, the
storage keeps it (the local one leaves it there, S3 uploads it) and gives its location. The writer
answers on its thread; the storage's save runs on the event loop (`bind` is called there), and only
then is the recording manager told: a storage that fails makes the recording Failed with its reason,
and the local file stays.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from bridgeline.app.ports import FileFinished, RecordedFile

from .files import InvalidRecordingId, RecordingFileInfo, RecordingFormat, part_path, recording_path
from .recover import finalize_unfinished
from .storage import RecordingStorage, RecordingStorageError
from .wav import NotARecording, repair_wav
from .writers import RecordingWriters, WriterSettings

SAMPLE_RATE = 8000
CHANNELS = 1


class WriterFiles:
    """`open`/`write`/`close` for the recording manager; `recover` for what a crash left open."""

    def __init__(self, root: Path, storage: RecordingStorage, settings: WriterSettings | None = None) -> None:
        self.root = root
        self.storage = storage
        self._finished: FileFinished | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writers = RecordingWriters(self._on_finished, settings)

    def bind(self, finished: FileFinished) -> None:
        """`finished` is called on the loop that calls this."""
        self._finished = finished
        self._loop = asyncio.get_running_loop()

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

    async def size(self, location: str) -> int:
        return await self.storage.size(location)

    def read_range(self, location: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes start..end (included) of the stored file, in chunks."""
        return self.storage.open_range(location, start, end)

    async def delete(self, location: str) -> None:
        await self.storage.delete(location)

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
        try:
            return await self._stored(info)
        except RecordingStorageError as exc:
            raise ValueError(f"its file could not be stored: {exc}") from None

    async def _stored(self, info: RecordingFileInfo) -> RecordedFile:
        location = await self.storage.save(info)
        return RecordedFile(location, info.size_bytes, info.duration_ms)

    def _on_finished(self, recording_id: str, info: RecordingFileInfo | None, error: str | None) -> None:
        """On the writer thread: store the file on the loop, then report."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
            asyncio.run_coroutine_threadsafe(self._report(recording_id, info, error), loop)

    async def _report(self, recording_id: str, info: RecordingFileInfo | None, error: str | None) -> None:
        stored: RecordedFile | None = None
        if info is not None and error is None:
            try:
                stored = await self._stored(info)
            except RecordingStorageError as exc:
                error = f"storage failed: {exc}"
        if self._finished is not None:
            self._finished(recording_id, stored, error)
