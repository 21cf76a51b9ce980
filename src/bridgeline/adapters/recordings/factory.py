"""The storage the settings choose: S3 when an endpoint is set, else the data directory."""

from __future__ import annotations

from bridgeline.config import Settings

from .s3 import S3Settings, S3Storage
from .storage import LocalStorage, RecordingStorage


def storage_from_settings(settings: Settings) -> RecordingStorage:
    root = settings.recordings_directory
    s3 = S3Settings.from_settings(settings)
    return LocalStorage(root) if s3 is None else S3Storage(s3, root)
