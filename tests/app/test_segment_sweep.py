"""The segment sweep (app/segments.py) with real parts: SQLite store, sim carrier, the real writers.

A conference adopted from a recorder node that never comes back: after `lost_after_s` its old segment
is failed ("recorder node lost"), row and event, once; if the node does come back with the file, its
recovery still completes the row, and no second event follows.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_recording_manager import events_of, recorded_pair, settle_rows, wait_for_event
from test_service import ACCOUNT

from bridgeline.adapters.carriers.sim.carrier import SimCarrier
from bridgeline.adapters.recordings.engine_files import WriterFiles
from bridgeline.adapters.recordings.storage import LocalStorage
from bridgeline.adapters.store import SqlStore
from bridgeline.app.recordings import RecordingManager
from bridgeline.app.records import RECORDER_LOST, RecordingStatus
from bridgeline.app.segments import SegmentSweeper
from bridgeline.app.service import ConferenceService
from bridgeline.core.recording import RecordingState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_segment_whose_recorder_node_stays_down_fails_once_and_its_file_is_kept_if_it_returns(
    store: SqlStore, tmp_path: Path
) -> None:
    root = tmp_path / "node-b"
    service, carrier, files, conference_id = await recorded_pair(store, root, recorder_node="b")
    await settle_rows(store, RecordingStatus.RECORDING)
    await asyncio.sleep(0.3)  # some audio in node b's file
    await service.shutdown()
    files.bind(lambda *_: None)  # node b dies: its file flushed, its row left 'recording'
    files.stop()
    await carrier.stop()

    # Node a adopts the conference (node b is not in the store's live nodes: it never registered).
    elsewhere = SimCarrier(store, answer_delay_ms=0)
    owner = ConferenceService(store, elsewhere)
    a_files = WriterFiles(tmp_path / "node-a", LocalStorage(tmp_path / "node-a"))
    RecordingManager(store, store, a_files, elsewhere, owner, recorder_node="a")
    await elsewhere.start()
    assert await owner.restore() == 1
    live = owner.get_live(conference_id)
    assert live is not None
    old = live.conf.recordings[0]
    assert old.state is RecordingState.STOPPING

    clock = Clock()
    sweeper = SegmentSweeper(store, store, owner, node_id="a", lost_after_s=30.0, clock=clock)
    assert await sweeper.sweep() == 0  # node b is first seen down now
    clock.now += 29.0
    assert await sweeper.sweep() == 0  # not yet given up
    assert "MPCRecordingFailed" not in await events_of(store, conference_id)
    clock.now += 2.0
    assert await sweeper.sweep() == 1
    types = await wait_for_event(store, conference_id, "MPCRecordingFailed")
    assert types.count("MPCRecordingFailed") == 1
    failed = [e.data for e in await store.list_events(conference_id) if e.type == "MPCRecordingFailed"]
    assert failed[0]["recording_id"] == old.recording_id and failed[0]["reason"] == RECORDER_LOST
    row = await store.get_recording(ACCOUNT, old.recording_id)
    assert row is not None and row.state is RecordingStatus.FAILED and row.failure_reason == RECORDER_LOST
    assert old.state is RecordingState.FAILED and owner.inherited_segments() == []
    assert await sweeper.sweep() == 0 and sweeper.lost == 1

    # Node b comes back after all: its recovery repairs the file and completes the row (nothing on
    # its disk is thrown away), and commits nothing for a conference node a owns.
    returned_carrier = SimCarrier(store, answer_delay_ms=0)
    b_files = WriterFiles(root, LocalStorage(root))
    returned = RecordingManager(
        store, store, b_files, returned_carrier, ConferenceService(store, returned_carrier), recorder_node="b"
    )
    before = await events_of(store, conference_id)
    assert await returned.recover() == 1
    row = await store.get_recording(ACCOUNT, old.recording_id)
    assert row is not None and row.state is RecordingStatus.COMPLETED and row.location is not None
    assert row.duration_ms is not None and row.duration_ms >= 200
    assert (root / row.location).stat().st_size == row.size_bytes
    assert await events_of(store, conference_id) == before  # the event said Failed; no second one
    assert await returned.recover() == 0  # settled for good
    await owner.shutdown()
    await elsewhere.stop()
    a_files.stop()
    b_files.stop()
