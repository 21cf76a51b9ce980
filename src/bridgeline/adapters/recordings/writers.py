"""One writer thread for every recording of the process: the tick and the event loop only enqueue.

`write` is called with one or more 20 ms frames (the media runtime hands a chunk of up to 200 ms per
recording), from the media tick or the event loop, and must never wait on a disk or on the MP3
encoder: it appends to an in-memory inbox (a deque: never blocks) and returns, without waking the
thread. The thread wakes every DRAIN_S while recordings are open (and at once for an open, a close
or a stop), takes everything queued, writes WAV or encodes MP3, and reports each recording's end once
through `on_finished`. Why not wake it per write: a wake-up per chunk (a futex call, a context switch,
the GIL handed over) cost more than the chunk's write.

Each file's bytes wait in the thread's own buffer and reach the OS every `header_interval_s` of audio
in one write, a WAV's header rewritten after it in one pwrite; so a crash loses at most that interval
plus DRAIN_S, and a crashed WAV is playable as it stands (`wav.repair_wav` makes it exact).

Threads: `open`, `write` and `close` of one recording may be called from different threads, but
`write` of one recording from one thread at a time (its queue counter has a single writer).
`on_finished(recording_id, info, error)` runs ON THE WRITER THREAD: hop to your event loop
(`loop.call_soon_threadsafe`) and do not block in it. Exactly one call per opened recording:
`info` when the file is complete, or `None` and the reason (`"writer queue full"`, `"disk full: …"`,
`"permission denied: …"`, `"disk error: …"`, `"write failed: …"`, `"recording too long for WAV"`).
After a failure the audio written so far is kept at the recording's path, made playable if possible.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, cast

import lameenc
import structlog

from bridgeline.config import Settings

from . import mp3, wav
from .files import RecordingFileInfo, RecordingFormat, check_id, failure_reason, part_path

log = structlog.get_logger(__name__)

OnFinished = Callable[[str, RecordingFileInfo | None, str | None], None]

QUEUE_FULL: Final = "writer queue full"
TOO_LONG: Final = "recording too long for WAV"

DRAIN_S: Final = 0.1  # the thread takes queued chunks this often while recordings are open

_OPEN, _WRITE, _CLOSE, _FAIL, _STOP = range(5)


@dataclass(frozen=True, slots=True)
class WriterSettings:
    queue_frames: int = 500  # audio waiting per recording, in 20 ms frames (10 s); past it: failed
    header_interval_s: float = 1.0  # audio seconds between WAV header rewrites / MP3 flushes to the OS
    mp3_bitrate_kbps: int = 32  # constant bitrate; 32 kbit/s is transparent for 8 kHz telephone speech

    def __post_init__(self) -> None:
        if self.queue_frames < 1:
            raise ValueError("queue_frames must be at least 1")
        if self.header_interval_s <= 0:
            raise ValueError("header_interval_s must be positive")
        if self.mp3_bitrate_kbps not in mp3.ALLOWED_BITRATES:
            raise ValueError(f"mp3_bitrate_kbps must be one of {sorted(mp3.ALLOWED_BITRATES)}")

    @classmethod
    def from_settings(cls, settings: Settings) -> WriterSettings:
        return cls(
            queue_frames=settings.recording_queue_frames,
            header_interval_s=settings.recording_header_interval_s,
            mp3_bitrate_kbps=settings.recording_mp3_bitrate_kbps,
        )


class _Producer:
    """What the callers' side keeps per recording: bytes queued, bytes taken, the most that may wait,
    and a failed flag."""

    __slots__ = ("failed", "limit", "queued", "taken")

    def __init__(self, limit: int) -> None:
        self.queued = 0  # written only by the caller's thread
        self.taken = 0  # written only by the writer thread
        self.limit = limit
        self.failed = False


class _Recording:
    """What the writer thread keeps per open recording."""

    __slots__ = (
        "block", "channels", "data_bytes", "encoder", "fd", "fmt", "interval_bytes", "next_sync",
        "path", "pending", "producer", "sample_rate", "size_bytes",
    )  # fmt: skip

    def __init__(
        self,
        path: Path,
        fmt: RecordingFormat,
        rate: int,
        channels: int,
        interval_s: float,
        producer: _Producer,
    ) -> None:
        self.path, self.fmt, self.sample_rate, self.channels = path, fmt, rate, channels
        self.producer = producer
        self.block = wav.SAMPLE_BYTES * channels
        self.interval_bytes = max(self.block, int(interval_s * rate) * self.block)
        self.next_sync = self.interval_bytes
        self.data_bytes = 0  # PCM bytes taken
        self.size_bytes = 0  # bytes in the file, those pending included
        self.fd: int | None = None
        self.pending = bytearray()  # bytes not yet handed to the OS
        self.encoder: lameenc.Encoder | None = None

    def info(self) -> RecordingFileInfo:
        return RecordingFileInfo(
            path=self.path,
            format=self.fmt,
            size_bytes=self.size_bytes,
            duration_ms=wav.duration_ms(self.data_bytes, self.sample_rate, self.channels),
            sample_rate=self.sample_rate,
            channels=self.channels,
        )


class RecordingWriters:
    """The process's recording files, written on one thread (started here, ended by `stop`)."""

    def __init__(self, on_finished: OnFinished, settings: WriterSettings | None = None) -> None:
        self._on_finished = on_finished
        self._settings = settings or WriterSettings()
        self._inbox: deque[tuple[int, str, object]] = deque()  # appends and pops are atomic
        self._wake = threading.Event()
        self._producers: dict[str, _Producer] = {}
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="recording-writer", daemon=True)
        self._thread.start()

    # --- the callers' side: never blocks, never raises into the tick -----------------------------
    def open(
        self, recording_id: str, path: Path, fmt: RecordingFormat, sample_rate: int, channels: int
    ) -> None:
        """Start a recording. ValueError: a bad id, format, rate or channel count, or an id in use."""
        check_id(recording_id)
        fmt = RecordingFormat(fmt)
        if not 8000 <= sample_rate <= 48000 or channels not in (1, 2):
            raise ValueError("sample_rate must be 8000-48000 Hz and channels 1 or 2")
        if self._stopped:
            raise RuntimeError("the recording writers are stopped")
        if recording_id in self._producers:
            raise ValueError(f"recording {recording_id} is already open")
        frame_bytes = sample_rate // 50 * channels * wav.SAMPLE_BYTES  # 20 ms
        producer = _Producer(self._settings.queue_frames * frame_bytes)
        self._producers[recording_id] = producer
        recording = _Recording(
            Path(path), fmt, sample_rate, channels, self._settings.header_interval_s, producer
        )
        self._send((_OPEN, recording_id, recording))

    def write(self, recording_id: str, pcm: bytes) -> None:
        """Queue int16 little-endian interleaved samples (any whole number of samples; a chunk of several
        frames is written at once). A recording not open (or failed) ignores it."""
        producer = self._producers.get(recording_id)
        if producer is None or producer.failed:
            return
        if producer.queued - producer.taken >= producer.limit:
            producer.failed = True
            self._send((_FAIL, recording_id, QUEUE_FULL))
            return
        producer.queued += len(pcm)
        self._inbox.append((_WRITE, recording_id, pcm))  # taken at the thread's next drain

    def close(self, recording_id: str) -> None:
        """Finish a recording: `on_finished` follows on the writer thread. Unknown ids are ignored."""
        if self._producers.pop(recording_id, None) is not None:
            self._send((_CLOSE, recording_id, None))

    def stop(self, timeout: float | None = None) -> None:
        """Close every open recording (each reported through on_finished) and end the thread."""
        if not self._stopped:
            self._stopped = True
            self._producers.clear()
            self._send((_STOP, "", None))
        self._thread.join(timeout)

    def _send(self, message: tuple[int, str, object]) -> None:
        """Queue a message the thread must see now: after the append, so no wake-up is lost."""
        self._inbox.append(message)
        self._wake.set()

    @property
    def open_count(self) -> int:
        return len(self._producers)

    # --- the writer thread ------------------------------------------------------------------------
    def _run(self) -> None:
        recordings: dict[str, _Recording] = {}
        inbox, wake = self._inbox, self._wake
        while True:
            wake.wait(DRAIN_S if recordings else None)
            wake.clear()  # before the drain: a message appended during it sets it again
            while inbox:
                kind, recording_id, payload = inbox.popleft()
                if kind == _STOP:
                    for rid in list(recordings):
                        self._finish(recordings.pop(rid), rid)
                    return
                try:
                    self._handle(recordings, kind, recording_id, payload)
                except Exception:  # a bug here must not end every recording's thread
                    log.exception("recording_writer_failed", recording_id=recording_id)
                    broken = recordings.pop(recording_id, None)
                    if broken is None and kind == _OPEN:  # failed while starting: report it all the same
                        broken = cast(_Recording, payload)
                    if broken is not None:
                        self._fail(broken, recording_id, "write failed: internal error")

    def _handle(
        self, recordings: dict[str, _Recording], kind: int, recording_id: str, payload: object
    ) -> None:
        if kind == _OPEN:
            recording = cast(_Recording, payload)
            if self._start(recording, recording_id):
                recordings[recording_id] = recording
            return
        found = recordings.get(recording_id)
        if found is None:
            return  # already finished (failed): later messages for it are dropped
        if kind == _WRITE:
            pcm = cast(bytes, payload)
            found.producer.taken += len(pcm)
            if not self._append(found, recording_id, pcm):
                del recordings[recording_id]
        elif kind == _CLOSE:
            self._finish(recordings.pop(recording_id), recording_id)
        elif kind == _FAIL:
            self._fail(recordings.pop(recording_id), recording_id, str(payload))

    def _start(self, rec: _Recording, recording_id: str) -> bool:
        try:
            rec.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            rec.fd = os.open(part_path(rec.path), flags, 0o640)
            if rec.fmt is RecordingFormat.WAV:
                # at once: a crash from now on leaves a header that repair_wav can read
                _write_all(rec.fd, wav.header(rec.sample_rate, rec.channels, 0))
                rec.size_bytes = wav.HEADER_BYTES
            else:
                rec.encoder = mp3.new_encoder(rec.sample_rate, rec.channels, self._settings.mp3_bitrate_kbps)
        except OSError as error:
            self._fail(rec, recording_id, failure_reason(error))
            return False
        return True

    def _append(self, rec: _Recording, recording_id: str, pcm: bytes) -> bool:
        if len(pcm) % rec.block:  # a torn sample would shift every later one
            pcm = pcm[: len(pcm) - len(pcm) % rec.block]
        try:
            if rec.encoder is not None:
                encoded = rec.encoder.encode(pcm)
                rec.pending += encoded
                rec.size_bytes += len(encoded)
            else:
                if rec.data_bytes + len(pcm) > wav.MAX_DATA_BYTES:
                    self._fail(rec, recording_id, TOO_LONG)
                    return False
                rec.pending += pcm
                rec.size_bytes += len(pcm)
            rec.data_bytes += len(pcm)
            if rec.data_bytes >= rec.next_sync:
                rec.next_sync = rec.data_bytes + rec.interval_bytes
                self._sync(rec)
        except OSError as error:
            self._fail(rec, recording_id, failure_reason(error))
            return False
        return True

    @staticmethod
    def _sync(rec: _Recording) -> None:
        """Hand the pending bytes to the OS and, for a WAV, the header that counts them: the file is
        playable as it stands if the process dies now (not fsynced)."""
        assert rec.fd is not None
        if rec.pending:
            _write_all(rec.fd, rec.pending)
            rec.pending.clear()
        if rec.fmt is RecordingFormat.WAV:
            wav.write_header(rec.fd, rec.sample_rate, rec.channels, rec.data_bytes)

    def _finish(self, rec: _Recording, recording_id: str) -> None:
        assert rec.fd is not None
        try:
            if rec.encoder is not None:
                tail = rec.encoder.flush()
                rec.pending += tail
                rec.size_bytes += len(tail)
            self._sync(rec)
            os.fsync(rec.fd)
            os.close(rec.fd)
            rec.fd = None
            os.replace(part_path(rec.path), rec.path)
        except OSError as error:
            self._fail(rec, recording_id, failure_reason(error))
            return
        self._report(recording_id, rec.info(), None)

    def _fail(self, rec: _Recording, recording_id: str, reason: str) -> None:
        rec.producer.failed = True  # the callers stop queueing for it
        if rec.fd is not None:
            self._keep_what_was_written(rec)
        log.warning("recording_failed", recording_id=recording_id, reason=reason)
        self._report(recording_id, None, reason)

    @staticmethod
    def _keep_what_was_written(rec: _Recording) -> None:
        """Best effort after a failure: close the file and leave a playable one at the final path."""
        assert rec.fd is not None
        part = part_path(rec.path)
        with contextlib.suppress(OSError):  # what does not fit is lost; what reached the file stays
            _write_all(rec.fd, rec.pending)
        rec.pending.clear()
        with contextlib.suppress(OSError):
            os.close(rec.fd)
        rec.fd = None
        try:
            if rec.fmt is RecordingFormat.WAV:
                wav.repair_wav(part)
            else:
                mp3.repair_mp3(part)
            os.replace(part, rec.path)
        except (OSError, ValueError):
            pass  # left as .part: find_unfinished() finds it at the next start

    def _report(self, recording_id: str, info: RecordingFileInfo | None, error: str | None) -> None:
        try:
            self._on_finished(recording_id, info, error)
        except Exception:  # the writer thread must outlive a faulty callback
            log.exception("recording_callback_failed", recording_id=recording_id)


def _write_all(fd: int, data: bytes | bytearray) -> None:
    """os.write until every byte is written (a short write on a filling disk); OSError as it came.
    The views are released before returning or raising, so `data` may be resized after."""
    with memoryview(data) as whole:
        offset = 0
        while offset < len(whole):
            with whole[offset:] as rest:
                written = os.write(fd, rest)
            if written <= 0:
                raise OSError(28, "No space left on device")
            offset += written
