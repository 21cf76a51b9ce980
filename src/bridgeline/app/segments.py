"""Settling the segments an earlier process left: their Completed/Failed, published by the owner.

A conference adopted from another process (a takeover after a node's loss, a drain hand-off, a
restart) ends each running recording there as a segment: the process that opened the file finishes
it and its row, but only the conference's owner commits the conference's events. So the owner looks,
after each heartbeat, at the rows of the segments its conferences still wait for:
- finished (completed or failed): the segment's Completed/Failed is committed, with the row's facts;
- still 'recording' on a node that is up: that node is finishing it (a drain) or repairing it (a
  restart); looked at again next time;
- still 'recording' on a node that has been down for `lost_after_s`, or no row at all (the process died
  before writing it): the row is failed as RECORDER_LOST and the segment Failed with that reason, so a
  recording never waits forever. If that node comes back with the file after all, its recovery still
  completes the row (the file is kept and downloadable); the event already said Failed.
A row this node itself left 'recording' (an earlier life of it) is its own startup recovery's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from bridgeline.app.ports import ClusterDirectory, RecordingStore
from bridgeline.app.records import RECORDER_LOST, RecordingEnd, RecordingRow, RecordingStatus
from bridgeline.app.service import ConferenceMoved, ConferenceService
from bridgeline.core.commands import RecordingFinished
from bridgeline.core.errors import ActionRefused

log = structlog.get_logger(__name__)


class SegmentSweeper:
    def __init__(
        self,
        store: RecordingStore,
        directory: ClusterDirectory | None,
        service: ConferenceService,
        *,
        node_id: str,
        lost_after_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store, self._directory, self._service = store, directory, service
        self._node, self._lost_after_s, self._clock = node_id, lost_after_s, clock
        self._down_since: dict[str, float] = {}  # recording id -> when its recorder was first seen down
        self.settled = 0
        self.lost = 0

    async def sweep(self) -> int:
        """One look at every waiting segment; how many were settled."""
        waiting = self._service.inherited_segments()
        if not waiting:
            self._down_since.clear()
            return 0
        rows = await self._store.recordings_by_id([recording_id for _, recording_id in waiting])
        up: set[str] | None = None
        settled = 0
        for conference_id, recording_id in waiting:
            row = rows.get(recording_id)
            if row is not None and row.state is not RecordingStatus.RECORDING:
                await self._finish(conference_id, recording_id, row)
                settled += 1
                continue
            if row is not None and row.recorder_node == self._node:
                continue  # an earlier life of this node: its recovery at startup finishes it
            if row is not None:
                if up is None:
                    up = await self._nodes_up()
                if row.recorder_node in up:
                    self._down_since.pop(recording_id, None)
                    continue
            now = self._clock()
            if now - self._down_since.setdefault(recording_id, now) < self._lost_after_s:
                continue
            if row is not None and not await self._store.finish_recording(_lost(recording_id, now)):
                continue  # finished meanwhile by its node: the next sweep reads the row
            await self._finish(conference_id, recording_id, None)
            self.lost += 1
            settled += 1
        self.settled += settled
        return settled

    async def _nodes_up(self) -> set[str]:
        if self._directory is None:
            return {self._node}  # one node: no other process can be finishing anything
        return {node.node_id for node in await self._directory.live_nodes()}

    async def _finish(self, conference_id: str, recording_id: str, row: RecordingRow | None) -> None:
        self._down_since.pop(recording_id, None)
        if row is None:
            signal = RecordingFinished(recording_id, None, RECORDER_LOST)
        elif row.state is RecordingStatus.COMPLETED:
            signal = RecordingFinished(recording_id, row.duration_ms, None)
        else:
            signal = RecordingFinished(recording_id, row.duration_ms, row.failure_reason or RECORDER_LOST)
        log.info(
            "segment_settled", conference_id=conference_id, recording_id=recording_id, error=signal.error
        )
        try:
            await self._service.recording_finished(conference_id, signal)
        except (ActionRefused, ConferenceMoved):  # moved on meanwhile: its new owner settles it
            log.info("segment_moved_on", conference_id=conference_id, recording_id=recording_id)


def _lost(recording_id: str, now: float) -> RecordingEnd:
    return RecordingEnd(
        recording_id=recording_id,
        state=RecordingStatus.FAILED,
        ended_at=now,
        duration_ms=None,
        size_bytes=None,
        location=None,
        failure_reason=RECORDER_LOST,
    )
