"""What a finished recording file is, where recordings live, and how a failed write reads."""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from pathlib import Path, PurePath

from bridgeline.core.recording import RecordFormat

# A file being written carries this suffix; it is renamed away when the recording is closed, so
# whatever still carries it after a crash was left open (find_unfinished).
PART_SUFFIX = ".part"

# Ids name files: letters, digits, '.', '_' and '-', starting with a letter or digit (so never '.'
# or '..'), at most 128 characters. '/', '\\', NUL and '..' can never reach a path.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


# The engine's own enum (a node's record_file_format): one list of formats, not two to keep in step.
RecordingFormat = RecordFormat


@dataclass(frozen=True, slots=True)
class RecordingFileInfo:
    path: Path
    format: RecordingFormat
    size_bytes: int
    duration_ms: int
    sample_rate: int
    channels: int


class InvalidRecordingId(ValueError):
    """An account or recording id that could name a file outside the recordings directory."""


def check_id(value: str, what: str = "recording id") -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value) or ".." in value:
        raise InvalidRecordingId(
            f"{what} must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit,"
            " without '..'"
        )
    return value


def recordings_root(data_dir: Path) -> Path:
    return data_dir / "recordings"


def recording_path(root: Path, account_id: str, recording_id: str, fmt: RecordingFormat) -> Path:
    """`<root>/<account>/<recording id>.<ext>`; ids are checked, and the result stays under root."""
    check_id(account_id, "account id")
    check_id(recording_id)
    path = root / account_id / f"{recording_id}.{RecordingFormat(fmt).value}"
    # The ids cannot climb, but a link planted inside root could: refuse a path that resolves out.
    if not path.resolve().is_relative_to(root.resolve()):
        raise InvalidRecordingId(f"{path} resolves outside {root}")
    return path


def part_path(path: Path) -> Path:
    return path.with_name(path.name + PART_SUFFIX)


def find_unfinished(root: Path) -> list[Path]:
    """Files a crash left open under root (`<name>.<wav|mp3>.part`), oldest first.

    Each is finished by `finalize_unfinished` (recover.py), which returns its final path.
    """
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.rglob("*" + PART_SUFFIX)
        if p.is_file() and not p.is_symlink() and format_of(p) is not None
    ]
    return sorted(found, key=lambda p: (p.stat().st_mtime, str(p)))


def format_of(path: PurePath) -> RecordingFormat | None:
    """The format named by a file's extension (`.wav`, `.mp3`, or either followed by `.part`)."""
    name = path.name.removesuffix(PART_SUFFIX)
    for fmt in RecordingFormat:
        if name.endswith("." + fmt.value):
            return fmt
    return None


# Errors a disk gives that mean "no room" (a full file system, a quota, a file size limit).
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_ALLOWED = {errno.EACCES, errno.EPERM, errno.EROFS}


def failure_reason(error: OSError) -> str:
    """The reason a recording failed, as events and callbacks carry it: a kind, then the OS's words."""
    detail = error.strerror or str(error)
    if error.errno in _NO_ROOM:
        kind = "disk full"
    elif error.errno in _NOT_ALLOWED:
        kind = "permission denied"
    elif error.errno == errno.EIO:
        kind = "disk error"
    else:
        kind = "write failed"
    return f"{kind}: {detail}"  # no path: the reason reaches callbacks
