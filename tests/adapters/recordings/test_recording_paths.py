"""Recording paths stay under the recordings directory whatever the ids say; unfinished files are found."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from bridgeline.adapters.recordings import (
    InvalidRecordingId,
    RecordingFormat,
    RecordingWriters,
    WriterSettings,
    failure_reason,
    find_unfinished,
    recording_path,
)
from bridgeline.config import Settings

HOSTILE = ["../x", "..", ".", "a/b", "a\\b", "a\x00b", "", "x..y", ".hidden", "/abs", "a" * 129, "é"]


@pytest.mark.parametrize("bad", HOSTILE, ids=repr)
def test_hostile_recording_ids_never_name_a_path(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidRecordingId):
        recording_path(tmp_path, "acct", bad, RecordingFormat.WAV)
    with pytest.raises(InvalidRecordingId):
        recording_path(tmp_path, bad, "rec", RecordingFormat.WAV)
    writers = RecordingWriters(lambda *_: None)
    with pytest.raises(InvalidRecordingId):
        writers.open(bad, tmp_path / "x.wav", RecordingFormat.WAV, 8000, 1)
    writers.stop()


def test_a_recording_path_is_account_then_id(tmp_path: Path) -> None:
    path = recording_path(tmp_path, "MA123", "0b1c-2d_3.x", RecordingFormat.MP3)
    assert path == tmp_path / "MA123" / "0b1c-2d_3.x.mp3"


def test_a_link_planted_inside_the_root_cannot_lead_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "recordings", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "acct").symlink_to(outside)
    with pytest.raises(InvalidRecordingId, match="outside"):
        recording_path(root, "acct", "rec", RecordingFormat.WAV)


def test_the_writer_does_not_follow_a_link_at_the_file_it_creates(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_bytes(b"keep me")
    (tmp_path / "r.wav.part").symlink_to(target)
    calls: list[tuple[str, object, str | None]] = []
    writers = RecordingWriters(lambda *a: calls.append(a), WriterSettings())
    writers.open("r", tmp_path / "r.wav", RecordingFormat.WAV, 8000, 1)
    writers.stop()
    assert target.read_bytes() == b"keep me"
    assert calls[0][1] is None and str(calls[0][2]).startswith("write failed: ")


def test_find_unfinished_lists_only_recordings_left_open(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/one.wav.part", "two.mp3.part", "done.wav", "notes.txt.part", "a/three.mp3"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(p.name for p in find_unfinished(tmp_path)) == ["one.wav.part", "two.mp3.part"]
    assert find_unfinished(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ENOSPC, "disk full"),
        (errno.EDQUOT, "disk full"),
        (errno.EFBIG, "disk full"),
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "permission denied"),
        (errno.EIO, "disk error"),
        (errno.ENOTDIR, "write failed"),
    ],
)
def test_failure_reasons_name_the_kind_and_keep_the_os_words(code: int, kind: str) -> None:
    reason = failure_reason(OSError(code, "the OS's words", "/secret/path"))
    assert reason == f"{kind}: the OS's words"


def test_recording_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGELINE_RECORDING_QUEUE_FRAMES", "42")
    monkeypatch.setenv("BRIDGELINE_RECORDING_MP3_BITRATE_KBPS", "64")
    monkeypatch.setenv("BRIDGELINE_RECORDINGS_S3_SECRET_ACCESS_KEY", "hush")
    settings = Settings.from_env(data_dir=Path("/srv/bl"))
    assert settings.recordings_directory == Path("/srv/bl/recordings")
    assert WriterSettings.from_settings(settings) == WriterSettings(queue_frames=42, mp3_bitrate_kbps=64)
    assert "hush" not in repr(settings)


@pytest.mark.parametrize(
    "bad",
    [
        {"recording_queue_frames": 0},
        {"recording_header_interval_s": 0.0},
        {"recordings_retention_days": -1.0},
        {"recordings_s3_timeout_s": 0.0},
        {"recordings_s3_endpoint": "http://127.0.0.1:9"},
    ],
    ids=str,
)
def test_bad_recording_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        Settings(**bad)  # type: ignore[arg-type]
