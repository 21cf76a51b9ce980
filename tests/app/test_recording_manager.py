"""The recording manager with real parts: SQLite store, sim carrier, the real writers and local storage.

What the HTTP tests cannot arrange: a recording file that cannot be written fails that recording
(row and event, with the reason) while the call goes on; a file finished after its conference ended
still gets its Completed event, in the conference's own sequence.
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

from test_service import ACCOUNT, AGENT, CUSTOMER, settle

from bridgeline.adapters.carriers.sim.carrier import SimCarrier
from bridgeline.adapters.recordings.engine_files import WriterFiles
from bridgeline.adapters.recordings.storage import LocalStorage
from bridgeline.adapters.store import SqlStore
from bridgeline.app.recordings import RecordingManager
from bridgeline.app.records import RecordingQuery, RecordingStatus
from bridgeline.app.segments import SegmentSweeper
from bridgeline.app.service import ConferenceService
from bridgeline.core.commands import Hangup, Hold
from bridgeline.core.model import MemberStatus, Role
from bridgeline.core.recording import RecordingState
from bridgeline.phlo.definition import NodeSettings


async def recorded_pair(
    store: SqlStore, root: Path, recorder_node: str = "local"
) -> tuple[ConferenceService, SimCarrier, WriterFiles, str]:
    carrier = SimCarrier(store, answer_delay_ms=0)
    service = ConferenceService(store, carrier)
    files = WriterFiles(root, LocalStorage(root))
    RecordingManager(store, store, files, carrier, service, recorder_node=recorder_node)
    await carrier.start()
    conference_id = await service.start_conference(
        auth_id=ACCOUNT,
        phlo_id="p",
        node_id="n",
        run_id=None,
        settings=NodeSettings(record=True, record_min_member_count=2),
        dials=[(AGENT, Role.AGENT), (CUSTOMER, Role.CUSTOMER)],
        sequential=True,
    )
    live = service.get_live(conference_id)
    assert live is not None
    await settle(lambda: live.conf.recordings)
    return service, carrier, files, conference_id


async def events_of(store: SqlStore, conference_id: str) -> list[str]:
    return [e.type for e in await store.list_events(conference_id)]


async def test_a_file_that_cannot_be_written_fails_the_recording_and_the_call_goes_on(
    store: SqlStore, tmp_path: Path
) -> None:
    root = tmp_path / "recordings"
    root.write_text("a file where the recordings directory should be")  # mkdir of <root>/<account> fails
    service, carrier, files, conference_id = await recorded_pair(store, root)
    types = await wait_for_event(store, conference_id, "MPCRecordingFailed")
    assert types.count("MPCRecordingInitiated") == 1
    await settle_rows(store, RecordingStatus.FAILED)
    rows, _ = await store.list_recordings(RecordingQuery(ACCOUNT))
    assert rows[0].failure_reason is not None and "cannot start the recording file" in rows[0].failure_reason
    await service.member_action(ACCOUNT, "p", "n", Hold(CUSTOMER))  # the call goes on
    live = service.get_live(conference_id)
    assert live is not None and live.conf.members[CUSTOMER].status is MemberStatus.ON_HOLD
    await service.shutdown()
    await carrier.stop()
    files.stop()


async def test_a_file_finished_after_the_conference_ended_is_completed_in_its_sequence(
    store: SqlStore, tmp_path: Path
) -> None:
    service, carrier, files, conference_id = await recorded_pair(store, tmp_path / "recordings")
    await service.member_action(ACCOUNT, "p", "n", Hangup(AGENT))
    await service.member_action(ACCOUNT, "p", "n", Hangup(CUSTOMER))
    assert service.get_live(conference_id) is None
    await settle_rows(store, RecordingStatus.COMPLETED)
    types = await wait_for_event(store, conference_id, "MPCRecordingCompleted")
    assert types.index("conference_ended") < types.index("MPCRecordingCompleted") == len(types) - 1
    record = await store.get_conference(conference_id)
    assert record is not None and record.status == "ended"
    rows, _ = await store.list_recordings(RecordingQuery(ACCOUNT))
    with wave.open(str(tmp_path / "recordings" / (rows[0].location or ""))) as wav:
        assert wav.getnframes() == rows[0].duration_ms * 8  # 8 kHz: the row's duration is the file's
    await service.shutdown()
    await carrier.stop()
    files.stop()


async def settle_rows(store: SqlStore, state: RecordingStatus) -> None:
    for _ in range(500):
        rows, _ = await store.list_recordings(RecordingQuery(ACCOUNT))
        if rows and rows[0].state is state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no recording row became {state}")


async def wait_for_event(store: SqlStore, conference_id: str, name: str) -> list[str]:
    for _ in range(500):
        types = await events_of(store, conference_id)
        if name in types:
            return types
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {name} event: {await events_of(store, conference_id)}")


async def test_a_restored_conference_goes_on_recording_in_a_new_segment(
    store: SqlStore, tmp_path: Path
) -> None:
    """Another process restores the conference (as after a crash): the old recording ends as a
    segment and the new process records a new one, its Initiated committed and naming the old."""
    service, carrier, files, conference_id = await recorded_pair(store, tmp_path / "recordings")
    await wait_for_event(store, conference_id, "MPCRecordingInitiated")  # committed, not only decided
    await service.shutdown()  # the first process stops taking inputs; its writer is left open
    later = SimCarrier(store, answer_delay_ms=0)
    restored = ConferenceService(store, later)
    later_files = WriterFiles(tmp_path / "later", LocalStorage(tmp_path / "later"))
    manager = RecordingManager(store, store, later_files, later, restored)
    await later.start()
    assert await restored.restore() == 1
    live = restored.get_live(conference_id)
    assert live is not None
    old, new = live.conf.recordings
    assert old.state is RecordingState.STOPPING and new.state is RecordingState.RECORDING
    assert new.previous_recording_id == old.recording_id and manager.recording_count == 1
    events = await store.list_events(conference_id)
    initiated = [e.data for e in events if e.type == "MPCRecordingInitiated"]
    assert [d["recording_id"] for d in initiated] == [old.recording_id, new.recording_id]
    assert initiated[1]["previous_recording_id"] == old.recording_id
    for _ in range(500):  # the row is inserted as the effect is carried out
        row = await store.get_recording(ACCOUNT, new.recording_id)
        if row is not None:
            break
        await asyncio.sleep(0.01)
    assert row is not None and row.state is RecordingStatus.RECORDING
    # The conference ends: the new segment is finished here; the old one's file is the first
    # process's, so the ended conference waits for that process's row (app/segments.py).
    await restored.member_action(ACCOUNT, "p", "n", Hangup(AGENT))
    await restored.member_action(ACCOUNT, "p", "n", Hangup(CUSTOMER))
    types = await wait_for_event(store, conference_id, "MPCRecordingCompleted")
    assert types.count("MPCRecordingCompleted") == 1
    assert restored.inherited_segments() == [(conference_id, old.recording_id)]
    sweeper = SegmentSweeper(store, store, restored, node_id="local", lost_after_s=60.0)
    assert await sweeper.sweep() == 0  # its row is still 'recording', by this node's earlier life
    files.stop()  # the first process closes its file and finishes its row (as a drained node does)
    for _ in range(500):
        row = await store.get_recording(ACCOUNT, old.recording_id)
        if row is not None and row.state is RecordingStatus.COMPLETED:
            break
        await asyncio.sleep(0.01)
    assert (await events_of(store, conference_id)).count("MPCRecordingCompleted") == 1  # not published yet
    assert await sweeper.sweep() == 1
    types = await wait_for_event(store, conference_id, "MPCRecordingCompleted")
    assert types.count("MPCRecordingCompleted") == 2
    assert restored.inherited_segments() == [] and conference_id not in restored._finishing
    assert await sweeper.sweep() == 0
    await restored.shutdown()
    await later.stop()
    await carrier.stop()
    later_files.stop()


async def test_recovery_of_a_file_whose_conference_is_live_elsewhere_finishes_only_the_row(
    store: SqlStore, tmp_path: Path
) -> None:
    """The recorder node restarts, but its conference lives on under another process: the file is
    repaired and the row finished, and no event is committed by this node, which does not own it."""
    service, carrier, files, conference_id = await recorded_pair(store, tmp_path / "recordings")
    live = service.get_live(conference_id)
    assert live is not None
    recording_id = live.conf.recordings[0].recording_id
    await settle_rows(store, RecordingStatus.RECORDING)
    await asyncio.sleep(0.3)  # some audio in the file
    await service.shutdown()
    files.bind(lambda *_: None)  # the process dies once the file is flushed, before its row is finished
    files.stop()
    before = await events_of(store, conference_id)
    elsewhere = SimCarrier(store, answer_delay_ms=0)
    recovering = ConferenceService(store, elsewhere)  # the conference is not adopted here
    later_files = WriterFiles(tmp_path / "recordings", LocalStorage(tmp_path / "recordings"))
    manager = RecordingManager(store, store, later_files, elsewhere, recovering)
    assert await manager.recover() == 1
    row = await store.get_recording(ACCOUNT, recording_id)
    assert row is not None and row.state is RecordingStatus.COMPLETED and row.location is not None
    assert await events_of(store, conference_id) == before
    await carrier.stop()
    later_files.stop()
