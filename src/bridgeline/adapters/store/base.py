"""Every `Store` method, written once for both SQL adapters on top of the primitives each one provides."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from bridgeline.adapters.store import sql
from bridgeline.adapters.store.sql import Dialect, Migration, Params, Row
from bridgeline.app.records import (
    JSON,
    Account,
    ConferenceRecord,
    ConferenceStatus,
    DeliveryRecord,
    DeliveryStatus,
    EventRecord,
    NewDelivery,
    PhloRecord,
    RunRecord,
)


@dataclass(frozen=True, slots=True)
class Write:
    """One statement of a write transaction, executed once per parameter row.

    `one_row_each`: every parameter row changes exactly one row (an INSERT, or an upsert whose conflict
    updates), so an adapter may run the rows of several transactions' identical writes in one call
    and still report each one's count (len(rows)).
    """

    sql: str
    rows: Sequence[Params]
    one_row_each: bool = False


class SqlStore(ABC):
    """A `Store` over a SQL database; subclasses supply connections, transactions and migration locking."""

    dialect: Dialect

    @abstractmethod
    async def _read(self, query: str, params: Params = ()) -> list[Row]:
        """Run one SELECT and return its rows."""

    @abstractmethod
    async def _write(self, writes: Sequence[Write]) -> list[int]:
        """Run `writes` in one transaction; return each one's affected row count.

        Raises StoreIntegrityError (after rolling back) when a constraint is violated.
        """

    @abstractmethod
    async def _apply_migration(self, migration: Migration) -> None:
        """Apply `migration` in one transaction unless schema_migrations says it already was.

        Must be safe when several processes migrate the same database at once.
        """

    @abstractmethod
    async def close(self) -> None: ...

    async def migrate(self) -> None:
        for migration in sql.load_migrations(self.dialect):
            await self._apply_migration(migration)

    async def _write_one(self, query: str, params: Params) -> int:
        (count,) = await self._write([Write(query, [params])])
        return count

    async def _read_one(self, query: str, params: Params) -> Row | None:
        rows = await self._read(query, params)
        return rows[0] if rows else None

    # --- accounts and PHLOs ---

    async def put_account(self, account: Account) -> None:
        await self._write_one(sql.UPSERT_ACCOUNT, (account.auth_id, account.auth_token, account.created_at))

    async def get_account(self, auth_id: str) -> Account | None:
        row = await self._read_one(sql.SELECT_ACCOUNT, (auth_id,))
        return None if row is None else sql.account_from_row(row)

    async def delete_account(self, auth_id: str) -> bool:
        return await self._write_one(sql.DELETE_ACCOUNT, (auth_id,)) > 0

    async def create_phlo(self, phlo: PhloRecord) -> None:
        definition = sql.dump_json(phlo.definition)
        await self._write_one(
            sql.INSERT_PHLO, (phlo.phlo_id, phlo.auth_id, phlo.name, definition, phlo.created_at)
        )

    async def get_phlo(self, phlo_id: str) -> PhloRecord | None:
        row = await self._read_one(sql.SELECT_PHLO, (phlo_id,))
        return None if row is None else sql.phlo_from_row(row)

    async def list_phlos(self, auth_id: str) -> list[PhloRecord]:
        return [sql.phlo_from_row(row) for row in await self._read(sql.SELECT_PHLOS_OF_ACCOUNT, (auth_id,))]

    async def delete_phlo(self, phlo_id: str) -> bool:
        return await self._write_one(sql.DELETE_PHLO, (phlo_id,)) > 0

    # --- runs ---

    async def create_run(self, run: RunRecord) -> None:
        await self._write_one(sql.INSERT_RUN, sql.run_to_row(run))

    async def update_run(self, run: RunRecord) -> None:
        row = sql.run_to_row(run)
        # UPDATE_RUN sets every column but the key, then matches the key.
        if await self._write_one(sql.UPDATE_RUN, (*row[1:], row[0])) == 0:
            raise LookupError(f"no run {run.run_id!r} to update")

    async def get_run(self, run_id: str) -> RunRecord | None:
        row = await self._read_one(sql.SELECT_RUN, (run_id,))
        return None if row is None else sql.run_from_row(row)

    # --- conferences and their events ---

    async def commit_conference(
        self,
        conference: ConferenceRecord,
        events: Sequence[EventRecord] = (),
        deliveries: Sequence[NewDelivery] = (),
    ) -> None:
        """Upsert the conference row, append its new events and queue their callbacks, atomically.

        A seq that already exists raises StoreIntegrityError and writes nothing: events are append-only.
        """
        await self._write(
            [
                Write(sql.UPSERT_CONFERENCE, [sql.conference_to_row(conference)], True),
                Write(sql.INSERT_EVENT, [sql.event_to_row(event) for event in events], True),
                Write(sql.INSERT_DELIVERY, [sql.new_delivery_to_row(d) for d in deliveries], True),
            ]
        )

    async def get_conference(self, conference_id: str) -> ConferenceRecord | None:
        row = await self._read_one(sql.SELECT_CONFERENCE, (conference_id,))
        return None if row is None else sql.conference_from_row(row)

    async def list_conferences(
        self, phlo_id: str, node_id: str, *, live_only: bool = False, limit: int = 100
    ) -> list[ConferenceRecord]:
        """Newest first."""
        if live_only:
            rows = await self._read(
                sql.SELECT_CONFERENCES_OF_NODE_BY_STATUS,
                (phlo_id, node_id, ConferenceStatus.LIVE.value, limit),
            )
        else:
            rows = await self._read(sql.SELECT_CONFERENCES_OF_NODE, (phlo_id, node_id, limit))
        return [sql.conference_from_row(row) for row in rows]

    async def load_live_conferences(self) -> list[ConferenceRecord]:
        rows = await self._read(sql.SELECT_CONFERENCES_BY_STATUS, (ConferenceStatus.LIVE.value,))
        return [sql.conference_from_row(row) for row in rows]

    async def list_events(self, conference_id: str, after_seq: int = 0) -> list[EventRecord]:
        rows = await self._read(sql.SELECT_EVENTS_AFTER, (conference_id, after_seq))
        return [sql.event_from_row(row) for row in rows]

    # --- callback deliveries ---

    async def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        """Pending deliveries whose next attempt is due, oldest first."""
        rows = await self._read(sql.SELECT_DUE_DELIVERIES, (DeliveryStatus.PENDING.value, float(now), limit))
        return [sql.delivery_from_row(row) for row in rows]

    async def update_delivery(self, delivery: DeliveryRecord) -> None:
        if await self._write_one(sql.UPDATE_DELIVERY, sql.delivery_progress_to_row(delivery)) == 0:
            raise LookupError(f"no delivery {delivery.delivery_id} to update")

    async def list_deliveries(self, conference_id: str) -> list[DeliveryRecord]:
        rows = await self._read(sql.SELECT_DELIVERIES_OF_CONFERENCE, (conference_id,))
        return [sql.delivery_from_row(row) for row in rows]

    # --- simulated phones ---

    async def put_sim_phone(self, address: str, behaviour: JSON) -> None:
        await self._write_one(sql.UPSERT_SIM_PHONE, (address, sql.dump_json(behaviour)))

    async def list_sim_phones(self) -> dict[str, JSON]:
        return {address: sql.load_json(text) for address, text in await self._read(sql.SELECT_SIM_PHONES)}
