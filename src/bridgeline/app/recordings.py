"""The recording manager: carries out the engine's ControlRecording effects and reports files finished.

Per recording, after its start was committed: the row is written ('recording'), the file opened by
the writer (`RecordingFiles`), and the carrier taps the audio into `write`. Pausing keeps the
timeline: while paused, every frame is written as silence of the same length; the carrier hands its
buffered audio over first (`flush_recording`), so the pause starts and ends at the tick it was asked
at. A stop stops the tap and, after the tap's last audio, closes the file; the writer's answer (on
its own thread) hops to the loop, finishes the row, and hands `RecordingFinished` to the conference
service, whose Completed/Failed event goes through the outbox like every other callback. A writer
that fails on its own (disk full, queue full) answers the same way without a stop: the tap is
stopped, the recording Failed, the call goes on.

At startup (`recover`), rows still 'recording' were left by a crash: each file is repaired and
stored (or found unusable), the row finished, and the conference told: live here (restored, its
recording going on in a new segment), or ended, from its stored snapshot. A conference live under
another node is not told: its owner alone commits its events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from bridgeline.app.live import ConferenceMeta
from bridgeline.app.ports import Carrier, ConferenceHistory, RecordedFile, RecordingFiles, RecordingStore
from bridgeline.app.records import RecordingEnd, RecordingRow, RecordingStatus
from bridgeline.app.service import ConferenceMoved, ConferenceService
from bridgeline.core.commands import RecordingFinished
from bridgeline.core.effects import ControlRecording, RecordingAction
from bridgeline.core.errors import ActionRefused
from bridgeline.core.recording import RecordingKind

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Open:
    conference_id: str
    inserted: asyncio.Task[None]  # the row's insert: a finish waits for it


class RecordingManager:
    def __init__(
        self,
        store: RecordingStore,
        history: ConferenceHistory,
        files: RecordingFiles,
        carrier: Carrier,
        service: ConferenceService,
        *,
        recorder_node: str = "local",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store, self._history, self._files = store, history, files
        self._carrier, self._service = carrier, service
        self._node, self._clock = recorder_node, clock
        self._open: dict[str, _Open] = {}
        self._paused: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drained: asyncio.Event | None = None  # set by the last answer during stop()
        files.bind(self._finished_any_thread)
        service.recorder = self.control

    @property
    def recording_count(self) -> int:
        return len(self._open)

    # ----------------------------------------------------------------- effects (on the loop)
    def control(self, meta: ConferenceMeta, effect: ControlRecording) -> None:
        self._loop = asyncio.get_running_loop()
        recording_id = effect.recording_id
        if effect.action is RecordingAction.START:
            self._start(meta, effect)
        elif effect.action is RecordingAction.PAUSE:
            paused = self._paused
            self._carrier.flush_recording(recording_id, lambda: paused.add(recording_id))
        elif effect.action is RecordingAction.RESUME:
            paused = self._paused
            self._carrier.flush_recording(recording_id, lambda: paused.discard(recording_id))
        elif recording_id in self._open:  # STOP
            files = self._files
            self._carrier.stop_recording(recording_id)
            self._carrier.flush_recording(recording_id, lambda: files.close(recording_id))

    def _start(self, meta: ConferenceMeta, effect: ControlRecording) -> None:
        recording_id = effect.recording_id
        row = RecordingRow(
            recording_id=recording_id,
            auth_id=meta.auth_id,
            conference_id=meta.conference_id,
            phlo_id=meta.phlo_id,
            node_id=meta.node_id,
            member_address=effect.member,
            kind=(RecordingKind.CONFERENCE if effect.leg_id is None else RecordingKind.PARTICIPANT).value,
            file_format=effect.file_format,
            state=RecordingStatus.RECORDING,
            started_at=self._clock(),
            recorder_node=self._node,
            previous_recording_id=effect.previous_recording_id,
        )
        inserted = asyncio.ensure_future(self._store.add_recording(row))
        self._open[recording_id] = _Open(meta.conference_id, inserted)
        try:
            self._files.open(meta.auth_id, recording_id, effect.file_format)
        except ValueError as exc:
            self._finished(recording_id, None, str(exc))
            return
        self._carrier.start_recording(meta.conference_id, recording_id, effect.leg_id, self.write)

    def write(self, recording_id: str, pcm: bytes) -> None:
        """The carrier's sink (any thread): a paused recording gets silence, so its timeline holds."""
        self._files.write(recording_id, bytes(len(pcm)) if recording_id in self._paused else pcm)

    # ----------------------------------------------------------------- files finished
    def _finished_any_thread(self, recording_id: str, file: RecordedFile | None, error: str | None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            log.warning("recording_finished_without_loop", recording_id=recording_id)
            return
        loop.call_soon_threadsafe(self._finished, recording_id, file, error)

    def _finished(self, recording_id: str, file: RecordedFile | None, error: str | None) -> None:
        entry = self._open.pop(recording_id, None)
        if entry is None:
            return  # answered twice
        if not self._open and self._drained is not None:
            self._drained.set()
        self._paused.discard(recording_id)
        self._carrier.stop_recording(recording_id)  # a writer that failed on its own: stop the tap
        self._spawn(self._finish(entry, recording_id, file, error))

    async def _finish(
        self, entry: _Open, recording_id: str, file: RecordedFile | None, error: str | None
    ) -> None:
        try:
            await entry.inserted
        except Exception:
            log.exception("recording_row_insert_failed", recording_id=recording_id)
        await self._end_row(recording_id, file, error)
        signal = RecordingFinished(recording_id, None if file is None else file.duration_ms, error)
        await self._service.recording_finished(entry.conference_id, signal)

    async def _end_row(self, recording_id: str, file: RecordedFile | None, error: str | None) -> None:
        failed = file is None or error is not None
        end = RecordingEnd(
            recording_id=recording_id,
            state=RecordingStatus.FAILED if failed else RecordingStatus.COMPLETED,
            ended_at=self._clock(),
            duration_ms=None if file is None else file.duration_ms,
            size_bytes=None if file is None else file.size_bytes,
            location=None if file is None else file.location,
            failure_reason=(error or "the file was not written") if failed else None,
        )
        await self._store.finish_recording(end)

    # ----------------------------------------------------------------- after a crash
    async def recover(self) -> int:
        """Finish the recordings a crash left open on this node; returns how many."""
        self._loop = asyncio.get_running_loop()
        rows = await self._store.unfinished_recordings(self._node)
        for row in rows:
            if row.recording_id in self._open:
                continue  # started by this process (a conference restored and recording again)
            file: RecordedFile | None = None
            error: str | None = None
            try:
                file = await self._files.recover(row.auth_id, row.recording_id, row.file_format)
            except ValueError as exc:
                error = f"not recoverable after a restart: {exc}"
            await self._end_row(row.recording_id, file, error)
            record = await self._history.get_conference(row.conference_id)
            signal = RecordingFinished(row.recording_id, None if file is None else file.duration_ms, error)
            try:
                await self._service.recording_finished(row.conference_id, signal, record)
            except (ActionRefused, ConferenceMoved):
                # Live, but owned by another node (taken over while this one was down): only the row
                # is finished here; this node must not commit for a conference it does not own.
                log.warning("recording_recovered_owned_elsewhere", recording_id=row.recording_id)
                continue
            log.info("recording_recovered", recording_id=row.recording_id, error=error)
        return len(rows)

    async def stop(self) -> None:
        """Server shutdown, once the writers have closed every file: wait until each open recording
        has been answered (its file stored, on this loop), then for their finishes. The caller
        bounds the wait (asyncio.timeout)."""
        if self._open:
            self._drained = asyncio.Event()
            await self._drained.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
