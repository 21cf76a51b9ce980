"""LocalStorage and S3Storage (against moto's S3 server on loopback), and retention over either."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from recordkit import S3_KEY, S3_SECRET, Finished, frames, tone

from bridgeline.adapters.recordings import (
    RecordingFileInfo,
    RecordingFormat,
    RecordingWriters,
    recording_path,
    storage_from_settings,
)
from bridgeline.adapters.recordings.s3 import S3Settings, S3Storage
from bridgeline.adapters.recordings.storage import (
    InvalidRecordingId,
    LocalStorage,
    RecordingNotFound,
    RecordingStorage,
    RecordingStorageError,
    prune_recordings,
)
from bridgeline.config import Settings


def _recorded(root: Path, account: str, rid: str, seconds: float = 1.0) -> RecordingFileInfo:
    finished = Finished()
    writers = RecordingWriters(finished)
    path = recording_path(root, account, rid, RecordingFormat.WAV)
    writers.open(rid, path, RecordingFormat.WAV, 8000, 1)
    for frame in frames(tone(440, seconds)):
        writers.write(rid, frame)
    writers.close(rid)
    info, error = finished.wait(rid)
    writers.stop()
    assert info is not None, error
    return info


async def _read(storage: RecordingStorage, location: str, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in storage.open_range(location, start, end)])


def _s3(endpoint: str, bucket: str, root: Path, prefix: str = "bl/") -> S3Storage:
    settings = S3Settings(endpoint, bucket, prefix=prefix, access_key_id=S3_KEY, secret_access_key=S3_SECRET)
    return S3Storage(settings, root)


async def test_local_storage_serves_ranges_of_the_files_in_place(tmp_path: Path) -> None:
    info = _recorded(tmp_path, "MA1", "r1", seconds=10)  # 160 kB: several chunks
    content = info.path.read_bytes()
    storage = LocalStorage(tmp_path)
    location = await storage.save(info)
    assert location == "MA1/r1.wav" and info.path.exists()
    assert await storage.size(location) == len(content)
    assert await _read(storage, location, 0, len(content) - 1) == content
    assert await _read(storage, location, 100_000, 150_123) == content[100_000:150_124]
    assert [s.location async for s in storage.stored()] == [location]
    await storage.delete(location)
    await storage.delete(location)  # already gone: fine
    assert not info.path.exists()
    with pytest.raises(RecordingNotFound):
        await storage.size(location)


@pytest.mark.parametrize(
    "location",
    ["../x/y.wav", "a/../../y.wav", "/etc/passwd", "a/b/c.wav", "a\x00/b.wav", "a/b.txt", "a/b.wav.part"],
)
async def test_hostile_locations_never_reach_a_file(tmp_path: Path, location: str) -> None:
    storage = LocalStorage(tmp_path / "recordings")
    with pytest.raises(InvalidRecordingId):
        await storage.size(location)
    with pytest.raises(InvalidRecordingId):
        await storage.delete(location)


async def test_a_file_outside_the_root_is_not_saved(tmp_path: Path) -> None:
    info = _recorded(tmp_path / "other", "MA1", "r1")
    with pytest.raises(RecordingStorageError, match="not under the recordings directory"):
        await LocalStorage(tmp_path / "recordings").save(info)


async def test_retention_deletes_only_recordings_older_than_the_setting(tmp_path: Path) -> None:
    old, new = _recorded(tmp_path, "MA1", "old"), _recorded(tmp_path, "MA2", "new")
    (tmp_path / "MA1" / "open.wav.part").write_bytes(b"")  # still being written: never pruned
    (tmp_path / "MA1" / "notes.txt").write_bytes(b"")  # not a recording: never pruned
    now = datetime(2026, 6, 1, tzinfo=UTC)
    ten_days_ago = (now - timedelta(days=10)).timestamp()
    os.utime(old.path, (ten_days_ago, ten_days_ago))
    os.utime(new.path, (now.timestamp(), now.timestamp()))
    storage = LocalStorage(tmp_path)
    assert await prune_recordings(storage, 0, now) == []  # 0 keeps everything
    assert await prune_recordings(storage, 11, now) == []
    assert await prune_recordings(storage, 9, now) == ["MA1/old.wav"]
    assert not old.path.exists() and new.path.exists()
    assert (tmp_path / "MA1" / "open.wav.part").exists() and (tmp_path / "MA1" / "notes.txt").exists()


async def test_s3_storage_uploads_serves_ranges_lists_and_deletes(
    tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    info = _recorded(tmp_path, "MA1", "r1", seconds=10)
    content = info.path.read_bytes()
    storage = _s3(moto_endpoint, s3_bucket, tmp_path)
    location = await storage.save(info)
    assert location == "MA1/r1.wav"
    assert not info.path.exists()  # stored, so the local copy is gone
    assert await storage.size(location) == len(content)
    assert await _read(storage, location, 0, 43) == content[:44]
    assert await _read(storage, location, 70_000, len(content) - 1) == content[70_000:]
    assert await _read(storage, location, 0, len(content) - 1) == content
    listed = [s async for s in storage.stored()]
    assert [(s.location, s.size_bytes) for s in listed] == [(location, len(content))]
    # without the prefix, the key bl/MA1/r1.wav is not <account>/<file>: not listed as a recording
    bare = _s3(moto_endpoint, s3_bucket, tmp_path, prefix="")
    assert [s.location async for s in bare.stored()] == []
    assert await prune_recordings(storage, 1, datetime.now(UTC) + timedelta(days=2)) == [location]
    with pytest.raises(RecordingNotFound):
        await storage.size(location)
    with pytest.raises(RecordingNotFound):
        await _read(storage, location, 0, 10)
    await storage.delete(location)  # already gone: fine


async def test_an_unreachable_object_store_is_a_clear_error_and_the_file_is_kept(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    info = _recorded(tmp_path, "MA1", "kept")
    storage = S3Storage(S3Settings(f"http://127.0.0.1:{port}", "bucket", timeout_s=3), tmp_path)
    with pytest.raises(RecordingStorageError, match=r"^object store unreachable: ") as failure:
        await storage.save(info)
    assert info.path.read_bytes()[:4] == b"RIFF"
    with pytest.raises(RecordingStorageError, match=r"^object store unreachable: "):
        await storage.size("MA1/kept.wav")
    assert "Traceback" not in str(failure.value)


async def test_a_missing_bucket_is_an_object_store_error(tmp_path: Path, moto_endpoint: str) -> None:
    info = _recorded(tmp_path, "MA1", "nobucket")
    with pytest.raises(RecordingStorageError, match=r"^object store error: "):
        await _s3(moto_endpoint, "no-such-bucket", tmp_path).save(info)
    assert info.path.exists()


def test_s3_settings_come_from_the_server_settings() -> None:
    assert S3Settings.from_settings(Settings()) is None
    settings = Settings(
        recordings_s3_endpoint="http://127.0.0.1:9000",
        recordings_s3_bucket="b",
        recordings_s3_prefix="p/",
        recordings_s3_secret_access_key="hush",
    )
    s3 = S3Settings.from_settings(settings)
    assert s3 is not None and (s3.endpoint, s3.bucket, s3.prefix, s3.secret_access_key) == (
        "http://127.0.0.1:9000",
        "b",
        "p/",
        "hush",
    )
    assert "hush" not in repr(s3)


def test_the_settings_choose_the_storage(tmp_path: Path) -> None:
    local = storage_from_settings(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalStorage) and local.root == tmp_path / "recordings"
    s3 = storage_from_settings(
        Settings(data_dir=tmp_path, recordings_s3_endpoint="http://127.0.0.1:9", recordings_s3_bucket="b")
    )
    assert isinstance(s3, S3Storage) and s3.root == tmp_path / "recordings" and s3.settings.bucket == "b"
