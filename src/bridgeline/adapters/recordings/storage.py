"""Where finished recordings are kept: the RecordingStorage protocol, the data directory, retention.

A stored recording is named by its *location*: its path relative to the recordings root,
`<account>/<recording id>.<wav|mp3>`, the same for every storage (S3 puts its prefix in front).
Every method is a coroutine: file and network work runs off the event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Protocol

from .files import PART_SUFFIX, InvalidRecordingId, RecordingFileInfo, check_id, format_of

CHUNK_BYTES = 64 * 1024  # what open_range yields at a time


class RecordingStorageError(Exception):
    """A storage that failed; str(error) is the reason a Failed event carries."""


class RecordingNotFound(RecordingStorageError):
    pass


@dataclass(frozen=True, slots=True)
class StoredRecording:
    location: str
    size_bytes: int
    modified: datetime  # aware, UTC


class RecordingStorage(Protocol):
    # Every node of a cluster reads what any node stored (object storage), or only the node whose
    # disk holds it (the data directory): then the API carries a download to that node.
    shared: bool

    async def save(self, info: RecordingFileInfo) -> str:
        """Keep a finished file; its location. Raises RecordingStorageError, and the local file stays."""
        ...

    async def size(self, location: str) -> int: ...

    def open_range(self, location: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes start..end, both included (as ranges.ByteRange gives them), in chunks."""
        ...

    async def delete(self, location: str) -> None:
        """Remove a recording; one already gone is not an error."""
        ...

    def stored(self) -> AsyncIterator[StoredRecording]:
        """Every finished recording kept (files still being written are not)."""
        ...


def check_location(location: str) -> PurePosixPath:
    """`<account>/<id>.<wav|mp3>`, both parts safe names: anything else could reach outside the root."""
    parts = location.split("/")
    if len(parts) != 2:
        raise InvalidRecordingId("a recording location is <account>/<recording id>.<wav|mp3>")
    check_id(parts[0], "account id")
    check_id(parts[1], "recording file name")
    path = PurePosixPath(location)
    if format_of(path) is None or parts[1].endswith(PART_SUFFIX):
        raise InvalidRecordingId("a recording location ends in .wav or .mp3")
    return path


def location_of(root: Path, path: Path) -> str:
    """The location of a recording file under root (its path relative to root)."""
    relative = path.resolve().relative_to(root.resolve()).as_posix()
    check_location(relative)
    return relative


class LocalStorage:
    """Recordings stay where the writers put them, under `<data-dir>/recordings`."""

    shared = False  # on this node's disk

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, location: str) -> Path:
        path = self.root / check_location(location)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise InvalidRecordingId(f"{location} resolves outside the recordings directory")
        return path

    async def save(self, info: RecordingFileInfo) -> str:
        try:
            location = location_of(self.root, info.path)
        except ValueError as error:  # InvalidRecordingId is a ValueError too
            raise RecordingStorageError(f"not under the recordings directory: {error}") from None
        if not info.path.is_file():
            raise RecordingNotFound(f"recording file {location} is missing")
        return location

    async def size(self, location: str) -> int:
        path = self._path(location)
        try:
            return (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            raise RecordingNotFound(f"no recording at {location}") from None

    async def open_range(self, location: str, start: int, end: int) -> AsyncIterator[bytes]:
        path = self._path(location)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise RecordingNotFound(f"no recording at {location}") from None
        try:
            await asyncio.to_thread(file.seek, start)
            left = end - start + 1
            while left > 0:
                chunk = await asyncio.to_thread(file.read, min(CHUNK_BYTES, left))
                if not chunk:
                    return  # the file shrank (deleted and replaced): stop short, the client sees it
                left -= len(chunk)
                yield chunk
        finally:
            file.close()

    async def delete(self, location: str) -> None:
        await asyncio.to_thread(self._path(location).unlink, missing_ok=True)

    async def stored(self) -> AsyncIterator[StoredRecording]:
        for found in await asyncio.to_thread(self._scan):
            yield found

    def _scan(self) -> list[StoredRecording]:
        found: list[StoredRecording] = []
        if not self.root.is_dir():
            return found
        for account in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not account.is_dir(follow_symlinks=False):
                continue
            for entry in sorted(os.scandir(account.path), key=lambda e: e.name):
                if not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    location = check_location(f"{account.name}/{entry.name}").as_posix()
                except InvalidRecordingId:
                    continue  # not a finished recording (a .part being written, another file)
                stat = entry.stat(follow_symlinks=False)
                modified = datetime.fromtimestamp(stat.st_mtime, UTC)
                found.append(StoredRecording(location, stat.st_size, modified))
        return found


async def prune_recordings(storage: RecordingStorage, retention_days: float, now: datetime) -> list[str]:
    """Delete recordings older than retention_days (0 keeps everything); the locations deleted.

    The caller (app/retention.py through a port) deletes the matching rows with the returned list.
    """
    if retention_days <= 0:
        return []
    cutoff = now - timedelta(days=retention_days)
    old = [found.location async for found in storage.stored() if found.modified < cutoff]
    for location in old:
        await storage.delete(location)
    return old
