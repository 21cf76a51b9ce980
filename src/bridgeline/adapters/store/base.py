"""Every store method, written once for both SQL adapters on top of the primitives each one provides."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bridgeline.adapters.store import cluster_sql, feed_sql, outbox_sql, sql
from bridgeline.adapters.store.cluster_sql import ClusterRows
from bridgeline.adapters.store.recordings_sql import RecordingRows
from bridgeline.adapters.store.sip_registrations import SipRegistrationRows
from bridgeline.adapters.store.sql import Dialect, Migration, Params, Row, RowsUnchanged
from bridgeline.app.records import (
    JSON,
    Account,
    AddressTaken,
    ClaimedPage,
    ConferenceMark,
    ConferenceRecord,
    ConferenceStatus,
    DeliveryRecord,
    DeliveryStatus,
    EventRecord,
    KeyClaim,
    KeyHolder,
    LeaseLost,
    NewDelivery,
    PhloRecord,
    RunEnd,
    RunRecord,
    StoredAnswer,
)

# A claim that lost reads the holder; a holder gone meanwhile (its key given back, or pruned) means
# the key is free again, so the claim is tried once more, a bounded number of times.
CLAIM_ATTEMPTS = 3


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
    # Every parameter row must change exactly one row, or the adapter raises RowsUnchanged (rolling back).
    required: bool = False


class SqlStore(ClusterRows, SipRegistrationRows, RecordingRows, ABC):
    """A store over a SQL database; subclasses supply connections, transactions and migration locking.

    It provides every part of the app's `Store` (app/ports.py; the cluster's `NodeLeases` and
    `ClusterDirectory` in cluster_sql.py, recordings in recordings_sql.py), the sim carrier's
    `PhoneBook` (adapters/carriers/sim/phones.py), and the SIP carrier's `DialogStore`
    (adapters/carriers/sip/recovery.py) and `RegistrationBook` (adapters/carriers/sip/
    shared_registrations.py, in sip_registrations.py), structurally: it imports none of their
    protocols.
    """

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
    async def _write_returning(self, query: str, params: Params) -> list[Row]:
        """Run one statement that changes rows and returns some (RETURNING) in a transaction of its own."""

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

    async def _write_statements(self, statements: Sequence[tuple[str, Params]]) -> list[int]:
        return await self._write([Write(query, [params]) for query, params in statements])

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

    async def get_phlo(self, auth_id: str, phlo_id: str) -> PhloRecord | None:
        row = await self._read_one(sql.SELECT_PHLO, (auth_id, phlo_id))
        return None if row is None else sql.phlo_from_row(row)

    async def list_phlos(self, auth_id: str) -> list[PhloRecord]:
        return [sql.phlo_from_row(row) for row in await self._read(sql.SELECT_PHLOS_OF_ACCOUNT, (auth_id,))]

    async def delete_phlo(self, auth_id: str, phlo_id: str) -> bool:
        return await self._write_one(sql.DELETE_PHLO, (auth_id, phlo_id)) > 0

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

    async def running_runs(self, limit: int = 1000) -> list[RunRecord]:
        """Runs still `running`, oldest first."""
        return [sql.run_from_row(row) for row in await self._read(sql.SELECT_RUNNING_RUNS, (limit,))]

    async def end_run(self, end: RunEnd) -> bool:
        """Finish a run that is still running; False if it was not (already finished, or unknown)."""
        return await self._write_one(sql.END_RUN, sql.run_end_to_row(end)) > 0

    # --- conferences and their events ---

    async def commit_conference(
        self,
        conference: ConferenceRecord,
        events: Sequence[EventRecord] = (),
        deliveries: Sequence[NewDelivery] = (),
        run_end: RunEnd | None = None,
        claimed: Sequence[str] = (),
        released: Sequence[str] = (),
    ) -> None:
        """Upsert the conference row, append its new events, queue their callbacks, (at its end) finish
        its run, and claim or release member addresses, atomically.

        A seq that already exists raises StoreIntegrityError and writes nothing: events are append-only.
        A conference with an owner is fenced (LeaseLost); a claimed address held by another live
        conference raises AddressTaken. Either way nothing is written.
        """
        c = conference
        if c.owner_node is None:
            upsert = Write(sql.UPSERT_CONFERENCE, [sql.conference_to_row(c)], True)
        else:
            fenced = cluster_sql.FENCED_UPSERT_CONFERENCE
            row = (*sql.conference_to_row(c), c.owner_node, c.owner_epoch, c.owner_node, c.owner_epoch)
            upsert = Write(
                fenced.text(self.dialect), [fenced.params(self.dialect, row, c.updated_at)], True, True
            )
        key = (c.auth_id, c.phlo_id, c.node_id)
        writes = [upsert]
        # Only when there are some, so most commits keep one shape (SQLite merges identical batches).
        if released:
            rows = [(*key, address, c.conference_id) for address in released]
            writes.append(Write(cluster_sql.RELEASE_ADDRESS, rows))
        if claimed:
            rows = [(*key, address, c.conference_id) for address in claimed]
            writes.append(Write(cluster_sql.CLAIM_ADDRESS, rows, True, True))
        writes += [
            Write(sql.INSERT_EVENT, [sql.event_to_row(event) for event in events], True),
            Write(outbox_sql.INSERT_DELIVERY, outbox_sql.new_deliveries_to_rows(deliveries), True),
        ]
        if run_end is not None:
            writes.append(Write(sql.END_RUN, [sql.run_end_to_row(run_end)]))
        writes.extend(self._commit_notifications(conference, events, deliveries))
        try:
            await self._write(writes)
        except RowsUnchanged as refused:
            if refused.statement == upsert.sql:
                raise LeaseLost(
                    f"conference {c.conference_id} is not owned by {c.owner_node} #{c.owner_epoch}"
                    " under a held lease"
                ) from None
            for address in claimed:
                holder = await self.conference_for_address(*key, address)
                if holder is not None and holder != c.conference_id:
                    raise AddressTaken(address, holder) from None
            raise AddressTaken(claimed[0] if claimed else "", None) from None

    def _commit_notifications(
        self, conference: ConferenceRecord, events: Sequence[EventRecord], deliveries: Sequence[NewDelivery]
    ) -> list[Write]:
        """What a commit tells the other processes on the same database, sent when it commits (none on
        a store only one process uses)."""
        return []

    def _queue_lock(self, conference_id: str, url: str) -> list[Write]:
        """Writes that serialise the finishing of a (conference, URL) queue's delivery with the parking
        of the one behind it, where several processes claim (none on a single-process store)."""
        return []

    async def get_conference(self, conference_id: str) -> ConferenceRecord | None:
        row = await self._read_one(sql.SELECT_CONFERENCE, (conference_id,))
        return None if row is None else sql.conference_from_row(row)

    async def list_conferences(
        self, auth_id: str, phlo_id: str, node_id: str, *, live_only: bool = False, limit: int = 100
    ) -> list[ConferenceRecord]:
        """Newest first."""
        if live_only:
            rows = await self._read(
                sql.SELECT_CONFERENCES_OF_NODE_BY_STATUS,
                (auth_id, phlo_id, node_id, ConferenceStatus.LIVE.value, limit),
            )
        else:
            rows = await self._read(sql.SELECT_CONFERENCES_OF_NODE, (auth_id, phlo_id, node_id, limit))
        return [sql.conference_from_row(row) for row in rows]

    async def load_live_conferences(self) -> list[ConferenceRecord]:
        rows = await self._read(sql.SELECT_CONFERENCES_BY_STATUS, (ConferenceStatus.LIVE.value,))
        return [sql.conference_from_row(row) for row in rows]

    async def list_events(self, conference_id: str, after_seq: int = 0) -> list[EventRecord]:
        rows = await self._read(sql.SELECT_EVENTS_AFTER, (conference_id, after_seq))
        return [sql.event_from_row(row) for row in rows]

    # --- the event feed: other processes' commits, read back (adapters/console/feed.py) ---

    async def conference_marks(
        self, *, live: bool, since: float, after: tuple[float, str], limit: int
    ) -> list[ConferenceMark]:
        """A page of live conferences (by creation; or, `live=False`, of those ended at `since` or later,
        by end), each with its last event seq, after the key `after` = (time, conference_id)."""
        query = feed_sql.SELECT_LIVE_MARKS if live else feed_sql.SELECT_ENDED_MARKS
        rows = await self._read(query, (float(since), float(after[0]), after[1], limit))
        return [ConferenceMark(row[0], row[1], float(row[2]), int(row[3])) for row in rows]

    async def events_between(
        self, conference_id: str, after_seq: int, up_to_seq: int, limit: int
    ) -> list[EventRecord]:
        """A conference's events with after_seq < seq <= up_to_seq, in order, at most `limit`."""
        rows = await self._read(feed_sql.SELECT_EVENTS_BETWEEN, (conference_id, after_seq, up_to_seq, limit))
        return [sql.event_from_row(row) for row in rows]

    # --- callback deliveries ---

    async def outbox_backlog(self, now: float) -> tuple[int, float]:
        """How many deliveries are pending, and how long ago the most overdue one was due (0 if none is)."""
        row = await self._read_one(feed_sql.SELECT_OUTBOX_BACKLOG, (float(now),))
        assert row is not None  # an aggregate always answers one row
        oldest_due = None if row[1] is None else float(row[1])
        return int(row[0]), 0.0 if oldest_due is None else max(0.0, float(now) - oldest_due)

    async def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        """Pending deliveries whose next attempt is due, oldest first."""
        rows = await self._read(outbox_sql.SELECT_DUE_DELIVERIES, (float(now), limit))
        return [outbox_sql.delivery_from_row(row) for row in rows]

    async def claim_deliveries(
        self,
        now: float,
        limit: int = 100,
        lease_until: float | None = None,
        holder: tuple[str, int] | None = None,
    ) -> ClaimedPage:
        """A bounded page of due deliveries that head their (conference, URL) queue, most overdue first,
        leased until `lease_until` (when given: nobody else claims them before it).

        The due deliveries of the page that wait behind an earlier one are parked until it finishes.
        This is the single-process claim (SQLite: one connection, no other claimer); the PostgreSQL
        store claims with row locks instead.
        """
        rows = await self._read(outbox_sql.SELECT_DUE_PAGE, (float(now), limit))
        blocked = [(outbox_sql.PARKED_AT, row[0]) for row in rows if row[-1]]
        heads = [outbox_sql.delivery_from_row(row[:-1]) for row in rows if not row[-1]]
        writes = [Write(outbox_sql.PARK_DELIVERY, blocked)]
        if lease_until is not None:
            writes.append(Write(outbox_sql.LEASE_DELIVERY, outbox_sql.lease_rows(heads, lease_until, holder)))
            heads = [replace(d, next_attempt_at=lease_until) for d in heads]
        if blocked or (heads and lease_until is not None):
            await self._write(writes)
        return ClaimedPage(heads, full=len(rows) >= limit)

    async def reschedule_deliveries(self, next_attempts: Sequence[tuple[int, float]]) -> None:
        """Set when pending deliveries are next due, as (delivery_id, time); finished ones are left alone."""
        if next_attempts:
            rows = [(at, id_) for id_, at in next_attempts]
            await self._write([Write(outbox_sql.RESCHEDULE_DELIVERY, rows)])

    async def advance_deliveries(self, moves: Sequence[tuple[int, float, float]]) -> None:
        if moves:
            rows = [(new, id_, due) for id_, due, new in moves]
            await self._write([Write(outbox_sql.ADVANCE_DELIVERY, rows)])

    async def update_delivery(self, delivery: DeliveryRecord) -> None:
        """Store an attempt's outcome; a finished delivery makes the next one of its queue due."""
        writes = self._queue_lock(delivery.conference_id, delivery.url)
        first = len(writes)
        writes.append(Write(outbox_sql.UPDATE_DELIVERY, [outbox_sql.delivery_progress_to_row(delivery)]))
        if delivery.status is not DeliveryStatus.PENDING:
            release = (0.0, outbox_sql.PARKED_AT, delivery.conference_id, delivery.url)
            writes.append(Write(outbox_sql.RELEASE_NEXT_DELIVERY, [release]))
        if (await self._write(writes))[first] == 0:
            # Unknown, or already finished (by another process, after our lease ran out): kept as it is.
            raise LookupError(f"no pending delivery {delivery.delivery_id} to update")

    async def list_deliveries(self, conference_id: str) -> list[DeliveryRecord]:
        rows = await self._read(outbox_sql.SELECT_DELIVERIES_OF_CONFERENCE, (conference_id,))
        return [outbox_sql.delivery_from_row(row) for row in rows]

    # --- retention ---

    async def prune_conferences(self, ended_before: float, limit: int) -> int:
        """Delete up to `limit` conferences ended before `ended_before` (with their events and
        deliveries; none may be pending) in one transaction; how many went."""
        rows = await self._read(sql.SELECT_PRUNABLE_CONFERENCES, (float(ended_before), limit))
        ids = [(row[0],) for row in rows]
        if not ids:
            return 0
        deletes = (
            sql.DELETE_DELIVERIES_OF_CONFERENCE,
            sql.DELETE_EVENTS_OF_CONFERENCE,
            sql.DELETE_CONFERENCE,
        )
        counts = await self._write([Write(statement, ids) for statement in deletes])
        return counts[-1]

    async def prune_runs(self, finished_before: float, limit: int) -> int:
        """Delete up to `limit` finished runs last changed before `finished_before`; how many went."""
        return await self._write_one(sql.DELETE_FINISHED_RUNS, (float(finished_before), limit))

    async def prune_idempotency_keys(self, created_before: float, limit: int) -> int:
        """Delete up to `limit` Idempotency-Keys first used before `created_before`, oldest first."""
        rows = await self._read(sql.SELECT_PRUNABLE_IDEMPOTENCY_KEYS, (float(created_before), limit))
        if not rows:
            return 0
        keys = [(auth_id, key, float(created_before)) for auth_id, key in rows]
        (count,) = await self._write([Write(sql.DELETE_IDEMPOTENCY_KEY, keys)])
        return count

    # --- Idempotency-Keys ---

    async def claim_key(self, claim: KeyClaim, expired_before: float) -> KeyHolder | None:
        """None when the key is now this claim's; else what holds it (see IdempotencyStore)."""
        row = (claim.auth_id, claim.key, claim.fingerprint, claim.token, claim.created_at, claim.locked_until)
        for _ in range(CLAIM_ATTEMPTS):
            if await self._write_one(sql.CLAIM_IDEMPOTENCY_KEY, (*row, float(expired_before))) == 1:
                return None
            held = await self._read_one(sql.SELECT_IDEMPOTENCY_KEY, (claim.auth_id, claim.key))
            if held is not None:
                fingerprint, status_code, content_type, body = held
                if status_code is None:
                    return KeyHolder(fingerprint, None)
                return KeyHolder(fingerprint, StoredAnswer(int(status_code), content_type, body.encode()))
        raise RuntimeError(f"Idempotency-Key claim kept losing to a key that vanished: {claim.key!r}")

    async def record_answer(self, claim: KeyClaim, answer: StoredAnswer) -> bool:
        """Keep the answer with the key; False if this claim no longer holds it."""
        row = (
            answer.status_code,
            answer.content_type,
            answer.body.decode(),
            claim.auth_id,
            claim.key,
            claim.token,
        )
        return await self._write_one(sql.RECORD_IDEMPOTENT_ANSWER, row) == 1

    async def release_key(self, claim: KeyClaim) -> bool:
        """Give an unanswered key back; False if this claim no longer holds it."""
        return (
            await self._write_one(sql.RELEASE_IDEMPOTENCY_KEY, (claim.auth_id, claim.key, claim.token)) == 1
        )

    # --- simulated phones: the sim carrier's PhoneBook ---

    async def put_sim_phone(self, auth_id: str, address: str, behaviour: JSON) -> None:
        await self._write_one(sql.UPSERT_SIM_PHONE, (auth_id, address, sql.dump_json(behaviour)))

    async def list_sim_phones(self) -> dict[tuple[str, str], JSON]:
        rows = await self._read(sql.SELECT_SIM_PHONES)
        return {(auth_id, address): sql.load_json(text) for auth_id, address, text in rows}

    # --- saved SIP dialogs: the SIP carrier's DialogStore ---

    async def put_sip_dialog(self, leg_id: str, conference_id: str, dialog: JSON, saved_at: float) -> None:
        row = (leg_id, conference_id, sql.dump_json(dialog), float(saved_at))
        await self._write_one(sql.UPSERT_SIP_DIALOG, row)

    async def get_sip_dialog(self, leg_id: str) -> JSON | None:
        row = await self._read_one(sql.SELECT_SIP_DIALOG, (leg_id,))
        return None if row is None else sql.load_json(row[0])

    async def list_sip_dialogs(self) -> dict[str, JSON]:
        return {leg_id: sql.load_json(text) for leg_id, text in await self._read(sql.SELECT_SIP_DIALOGS)}

    async def delete_sip_dialogs(self, leg_ids: Sequence[str]) -> None:
        if leg_ids:
            await self._write([Write(sql.DELETE_SIP_DIALOG, [(leg_id,) for leg_id in leg_ids])])
