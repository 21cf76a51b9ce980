"""The store's RecordingStore (migration 0009), on both backends (conftest: SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses

from bridgeline.adapters.store.base import SqlStore
from bridgeline.app.records import RECORDER_LOST, RecordingEnd, RecordingQuery, RecordingRow, RecordingStatus

T0 = 1_700_000_000.0


def row(n: int, *, auth_id: str = "MA1", conference: str = "c1", member: str | None = None) -> RecordingRow:
    return RecordingRow(
        recording_id=f"{conference}-r{n}",
        auth_id=auth_id,
        conference_id=conference,
        phlo_id="p1",
        node_id="n1",
        member_address=member,
        kind="conference" if member is None else "participant",
        file_format="wav",
        state=RecordingStatus.RECORDING,
        started_at=T0 + n,
        recorder_node="node-a",
    )


async def test_a_recording_is_added_finished_once_and_read_by_its_account_only(store: SqlStore) -> None:
    await store.add_recording(row(1))
    assert await store.unfinished_recordings("node-a") == [row(1)]
    assert await store.unfinished_recordings("node-b") == []
    end = RecordingEnd("c1-r1", RecordingStatus.COMPLETED, T0 + 9, 8000, 128_044, "MA1/c1-r1.wav", None)
    assert await store.finish_recording(end)
    assert not await store.finish_recording(dataclasses.replace(end, state=RecordingStatus.FAILED))
    got = await store.get_recording("MA1", "c1-r1")
    assert got == dataclasses.replace(
        row(1),
        state=RecordingStatus.COMPLETED,
        ended_at=T0 + 9,
        duration_ms=8000,
        size_bytes=128_044,
        location="MA1/c1-r1.wav",
    )
    assert await store.get_recording("MA2", "c1-r1") is None
    assert await store.unfinished_recordings("node-a") == []
    assert not await store.delete_recording("MA2", "c1-r1")
    assert await store.delete_recording("MA1", "c1-r1")
    assert await store.get_recording("MA1", "c1-r1") is None


async def test_the_list_filters_pages_and_counts(store: SqlStore) -> None:
    for n in range(1, 6):
        await store.add_recording(row(n))
    await store.add_recording(row(1, conference="c2", member="+14155550100"))
    await store.add_recording(row(9, auth_id="MA2", conference="c3"))
    page, total = await store.list_recordings(RecordingQuery("MA1", limit=2, offset=1))
    assert total == 6
    assert [r.recording_id for r in page] == ["c1-r4", "c1-r3"]  # newest first, after the first
    page, total = await store.list_recordings(RecordingQuery("MA1", conference_id="c2"))
    assert (total, [r.member_address for r in page]) == (1, ["+14155550100"])
    page, total = await store.list_recordings(RecordingQuery("MA1", member_address="+14155550100"))
    assert total == 1
    page, total = await store.list_recordings(
        RecordingQuery("MA1", conference_id="c1", started_after=T0 + 2, started_before=T0 + 5)
    )
    assert [r.recording_id for r in page] == ["c1-r4", "c1-r3"]
    assert (await store.list_recordings(RecordingQuery("MA2")))[1] == 1


async def test_retention_deletes_finished_rows_by_location_never_a_recording_one(store: SqlStore) -> None:
    await store.add_recording(row(1))
    await store.add_recording(row(2))
    end = RecordingEnd("c1-r1", RecordingStatus.COMPLETED, T0 + 9, 8000, 100, "MA1/c1-r1.wav", None)
    assert await store.finish_recording(end)
    assert await store.delete_recordings_at([]) == 0
    assert await store.delete_recordings_at(["MA1/c1-r1.wav", "MA1/unknown.wav"]) == 1
    assert await store.get_recording("MA1", "c1-r1") is None
    assert await store.get_recording("MA1", "c1-r2") is not None  # still recording: never pruned


async def test_a_segment_names_the_one_before_and_rows_are_read_by_id_for_any_account(
    store: SqlStore,
) -> None:
    await store.add_recording(row(1))
    await store.add_recording(dataclasses.replace(row(2, auth_id="MA2"), previous_recording_id="c1-r1"))
    found = await store.recordings_by_id(["c1-r1", "c1-r2", "c1-r9"])
    assert sorted(found) == ["c1-r1", "c1-r2"] and found["c1-r2"].previous_recording_id == "c1-r1"
    assert found["c1-r2"].auth_id == "MA2" and await store.recordings_by_id([]) == {}


async def test_a_row_given_up_as_recorder_lost_is_recovered_by_its_node_then_settled(store: SqlStore) -> None:
    await store.add_recording(row(1))
    lost = RecordingEnd("c1-r1", RecordingStatus.FAILED, T0 + 5, None, None, None, RECORDER_LOST)
    assert await store.finish_recording(lost)
    assert [r.recording_id for r in await store.unfinished_recordings("node-a")] == ["c1-r1"]
    assert await store.unfinished_recordings("node-b") == []
    done = RecordingEnd("c1-r1", RecordingStatus.COMPLETED, T0 + 9, 4000, 64_044, "MA1/c1-r1.wav", None)
    assert await store.finish_recording(done)  # its node came back with the file
    assert await store.unfinished_recordings("node-a") == []
    assert not await store.finish_recording(lost)  # completed stays completed
    got = await store.get_recording("MA1", "c1-r1")
    assert got is not None and got.state is RecordingStatus.COMPLETED and got.location == "MA1/c1-r1.wav"
    failed = RecordingEnd("c1-r2", RecordingStatus.FAILED, T0 + 5, None, None, None, "disk full")
    await store.add_recording(row(2))
    assert await store.finish_recording(failed)
    assert not await store.finish_recording(dataclasses.replace(done, recording_id="c1-r2"))  # failed stays
