"""Recordings in S3-compatible object storage (AWS S3, MinIO, Ceph RGW, Garage...), through obstore.

obstore (a Rust client, object_store from Apache Arrow, with Python wheels) was chosen over boto3 and
aioboto3: it is natively asyncio (no thread per request, no aiobotocore pinning), streams ranged
gets, and brings no botocore; it is typed. A recording is uploaded when it is finished, then the local
file is removed; an upload that fails keeps the local file and raises RecordingStorageError with the
reason (rec-core reports MPCRecordingFailed with it, and may retry later).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import obstore
from obstore.exceptions import BaseError, NotFoundError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from bridgeline.config import Settings

from .files import RecordingFileInfo
from .storage import RecordingNotFound, RecordingStorageError, StoredRecording, check_location, location_of

_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class S3Settings:
    endpoint: str  # e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000
    bucket: str
    region: str = "us-east-1"
    prefix: str = ""  # keys are <prefix><account>/<file>
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)
    timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Settings | None:
        """None when no object storage is configured (recordings stay in the data directory)."""
        if not settings.recordings_s3_endpoint:
            return None
        return cls(
            endpoint=settings.recordings_s3_endpoint,
            bucket=settings.recordings_s3_bucket,
            region=settings.recordings_s3_region,
            prefix=settings.recordings_s3_prefix,
            access_key_id=settings.recordings_s3_access_key_id,
            secret_access_key=settings.recordings_s3_secret_access_key,
            timeout_s=settings.recordings_s3_timeout_s,
        )


def _reason(error: Exception) -> str:
    # obstore raises its own classes, and builtin ones (FileNotFoundError, PermissionError) for some
    if isinstance(error, PermissionDeniedError | UnauthenticatedError | PermissionError):
        return "object store refused the credentials"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    lowered = str(error).lower()
    if any(word in lowered for word in ("connect", "timed out", "timeout", "dns", "error sending request")):
        return f"object store unreachable: {text}"
    return f"object store error: {text}"


class S3Storage:
    """A bucket (and key prefix) of S3-compatible object storage; local files are staged under root."""

    shared = True  # every node reads the same bucket

    def __init__(self, settings: S3Settings, root: Path) -> None:
        self.root = root
        self.settings = settings
        timeout = timedelta(seconds=settings.timeout_s)
        self._store = S3Store(
            settings.bucket,
            endpoint=settings.endpoint,
            region=settings.region,
            **self._credentials(settings),  # type: ignore[arg-type]
            virtual_hosted_style_request=False,  # bucket in the path: what MinIO and friends expect
            client_options={
                "allow_http": settings.endpoint.startswith("http://"),
                "timeout": timeout,
                "connect_timeout": min(timeout, timedelta(seconds=5)),
            },
            retry_config={"max_retries": 2, "retry_timeout": timeout},
        )

    @staticmethod
    def _credentials(settings: S3Settings) -> dict[str, str]:
        """Keys when set; otherwise obstore looks for them where AWS tools do (environment, instance role)."""
        if not settings.access_key_id:
            return {}
        return {"access_key_id": settings.access_key_id, "secret_access_key": settings.secret_access_key}

    def _key(self, location: str) -> str:
        return self.settings.prefix + check_location(location).as_posix()

    async def save(self, info: RecordingFileInfo) -> str:
        try:
            location = location_of(self.root, info.path)
        except ValueError as error:
            raise RecordingStorageError(f"not under the recordings directory: {error}") from None
        if not info.path.is_file():
            raise RecordingNotFound(f"recording file {location} is missing")
        try:
            await obstore.put_async(self._store, self._key(location), info.path)
        except (NotFoundError, FileNotFoundError):
            raise RecordingStorageError(f"object store error: no bucket {self.settings.bucket!r}") from None
        except (BaseError, OSError) as error:
            raise RecordingStorageError(_reason(error)) from None
        await asyncio.to_thread(info.path.unlink, missing_ok=True)  # kept only once it is stored
        return location

    async def size(self, location: str) -> int:
        try:
            meta = await obstore.head_async(self._store, self._key(location))
        except (NotFoundError, FileNotFoundError):
            raise RecordingNotFound(f"no recording at {location}") from None
        except (BaseError, OSError) as error:
            raise RecordingStorageError(_reason(error)) from None
        return int(meta["size"])

    async def open_range(self, location: str, start: int, end: int) -> AsyncIterator[bytes]:
        try:
            result = await obstore.get_async(
                self._store, self._key(location), options={"range": (start, end + 1)}
            )
            async for chunk in result.stream(min_chunk_size=_CHUNK_BYTES):
                yield bytes(chunk)
        except (NotFoundError, FileNotFoundError):
            raise RecordingNotFound(f"no recording at {location}") from None
        except (BaseError, OSError) as error:
            raise RecordingStorageError(_reason(error)) from None

    async def delete(self, location: str) -> None:
        try:
            await obstore.delete_async(self._store, self._key(location))
        except (NotFoundError, FileNotFoundError):
            return
        except (BaseError, OSError) as error:
            raise RecordingStorageError(_reason(error)) from None

    async def stored(self) -> AsyncIterator[StoredRecording]:
        prefix = self.settings.prefix or None
        try:
            async for batch in obstore.list(self._store, prefix):
                for meta in batch:
                    location = meta["path"].removeprefix(self.settings.prefix)
                    try:
                        check_location(location)
                    except ValueError:
                        continue  # another application's object under the same prefix
                    yield StoredRecording(location, int(meta["size"]), meta["last_modified"])
        except (BaseError, OSError) as error:
            raise RecordingStorageError(_reason(error)) from None
