"""SQLite group commit: writes of one event-loop iteration share a transaction; callers see their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridgeline.adapters.store import SqliteStore
from bridgeline.app.records import ConferenceRecord, ConferenceStatus


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
