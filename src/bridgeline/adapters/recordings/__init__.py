"""Recording files: written off the tick and the loop, repaired after a crash, stored locally or in S3.

The conference engine's recording (rec-core) feeds PCM to `RecordingWriters`; finished files go to a
`RecordingStorage`. docs/architecture.md, "Recording storage", has the map.
"""

from .factory import storage_from_settings
from .files import (
    PART_SUFFIX,
    InvalidRecordingId,
    RecordingFileInfo,
    RecordingFormat,
    check_id,
    failure_reason,
    find_unfinished,
    format_of,
    part_path,
    recording_path,
    recordings_root,
)
from .mp3 import repair_mp3
from .ranges import ByteRange, RangeNotSatisfiable, parse_range
from .recover import finalize_unfinished
from .s3 import S3Settings, S3Storage
from .storage import (
    LocalStorage,
    RecordingNotFound,
    RecordingStorage,
    RecordingStorageError,
    StoredRecording,
    prune_recordings,
)
from .wav import NotARecording, repair_wav
from .writers import QUEUE_FULL, TOO_LONG, OnFinished, RecordingWriters, WriterSettings

__all__ = [
    "PART_SUFFIX",
    "QUEUE_FULL",
    "TOO_LONG",
    "ByteRange",
    "InvalidRecordingId",
    "LocalStorage",
    "NotARecording",
    "OnFinished",
    "RangeNotSatisfiable",
    "RecordingFileInfo",
    "RecordingFormat",
    "RecordingNotFound",
    "RecordingStorage",
    "RecordingStorageError",
    "RecordingWriters",
    "S3Settings",
    "S3Storage",
    "StoredRecording",
    "WriterSettings",
    "check_id",
    "failure_reason",
    "finalize_unfinished",
    "find_unfinished",
    "format_of",
    "parse_range",
    "part_path",
    "prune_recordings",
    "recording_path",
    "recordings_root",
    "repair_mp3",
    "repair_wav",
    "storage_from_settings",
]
