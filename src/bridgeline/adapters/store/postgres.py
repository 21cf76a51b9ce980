"""The PostgreSQL store: psycopg 3 async, one connection shared under a lock, explicit transactions."""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import psycopg

from bridgeline.adapters.store import notifications, outbox_sql, sql
from bridgeline.adapters.store.base import SqlStore, Write
from bridgeline.adapters.store.sql import Dialect, Migration, Params, Row, RowsUnchanged, StoreIntegrityError
from bridgeline.app.records import ClaimedPage, ConferenceRecord, EventRecord, NewDelivery

# Any fixed 64-bit number works, as long as nothing else in the database uses it as an advisory lock key.
MIGRATION_LOCK_KEY = 0x6272_6964_6765_6C6E  # "bridgeln"
# The class of the per-queue advisory locks (the two-key form: a key space apart from the one above).
QUEUE_LOCK_CLASS = 0x6F75_7462  # "outb"

# The claim: a page of due deliveries, row-locked so that a concurrent claim (another node) skips them.
CLAIM_PAGE = outbox_sql.SELECT_DUE_PAGE + " FOR UPDATE OF d SKIP LOCKED"
# Of the blocked deliveries a claim found, those whose queue no finisher is working on right now (the
# lock is held until this transaction ends). Parking is decided after it, in a new statement.
LOCK_QUEUES = (
    "SELECT delivery_id FROM deliveries WHERE delivery_id = ANY(?)"
    f" AND pg_try_advisory_xact_lock({QUEUE_LOCK_CLASS}, hashtext(conference_id || ' ' || url))"
)
LOCK_QUEUE = f"SELECT pg_advisory_xact_lock({QUEUE_LOCK_CLASS}, hashtext(? || ' ' || ?))"
NOTIFY = "SELECT pg_notify(?, ?)"
NOTIFY_BOTH = "SELECT pg_notify(?, ?), pg_notify(?, ?)"


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
        # Signs this store's notifications, so its own process can tell them from other nodes'.
        self.origin = secrets.token_hex(8)

    @property
    def url(self) -> str:
        return self._url

    def _commit_notifications(
        self, conference: ConferenceRecord, events: Sequence[EventRecord], deliveries: Sequence[NewDelivery]
    ) -> list[Write]:
        """NOTIFY, delivered by PostgreSQL when (and only if) the commit does: the feed's and the other
        dispatchers' accelerator. Small payloads (ids and a seq range), never the events themselves."""
        seqs = [event.seq for event in events]
        payload = notifications.commit_payload(
            self.origin,
            conference.auth_id,
            conference.conference_id,
            min(seqs, default=0),
            max(seqs, default=0),
        )
        # One statement (one round trip) for both. A payload of None (too long for NOTIFY) is not sent;
        # the other nodes' polls still find the commit.
        outbox = (notifications.OUTBOX_CHANNEL, self.origin)
        events_notice = None if payload is None else (notifications.EVENTS_CHANNEL, payload)
        if events_notice is not None and deliveries:
            return [Write(NOTIFY_BOTH, [(*events_notice, *outbox)])]
        if events_notice is not None or deliveries:
            return [Write(NOTIFY, [events_notice or outbox])]
        return []

    def _queue_lock(self, conference_id: str, url: str) -> list[Write]:
        return [Write(LOCK_QUEUE, [(conference_id, url)])]

    async def claim_deliveries(
        self,
        now: float,
        limit: int = 100,
        lease_until: float | None = None,
        holder: tuple[str, int] | None = None,
    ) -> ClaimedPage:
        """The claim of several nodes at once: one transaction locks a page of due deliveries (skipping
        rows another claim holds), leases its queue heads and parks the blocked ones.

        A blocked delivery is parked only under its queue's advisory lock, which the finisher of the
        delivery ahead of it takes too (`_queue_lock`): otherwise a finish committing between the
        claim's read and its park would release nothing, and the parked delivery would wait forever.
        """
        async with self._lock:
            connection = await self._connect()
            async with connection.transaction(), connection.cursor() as cursor:
                await cursor.execute(_placeholders(CLAIM_PAGE), (float(now), limit))
                rows = list(await cursor.fetchall())
                heads = [outbox_sql.delivery_from_row(row[:-1]) for row in rows if not row[-1]]
                blocked = [row[0] for row in rows if row[-1]]
                if lease_until is not None and heads:
                    leases = outbox_sql.lease_rows(heads, lease_until, holder)
                    await cursor.executemany(_placeholders(outbox_sql.LEASE_DELIVERY), leases)
                    heads = [replace(d, next_attempt_at=lease_until) for d in heads]
                if blocked:
                    await cursor.execute(_placeholders(LOCK_QUEUES), (blocked,))
                    parkable = [(outbox_sql.PARKED_AT, row[0]) for row in await cursor.fetchall()]
                    if parkable:  # a new statement: it sees what a finisher committed before our lock
                        await cursor.executemany(_placeholders(outbox_sql.PARK_DELIVERY), parkable)
        return ClaimedPage(heads, full=len(rows) >= limit)

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
