"""The SQLite store: one file (or memory), one connection, for single-process deployments and tests."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bridgeline.adapters.store import sql
from bridgeline.adapters.store.base import SqlStore, Write
from bridgeline.adapters.store.checkpoint import BACKSTOP_PAGES, Checkpointer
from bridgeline.adapters.store.sql import Dialect, Migration, Params, Row, RowsUnchanged, StoreIntegrityError

MEMORY = ":memory:"

_Result = TypeVar("_Result")


@dataclass(slots=True)
class _QueuedWrite:
    writes: Sequence[Write]
    done: asyncio.Future[list[int]]


class SqliteStore(SqlStore):
    """Calls into sqlite3 synchronously from the async methods, on purpose.

    Each statement is a local, indexed, sub-millisecond operation; a thread hop per call would cost more
    than it saves. Because no transaction spans an await, the single connection never sees two
    interleaved transactions, so it needs no lock.

    Group commit: the writes that arrive during one event-loop iteration are queued and committed in one
    transaction at the end of it (a COMMIT is most of a small write's cost; `_execute_batch` says how the
    statements run); each caller's await returns once its own writes are committed. If that transaction
    fails, every queued write is retried in a transaction of its own, so one bad write (say, a duplicate
    event seq) fails alone.
    """

    dialect: Dialect = "sqlite"

    def __init__(self, path: str) -> None:
        if path != MEMORY:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: the module issues no implicit BEGIN/COMMIT; _write manages transactions.
        self._connection = sqlite3.connect(path, isolation_level=None)
        # WAL lets readers (e.g. an operator's sqlite3 shell) run alongside the writer; NORMAL is durable
        # across process crashes in WAL mode, and only a power loss may drop the last transactions.
        self._connection.execute("PRAGMA journal_mode = WAL")
        self._connection.execute("PRAGMA synchronous = NORMAL")
        self._connection.execute("PRAGMA foreign_keys = ON")
        self._queue: list[_QueuedWrite] = []
        self._checkpointer: Checkpointer | None = None
        if path != MEMORY:  # a memory database has no WAL
            self._connection.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
            self._checkpointer = Checkpointer(path)

    async def close(self) -> None:
        self._flush()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._connection.close()

    async def _read(self, query: str, params: Params = ()) -> list[Row]:
        return self._connection.execute(query, params).fetchall()

    async def _write(self, writes: Sequence[Write]) -> list[int]:
        loop = asyncio.get_running_loop()
        queued = _QueuedWrite(writes, loop.create_future())
        self._queue.append(queued)
        if len(self._queue) == 1:
            loop.call_soon(self._flush)
        try:
            return await queued.done
        except asyncio.CancelledError:
            if queued.done.cancelled() or queued.done.exception() is not None:
                raise  # cancelled while queued: _flush skips it, nothing was written
            # Committed before the cancellation reached this task: report the commit (the caller must
            # not take it for a failure) and let the cancellation land at the task's next await.
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            return queued.done.result()

    def _flush(self) -> None:
        queued = [q for q in self._queue if not q.done.done()]
        self._queue = []
        if not queued:
            return
        try:
            counts = self._in_transaction(functools.partial(self._execute_batch, queued))
        except Exception as error:
            # The database itself failing (locked, full, I/O) fails every write alike; anything else may
            # be one write's own fault: isolate it by giving each write a transaction of its own.
            if len(queued) == 1 or isinstance(error, sqlite3.OperationalError):
                for one in queued:
                    one.done.set_exception(error)
                return
            for one in queued:
                alone = functools.partial(self._execute_all, one.writes)
                try:
                    one.done.set_result(self._in_transaction(alone))
                except Exception as own_error:
                    one.done.set_exception(own_error)
            return
        if self._checkpointer is not None:
            self._checkpointer.committed()
        for one, its_counts in zip(queued, counts, strict=True):
            one.done.set_result(its_counts)

    def _execute_batch(self, queued: list[_QueuedWrite]) -> list[list[int]]:
        """Run a batch's writes; each caller's counts.

        When every caller wrote the same statements in the same order, each statement runs once for the
        rows of all of them (executemany), in caller order: the outcome is that of running the callers
        one after the other, for a fraction of the calls. Only writes whose rows change one row each
        are merged, so each caller's counts are still known.
        """
        shape = [write.sql for write in queued[0].writes]
        if len(queued) == 1 or not all(write.one_row_each for write in queued[0].writes):
            return [self._execute_all(q.writes) for q in queued]
        for q in queued:
            if len(q.writes) != len(shape) or any(
                not write.one_row_each or write.sql != statement
                for write, statement in zip(q.writes, shape, strict=True)
            ):
                return [self._execute_all(q.writes) for q in queued]
        for index, statement in enumerate(shape):
            rows = [row for q in queued for row in q.writes[index].rows]
            if rows:
                changed = self._connection.executemany(statement, rows).rowcount
                if queued[0].writes[index].required and changed != len(rows):
                    # Somebody's required write failed: _flush retries each caller alone to find whose.
                    raise RowsUnchanged(statement)
        return [[len(write.rows) for write in q.writes] for q in queued]

    def _execute_all(self, writes: Sequence[Write]) -> list[int]:
        return [self._execute(write) for write in writes]

    def _execute(self, write: Write) -> int:
        if not write.rows:
            return 0
        if len(write.rows) == 1:
            changed = self._connection.execute(write.sql, write.rows[0]).rowcount
        else:
            changed = self._connection.executemany(write.sql, write.rows).rowcount
        if write.required and changed != len(write.rows):
            raise RowsUnchanged(write.sql)
        return changed

    async def _write_returning(self, query: str, params: Params) -> list[Row]:
        self._flush()  # writes queued earlier commit first, in order
        return self._in_transaction(lambda: self._connection.execute(query, params).fetchall())

    async def _apply_migration(self, migration: Migration) -> None:
        def apply() -> None:
            self._connection.execute(sql.CREATE_MIGRATIONS_TABLE)
            if self._connection.execute(sql.SELECT_MIGRATION, (migration.version,)).fetchone():
                return
            for statement in migration.statements:
                self._connection.execute(statement)
            self._connection.execute(sql.INSERT_MIGRATION, (migration.version, time.time()))

        # BEGIN IMMEDIATE takes the database's write lock up front, so a second process migrating the same
        # file waits (busy timeout) and then finds the version already recorded.
        self._in_transaction(apply)

    def _in_transaction(self, work: Callable[[], _Result]) -> _Result:
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            result = work()
        except BaseException as error:
            # Some errors (e.g. a full disk) make SQLite roll back by itself.
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            if isinstance(error, sqlite3.IntegrityError):
                raise StoreIntegrityError(str(error)) from error
            raise
        self._connection.execute("COMMIT")
        return result
