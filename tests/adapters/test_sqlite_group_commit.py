"""SQLite group commit: writes of one event-loop iteration share a transaction; callers see their own."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridgeline.adapters.store import SqliteStore, sql
from bridgeline.adapters.store.base import Write
from bridgeline.app.records import ConferenceRecord, ConferenceStatus, EventRecord, RunRecord, RunStatus


def conference(conference_id: str) -> ConferenceRecord:
    return ConferenceRecord(
        conference_id, "MA1", "p", "n", None, ConferenceStatus.LIVE, {"k": 1}, 1700000000.0, 1700000000.0
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(str(tmp_path / "bl.db"))
    await opened.migrate()
    yield opened
    await opened.close()


def count_commits(store: SqliteStore) -> list[str]:
    statements: list[str] = []
    store._connection.set_trace_callback(statements.append)
    return statements


async def test_concurrent_writes_share_one_transaction(store: SqliteStore) -> None:
    statements = count_commits(store)
    await asyncio.gather(*(store.commit_conference(conference(f"c{i}")) for i in range(30)))
    assert statements.count("COMMIT") == 1
    assert len(await store.load_live_conferences()) == 30
    await store.commit_conference(conference("alone"))
    assert statements.count("COMMIT") == 2


async def test_a_write_cancelled_while_queued_writes_nothing(store: SqliteStore) -> None:
    task = asyncio.create_task(store.commit_conference(conference("c1")))
    await asyncio.sleep(0)  # the task has queued its write; the flush has not run
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.commit_conference(conference("c2"))
    assert [c.conference_id for c in await store.load_live_conferences()] == ["c2"]


async def test_a_write_committed_before_its_cancellation_reports_the_commit(store: SqliteStore) -> None:
    outcome: list[str] = []

    async def commit_then_continue() -> None:
        await store.commit_conference(conference("c1"))
        outcome.append("committed")
        await asyncio.sleep(0)
        outcome.append("not reached")

    task = asyncio.create_task(commit_then_continue())
    await asyncio.sleep(0)  # the task queued its write
    await asyncio.sleep(0)  # the flush committed it; the task has not resumed yet
    assert await store.get_conference("c1") is not None and not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["committed"]


async def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "bl.db"))
    await store.migrate()
    task = asyncio.create_task(store.commit_conference(conference("c1")))
    await asyncio.sleep(0)
    await store.close()
    await task
    reopened = SqliteStore(str(tmp_path / "bl.db"))
    assert await reopened.get_conference("c1") is not None
    await reopened.close()


class RecordingConnection:
    """The store's connection, noting each executemany (sqlite3's own objects cannot be patched)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.many: list[tuple[str, int]] = []

    def executemany(self, statement: str, rows: list[Any]) -> sqlite3.Cursor:
        self.many.append((statement.split(" (")[0], len(rows)))
        return self.connection.executemany(statement, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


async def test_identical_writes_of_a_batch_run_as_one_statement_each(store: SqliteStore) -> None:
    recording = RecordingConnection(store._connection)
    store._connection = recording  # type: ignore[assignment]
    first, second = conference("c1"), replace(conference("c1"), state={"k": 2}, updated_at=1700000001.0)
    events = [EventRecord("c1", seq, "member_held", 1700000000.0, {}) for seq in (1, 2)]
    # Same conference twice in one batch, and a new conference's events after its row: the merged
    # statements keep caller order, so the outcome is that of running the callers one by one.
    await asyncio.gather(
        store.commit_conference(first, events[:1]),
        store.commit_conference(second, events[1:]),
        *(store.commit_conference(conference(f"c{i}")) for i in range(2, 10)),
    )
    assert recording.many == [("INSERT INTO conferences", 10), ("INSERT INTO events", 2)]
    assert await store.get_conference("c1") == second
    assert [e.seq for e in await store.list_events("c1")] == [1, 2]
    assert len(await store.load_live_conferences()) == 9


async def test_a_batch_of_mixed_writes_reports_each_callers_counts(store: SqliteStore) -> None:
    run = RunRecord("r1", "p", "MA1", {}, RunStatus.RUNNING, "", (), 1.0, 1.0)
    await store.create_run(run)
    missing = replace(run, run_id="r2")
    results = await asyncio.gather(
        store.update_run(replace(run, message="updated")),
        store.update_run(missing),  # matches no row: its count must say so, though it shares a batch
        store.commit_conference(conference("c1")),
        return_exceptions=True,
    )
    assert results[0] is None and isinstance(results[1], LookupError) and results[2] is None
    stored = await store.get_run("r1")
    assert stored is not None and stored.message == "updated"


async def test_merged_writes_count_one_row_per_parameter_row(store: SqliteStore) -> None:
    writes = [
        [Write(sql.INSERT_EVENT, [("c1", seq, "t", 1.0, "{}") for seq in seqs], True)]
        for seqs in ((1, 2), (3,))
    ]
    await store.commit_conference(conference("c1"))
    counts = await asyncio.gather(*(store._write(w) for w in writes))
    assert counts == [[2], [1]]


async def test_a_thread_moves_committed_pages_into_the_database_file(
    store: SqliteStore, tmp_path: Path
) -> None:
    # The writer's own checkpoint is far off (BACKSTOP_PAGES): only the thread can do it this soon.
    await store.commit_conference(conference("c1"))
    main_file_only = f"file:{tmp_path / 'bl.db'}?immutable=1"  # reads the database file, not the WAL

    def in_main_file() -> bool:
        with contextlib.closing(sqlite3.connect(main_file_only, uri=True)) as reader:
            try:
                row = reader.execute("SELECT 1 FROM conferences WHERE conference_id = 'c1'").fetchone()
            except sqlite3.OperationalError:  # not even the schema is in the file yet
                return False
            return row is not None

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not in_main_file():
        assert loop.time() < deadline, "the committed row never reached the database file"
        await asyncio.sleep(0.02)
