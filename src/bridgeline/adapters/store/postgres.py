"""The PostgreSQL store: psycopg 3 async, one connection shared under a lock, explicit transactions."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from bridgeline.adapters.store import sql
from bridgeline.adapters.store.base import SqlStore, Write
from bridgeline.adapters.store.sql import Dialect, Migration, Params, Row, RowsUnchanged, StoreIntegrityError

# Any fixed 64-bit number works, as long as nothing else in the database uses it as an advisory lock key.
MIGRATION_LOCK_KEY = 0x6272_6964_6765_6C6E  # "bridgeln"


@functools.cache
def _placeholders(query: str) -> str:
    """Rewrite the shared SQL's `?` placeholders into psycopg's `%s`."""
    if "%" in query:
        raise ValueError(f"a literal % would be read as a placeholder by psycopg: {query!r}")
    return query.replace("?", "%s")


class PostgresStore(SqlStore):
    """One connection, opened on first use and reopened if it breaks, used by one transaction at a time.

    Serialising on a lock keeps this simple and is enough for one server process; a connection pool
    (psycopg-pool) is the upgrade path if the store becomes a bottleneck.
    """

    dialect: Dialect = "postgresql"

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: psycopg.AsyncConnection[tuple[Any, ...]] | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        """The live connection; callers must hold the lock."""
        if self._connection is None or self._connection.closed or self._connection.broken:
            self._connection = await psycopg.AsyncConnection.connect(self._url, autocommit=False)
        return self._connection

    async def close(self) -> None:
        async with self._lock:
            if self._connection is not None:
                await self._connection.close()
                self._connection = None

    async def _read(self, query: str, params: Params = ()) -> list[Row]:
        async with self._lock:
            connection = await self._connect()
            # A transaction block even for reads, so the connection is never left idle in a transaction.
            async with connection.transaction():
                cursor = await connection.execute(_placeholders(query), params)
                return list(await cursor.fetchall())

    async def _write(self, writes: Sequence[Write]) -> list[int]:
        async with self._lock:
            connection = await self._connect()
            counts: list[int] = []
            try:
                async with connection.transaction(), connection.cursor() as cursor:
                    for write in writes:
                        counts.append(await self._execute(cursor, write))
            except psycopg.IntegrityError as error:
                raise StoreIntegrityError(str(error)) from error
            return counts

    @staticmethod
    async def _execute(cursor: psycopg.AsyncCursor[tuple[Any, ...]], write: Write) -> int:
        if not write.rows:
            return 0
        query = _placeholders(write.sql)
        if len(write.rows) == 1:
            await cursor.execute(query, write.rows[0])
        else:
            await cursor.executemany(query, write.rows)
        changed = cursor.rowcount
        if write.required and changed != len(write.rows):
            raise RowsUnchanged(write.sql)
        return changed

    async def _write_returning(self, query: str, params: Params) -> list[Row]:
        async with self._lock:
            connection = await self._connect()
            try:
                async with connection.transaction():
                    cursor = await connection.execute(_placeholders(query), params)
                    return list(await cursor.fetchall())
            except psycopg.IntegrityError as error:
                raise StoreIntegrityError(str(error)) from error

    async def _apply_migration(self, migration: Migration) -> None:
        async with self._lock:
            connection = await self._connect()
            async with connection.transaction():
                # Held until this transaction ends: a second process migrating at the same moment waits
                # here, then sees the version recorded. Taken before CREATE TABLE IF NOT EXISTS, which
                # itself is not safe to race.
                await connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                await connection.execute(sql.CREATE_MIGRATIONS_TABLE)
                cursor = await connection.execute(_placeholders(sql.SELECT_MIGRATION), (migration.version,))
                if await cursor.fetchone() is not None:
                    return
                for statement in migration.statements:
                    await connection.execute(statement)
                await connection.execute(
                    _placeholders(sql.INSERT_MIGRATION), (migration.version, time.time())
                )
