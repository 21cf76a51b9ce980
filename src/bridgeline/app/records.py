"""What the store keeps: plain, JSON-friendly records shared by the app and every store adapter.

Times are UNIX seconds (float). `dict` fields hold JSON-serialisable data only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Account:
    auth_id: str
    auth_token: str
    created_at: float


@dataclass(frozen=True, slots=True)
class PhloRecord:
    phlo_id: str
    auth_id: str
    name: str
    definition: JSON
    created_at: float


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    phlo_id: str
    auth_id: str
    payload: JSON
    status: RunStatus
    message: str
    conference_ids: tuple[str, ...]
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a run finishes with its conference: written in the conference's last commit, so the two agree."""

    run_id: str
    status: RunStatus
    message_suffix: str  # appended to the run's message
    updated_at: float


class ConferenceStatus(StrEnum):
    LIVE = "live"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class ConferenceRecord:
    conference_id: str
    auth_id: str
    phlo_id: str
    node_id: str
    run_id: str | None
    status: ConferenceStatus
    state: JSON
    created_at: float
    updated_at: float
    ended_at: float | None = None


@dataclass(frozen=True, slots=True)
class EventRecord:
    conference_id: str
    seq: int
    type: str
    at: float
    data: JSON


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A callback to POST: one per (event, callback URL)."""

    conference_id: str
    event_seq: int
    url: str
    auth_id: str
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    delivery_id: int
    conference_id: str
    event_seq: int
    url: str
    auth_id: str
    params: dict[str, str]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float
    last_status_code: int | None = None
    last_error: str | None = None
    updated_at: float = 0.0
    history: tuple[JSON, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ClaimedPage:
    """One page of the outbox: the due deliveries that head their queue, and whether the page was full
    (more may be due: the deliveries it parked count too)."""

    heads: list[DeliveryRecord]
    full: bool


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The HTTP answer given to the first request with an Idempotency-Key, replayed as it was."""

    status_code: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """A request's claim on its account's Idempotency-Key: what it is (fingerprint), which claim it is
    (token: only it may record the answer or give the key back), and until when, unanswered, it is
    presumed still running (past `locked_until` its process is taken for dead)."""

    auth_id: str
    key: str
    fingerprint: str
    token: str
    created_at: float
    locked_until: float


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """What holds a key another request tried to claim: its request, and its answer once given."""

    fingerprint: str
    answer: StoredAnswer | None
