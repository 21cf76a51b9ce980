"""JSON shapes the console page and `bridgeline calls` read: events, deliveries, conferences."""

from __future__ import annotations

from typing import Any

from bridgeline.app.records import DeliveryRecord, EventRecord
from bridgeline.app.views import conference_view, plivo_time
from bridgeline.core.conference import Conference


def event_view(event: EventRecord) -> dict[str, Any]:
    return {
        "sequence": event.seq,
        "event": event.type,
        "at": event.at,
        "timestamp": plivo_time(event.at),
        "data": event.data,
    }


def delivery_view(delivery: DeliveryRecord) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
        "sequence": delivery.event_seq,
        "event": delivery.params.get("event"),
        "url": delivery.url,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "next_attempt_at": delivery.next_attempt_at,
        "updated_at": delivery.updated_at,
    }


def conference_entry(conf: Conference, *, phlo_id: str, node_id: str, run_id: str | None) -> dict[str, Any]:
    """A conference view plus its version: the page keeps the newest view of each conference."""
    return {
        "mpc_uuid": conf.conference_id,
        "phlo_id": phlo_id,
        "node_id": node_id,
        # Events are numbered per conference, so the last sequence orders views of one conference.
        "version": conf.next_seq - 1,
        "view": conference_view(conf, phlo_id=phlo_id, node_id=node_id, run_id=run_id),
    }
