"""The callback outbox's SQL (the deliveries table): its columns, the statements the store's claim,
park, lease and finish run, and its records <-> rows. Apart from sql.py, which holds the rest of the
store's SQL, because the outbox is a subsystem of its own (adapters/webhooks/dispatcher.py works it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridgeline.adapters.store.sql import (
    Row,
    dump_json,
    insert_sql,
    load_json,
    select_sql,
    update_sql,
)
from bridgeline.app.records import DeliveryRecord, DeliveryStatus, NewDelivery

NEW_DELIVERY_COLUMNS = (
    "conference_id",
    "event_seq",
    "url",
    "auth_id",
    "params",
    "status",
    "attempts",
    "next_attempt_at",
    "updated_at",
    "history",
)
DELIVERY_COLUMNS = (
    "delivery_id",
    "conference_id",
    "event_seq",
    "url",
    "auth_id",
    "params",
    "status",
    "attempts",
    "next_attempt_at",
    "last_status_code",
    "last_error",
    "updated_at",
    "history",
)
# What update_delivery may change; the delivery's identity (conference, event, url, ...) is fixed.
DELIVERY_PROGRESS_COLUMNS = (
    "delivery_id",
    "status",
    "attempts",
    "next_attempt_at",
    "last_status_code",
    "last_error",
    "updated_at",
    "history",
)

INSERT_DELIVERY = insert_sql("deliveries", NEW_DELIVERY_COLUMNS)
# Only a pending delivery takes an attempt's outcome: a finished one (delivered or given up, maybe by
# another node whose claim came after ours ran out) stays as it is.
# An attempt's outcome: the delivery is no longer leased by anyone (a retry is due by its backoff).
UPDATE_DELIVERY = (
    update_sql("deliveries", DELIVERY_PROGRESS_COLUMNS, "delivery_id").replace(
        " WHERE ", ", leased_node = NULL, leased_epoch = NULL WHERE ", 1
    )
    + " AND status = 'pending'"
)
_EARLIER_PENDING = (
    "SELECT 1 FROM deliveries e WHERE e.status = 'pending' AND e.conference_id = {t}.conference_id"
    " AND e.url = {t}.url AND e.delivery_id < {t}.delivery_id"
)
# Only the head of each (conference, URL) queue: callbacks of one conference go out one at a time, in
# event order, and a delivery waiting for a retry holds back the later events of its conference.
SELECT_DUE_DELIVERIES = select_sql(
    "deliveries d",
    [f"d.{column}" for column in DELIVERY_COLUMNS],
    f"WHERE d.status = 'pending' AND d.next_attempt_at <= ? AND NOT EXISTS ({_EARLIER_PENDING.format(t='d')})"
    " ORDER BY d.delivery_id LIMIT ?",
)
# The worker's page: the most overdue pending deliveries, each with whether an earlier delivery of its
# (conference, URL) queue is still pending ("blocked": it must wait its turn). Bounded by LIMIT and served
# by deliveries_pending_due, so its cost does not grow with the outbox.
SELECT_DUE_PAGE = select_sql(
    "deliveries d",
    [*(f"d.{column}" for column in DELIVERY_COLUMNS), f"EXISTS ({_EARLIER_PENDING.format(t='d')})"],
    "WHERE d.status = 'pending' AND d.next_attempt_at <= ? ORDER BY d.next_attempt_at, d.delivery_id LIMIT ?",
)
# A blocked delivery is parked (due far in the future) until the one ahead of it finishes, so pages never
# read it again meanwhile; the EXISTS is re-checked in the same statement, so a queue head is never parked.
PARKED_AT = 1e15
PARK_DELIVERY = (
    "UPDATE deliveries SET next_attempt_at = ? WHERE delivery_id = ? AND status = 'pending'"
    f" AND EXISTS ({_EARLIER_PENDING.format(t='deliveries')})"
)
# When a delivery finishes, the next one of its queue (if parked) becomes due; same transaction.
RELEASE_NEXT_DELIVERY = (
    "UPDATE deliveries SET next_attempt_at = ? WHERE next_attempt_at >= ? AND delivery_id = ("
    "SELECT MIN(delivery_id) FROM deliveries WHERE status = 'pending' AND conference_id = ? AND url = ?)"
)
# Leases and deferrals: when the worker will look at a pending delivery again.
RESCHEDULE_DELIVERY = "UPDATE deliveries SET next_attempt_at = ? WHERE delivery_id = ? AND status = 'pending'"
# A claim's lease: not due again before the lease ends, and who holds it (node, epoch; NULL: a
# process that is no cluster node, as in some tests).
LEASE_DELIVERY = (
    "UPDATE deliveries SET next_attempt_at = ?, leased_node = ?, leased_epoch = ?"
    " WHERE delivery_id = ? AND status = 'pending'"
)
ADVANCE_DELIVERY = (
    "UPDATE deliveries SET next_attempt_at = ? WHERE delivery_id = ? AND status = 'pending'"
    " AND next_attempt_at = ?"
)
SELECT_DELIVERIES_OF_CONFERENCE = select_sql(
    "deliveries", DELIVERY_COLUMNS, "WHERE conference_id = ? ORDER BY delivery_id"
)

# Retention: a bounded batch of what may go, oldest first (served by conferences_ended, runs_finished).
# An ended conference goes with its events and deliveries, once none of its deliveries is pending.


def new_deliveries_to_rows(deliveries: Sequence[NewDelivery]) -> list[tuple[Any, ...]]:
    """The first delivery of each (conference, URL) queue in a commit is due at once (next_attempt_at 0:
    the worker posts it on its next poll); the ones behind it are inserted parked, waiting their turn."""
    seen: set[tuple[str, str]] = set()
    rows = []
    for delivery in deliveries:
        queue = (delivery.conference_id, delivery.url)
        rows.append(new_delivery_to_row(delivery, parked=queue in seen))
        seen.add(queue)
    return rows


def new_delivery_to_row(delivery: NewDelivery, *, parked: bool = False) -> tuple[Any, ...]:
    return (
        delivery.conference_id,
        delivery.event_seq,
        delivery.url,
        delivery.auth_id,
        dump_json(delivery.params),
        DeliveryStatus.PENDING.value,
        0,
        PARKED_AT if parked else 0.0,
        0.0,
        dump_json([]),
    )


def lease_rows(
    heads: Sequence[DeliveryRecord], lease_until: float, holder: tuple[str, int] | None
) -> list[tuple[Any, ...]]:
    """LEASE_DELIVERY's parameters for a claim's queue heads."""
    node, epoch = holder if holder is not None else (None, None)
    return [(lease_until, node, epoch, d.delivery_id) for d in heads]


def delivery_progress_to_row(delivery: DeliveryRecord) -> tuple[Any, ...]:
    """UPDATE_DELIVERY's parameters: the SET values, then the delivery_id for WHERE."""
    return (
        DeliveryStatus(delivery.status).value,
        delivery.attempts,
        delivery.next_attempt_at,
        delivery.last_status_code,
        delivery.last_error,
        delivery.updated_at,
        dump_json(list(delivery.history)),
        delivery.delivery_id,
    )


def delivery_from_row(row: Row) -> DeliveryRecord:
    return DeliveryRecord(
        delivery_id=int(row[0]),
        conference_id=row[1],
        event_seq=int(row[2]),
        url=row[3],
        auth_id=row[4],
        params=load_json(row[5]),
        status=DeliveryStatus(row[6]),
        attempts=int(row[7]),
        next_attempt_at=float(row[8]),
        last_status_code=None if row[9] is None else int(row[9]),
        last_error=row[10],
        updated_at=float(row[11]),
        history=tuple(load_json(row[12])),
    )
