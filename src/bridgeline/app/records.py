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
    # The node process that may commit it (issue #12): None for a store used without a cluster (tests).
    owner_node: str | None = None
    owner_epoch: int | None = None


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


# --- the cluster (issue #12): nodes, their leases, and who owns a live conference ------------------------


class NodeState(StrEnum):
    UP = "up"
    DRAINING = "draining"


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One `bridgeline serve` process as the store knows it. `epoch` grows by one at every start, so a
    conference owned by an earlier life of the node is told apart from one owned by the running process."""

    node_id: str
    epoch: int
    internal_url: str
    sip_address: str | None
    state: NodeState
    live_conferences: int
    live_legs: int
    started_at: float
    heartbeat_at: float
    lease_until: float  # on PostgreSQL by the database's clock


@dataclass(frozen=True, slots=True)
class AddressOwner:
    """The live conference that holds a member address, and the node that runs it now: None while the
    conference is between owners (its owner's lease lapsed, or it was handed off and not yet claimed)."""

    conference_id: str
    node: NodeRecord | None


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """What a node reports with each heartbeat: its state and how much it carries."""

    state: NodeState
    live_conferences: int
    live_legs: int


class LeaseLost(Exception):
    """A commit refused by fencing: the conference is owned by another node (or another epoch of this one),
    or this node's lease expired. Nothing was written."""


class AddressTaken(Exception):
    """A commit refused because a member address it claims is held by another live conference."""

    def __init__(self, address: str, conference_id: str | None) -> None:
        super().__init__(f"{address} is already in a live conference")
        self.address = address
        self.conference_id = conference_id


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


@dataclass(frozen=True, slots=True)
class ConferenceMark:
    """Where a conference's event log stands: what the event feed compares to what it has published.

    `key` is its creation time (live) or end time (ended): the order the feed pages through them in."""

    conference_id: str
    auth_id: str
    key: float
    last_seq: int


class RecordingStatus(StrEnum):
    """A recording row's state: written 'recording' at the start, finished once its file is closed."""

    RECORDING = "recording"
    COMPLETED = "completed"
    FAILED = "failed"


# The failure of a segment whose recorder node stayed down (app/segments.py). Its row may still be
# completed later, if that node comes back with the file: nothing on its disk is thrown away.
RECORDER_LOST = "recorder node lost"


@dataclass(frozen=True, slots=True)
class RecordingRow:
    """One recording file: the conference mix, or a member's track (`member_address`)."""

    recording_id: str
    auth_id: str
    conference_id: str
    phlo_id: str
    node_id: str
    member_address: str | None
    kind: str  # conference | participant (core/recording.py RecordingKind)
    file_format: str  # wav | mp3
    state: RecordingStatus
    started_at: float
    ended_at: float | None = None
    duration_ms: int | None = None
    size_bytes: int | None = None
    location: str | None = None  # where the storage keeps the file (its own spelling)
    failure_reason: str | None = None
    recorder_node: str = "local"  # the cluster node whose writer has the file open
    previous_recording_id: str | None = None  # the segment this one continues (docs/semantics.md)


@dataclass(frozen=True, slots=True)
class RecordingEnd:
    """How a recording row is finished."""

    recording_id: str
    state: RecordingStatus
    ended_at: float
    duration_ms: int | None
    size_bytes: int | None
    location: str | None
    failure_reason: str | None


@dataclass(frozen=True, slots=True)
class RecordingQuery:
    """A page of an account's recordings, newest first (the list API's filters)."""

    auth_id: str
    conference_id: str | None = None
    member_address: str | None = None
    started_after: float | None = None
    started_before: float | None = None
    limit: int = 20
    offset: int = 0
