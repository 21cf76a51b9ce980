"""The ports: what the application needs from the outside world, as typing.Protocols.

Adapters (stores, carriers, event sinks) implement these; only `main/` chooses which. The store
is split by concern, so each consumer names only the part it uses (the conference service cannot
touch accounts, the webhook dispatcher sees only the outbox); the SQL stores implement every part,
and `Store` gathers them for the wiring. What an adapter needs for itself (the sim carrier's phone
book) is declared by that adapter, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bridgeline.app.records import (
    Account,
    AddressOwner,
    ClaimedPage,
    ConferenceRecord,
    DeliveryRecord,
    EventRecord,
    KeyClaim,
    KeyHolder,
    NewDelivery,
    NodeLoad,
    NodeRecord,
    PhloRecord,
    RecordingEnd,
    RecordingQuery,
    RecordingRow,
    RunEnd,
    RunRecord,
    StoredAnswer,
)
from bridgeline.core.commands import LegSignal
from bridgeline.core.effects import MusicSources, SetAudio
from bridgeline.core.model import LeaveReason, Role

# --- the store, by concern: every method is one transaction ---------------------------------------------


@runtime_checkable
class StoreLifecycle(Protocol):
    """Opening the schema and letting go of the connection: the process's start and end."""

    async def migrate(self) -> None: ...
    async def close(self) -> None: ...


@runtime_checkable
class AccountStore(Protocol):
    """API credentials: the authenticator reads them, `bridgeline account` manages them."""

    async def put_account(self, account: Account) -> None: ...
    async def get_account(self, auth_id: str) -> Account | None: ...
    async def delete_account(self, auth_id: str) -> bool: ...


@runtime_checkable
class PhloStore(Protocol):
    """PHLO definitions, per account; never changed in place (the PhloCache relies on it)."""

    async def create_phlo(self, phlo: PhloRecord) -> None: ...
    async def get_phlo(self, auth_id: str, phlo_id: str) -> PhloRecord | None: ...
    async def list_phlos(self, auth_id: str) -> list[PhloRecord]: ...
    async def delete_phlo(self, auth_id: str, phlo_id: str) -> bool: ...


@runtime_checkable
class RunStore(Protocol):
    """PHLO runs. A run's end is normally written by its conference's last commit (ConferenceStore)."""

    async def create_run(self, run: RunRecord) -> None: ...
    async def update_run(self, run: RunRecord) -> None: ...
    async def get_run(self, run_id: str) -> RunRecord | None: ...
    async def running_runs(self, limit: int = 1000) -> list[RunRecord]: ...
    async def end_run(self, end: RunEnd) -> bool:
        """Finish a run that is still running; False if it was not."""
        ...


@runtime_checkable
class ConferenceStore(Protocol):
    """The live conferences' snapshots, written and reloaded only by the conference service."""

    async def commit_conference(
        self,
        conference: ConferenceRecord,
        events: Sequence[EventRecord] = (),
        deliveries: Sequence[NewDelivery] = (),
        run_end: RunEnd | None = None,
        claimed: Sequence[str] = (),
        released: Sequence[str] = (),
    ) -> None:
        """Upsert the conference row, append its events, queue their callbacks, finish its run, claim and
        release member addresses: atomically.

        A record with an owner is fenced: LeaseLost unless the row's owner is (owner_node, owner_epoch)
        and that node's lease holds; AddressTaken if another live conference holds a claimed address.
        """
        ...

    async def load_live_conferences(self) -> list[ConferenceRecord]: ...


@runtime_checkable
class ConferenceHistory(Protocol):
    """Reading what conferences did: their last snapshots, events and callback deliveries."""

    async def get_conference(self, conference_id: str) -> ConferenceRecord | None: ...
    async def list_conferences(
        self, auth_id: str, phlo_id: str, node_id: str, *, live_only: bool = False, limit: int = 100
    ) -> list[ConferenceRecord]:
        """Newest first."""
        ...

    async def list_events(self, conference_id: str, after_seq: int = 0) -> list[EventRecord]: ...
    async def list_deliveries(self, conference_id: str) -> list[DeliveryRecord]: ...


@runtime_checkable
class DeliveryOutbox(Protocol):
    """The callback outbox (rows queued by `commit_conference`), worked by the webhook dispatcher."""

    async def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        """Due pending deliveries heading their conference's queue (no earlier pending one), oldest first."""
        ...

    async def claim_deliveries(
        self,
        now: float,
        limit: int = 100,
        lease_until: float | None = None,
        holder: tuple[str, int] | None = None,
    ) -> ClaimedPage:
        """A bounded page of due queue heads, most overdue first (blocked ones are parked meanwhile),
        leased until `lease_until` in the same transaction: no other claim returns them before it.
        `holder` (node id, epoch) is the claiming node's life: once its node lease ends,
        `NodeLeases.release_dead_leases` makes what it still holds due again."""
        ...

    async def outbox_backlog(self, now: float) -> tuple[int, float]:
        """(pending deliveries, seconds the most overdue one has been due): for /metrics."""
        ...

    async def reschedule_deliveries(self, next_attempts: Sequence[tuple[int, float]]) -> None:
        """(delivery_id, time): when each pending delivery is next due (a lease or a deferral)."""
        ...

    async def advance_deliveries(self, moves: Sequence[tuple[int, float, float]]) -> None:
        """(delivery_id, due_at, new_at): due at new_at instead, only where the delivery is still pending and
        still due at due_at (not leased or moved by another claim meanwhile)."""
        ...

    async def update_delivery(self, delivery: DeliveryRecord) -> None:
        """Store an attempt's outcome; once finished, the next delivery of its queue becomes due.

        Raises LookupError if the delivery is not pending (unknown, or finished already)."""
        ...


@runtime_checkable
class RetentionStore(Protocol):
    """Deleting what is past its retention, a small batch per call."""

    async def prune_conferences(self, ended_before: float, limit: int) -> int:
        """Delete a batch of ended conferences (events and finished deliveries with them); how many."""
        ...

    async def prune_runs(self, finished_before: float, limit: int) -> int:
        """Delete a batch of finished runs; how many."""
        ...

    async def prune_idempotency_keys(self, created_before: float, limit: int) -> int:
        """Delete a batch of Idempotency-Keys first used before `created_before`; how many."""
        ...


@runtime_checkable
class IdempotencyStore(Protocol):
    """Idempotency-Keys of POST requests, per account (the HTTP edge's safe retries).

    A key is claimed before its request runs, so that of two requests with one key, in one process or
    several, exactly one runs; then the claim records the answer (replayed to every retry) or gives the
    key back (the request changed nothing: a retry may run it for real).
    """

    async def claim_key(self, claim: KeyClaim, expired_before: float) -> KeyHolder | None:
        """None when the key is now this claim's: unknown, first used before `expired_before`, or held by
        an unanswered claim of the same request past its `locked_until`. Else what holds it."""
        ...

    async def record_answer(self, claim: KeyClaim, answer: StoredAnswer) -> bool:
        """Keep the answer with the key; False if this claim no longer holds it."""
        ...

    async def release_key(self, claim: KeyClaim) -> bool:
        """Give an unanswered key back; False if this claim no longer holds it."""
        ...


@runtime_checkable
class NodeLeases(Protocol):
    """Node registration, lease renewal and conference ownership, for the cluster loop (app/cluster.py).

    `now` is the caller's clock; PostgreSQL ignores it and judges leases by the database's clock.
    """

    async def register_node(
        self, node_id: str, internal_url: str, sip_address: str | None, lease_s: float, now: float
    ) -> NodeRecord:
        """Start a new life of the node: epoch + 1, state up, lease from now."""
        ...

    async def renew_node(self, node_id: str, epoch: int, lease_s: float, load: NodeLoad, now: float) -> bool:
        """Extend the lease of this epoch; False if it had expired or a newer epoch registered."""
        ...

    async def count_orphans(self, node_id: str, epoch: int, now: float) -> int:
        """Live conferences this node may claim (owner gone, expired, an older epoch, or handed to it)."""
        ...

    async def claim_conferences(
        self, node_id: str, epoch: int, limit: int, now: float
    ) -> list[ConferenceRecord]:
        """Take up to `limit` of them (owner := this node and epoch, while its lease holds)."""
        ...

    async def hand_off_conference(
        self, conference_id: str, node_id: str, epoch: int, to_node: str, now: float
    ) -> bool:
        """Give a conference this node owns to `to_node`, which claims it on its next scan."""
        ...

    async def leave_cluster(self, node_id: str, epoch: int) -> None:
        """End this epoch's lease now: what it still owns becomes claimable at once."""
        ...

    async def release_dead_leases(self, now: float) -> int:
        """Make due (at `now`) the pending deliveries leased by a node life whose lease has ended: a
        node that died while posting callbacks holds back its conferences' later ones only until its
        node lease ends. How many."""
        ...


@runtime_checkable
class ClusterDirectory(Protocol):
    """Who is up and who owns what: the read side request forwarding relies on."""

    async def live_nodes(self) -> list[NodeRecord]:
        """Nodes whose lease holds, by node_id."""
        ...

    async def address_owner(
        self, auth_id: str, phlo_id: str, node_id: str, address: str
    ) -> AddressOwner | None:
        """The live conference of this PHLO node that holds the member address (on any cluster node) and
        the node whose current epoch owns it under a held lease, in one read; None when no conference
        holds the address."""
        ...


@runtime_checkable
class RecordingStore(Protocol):
    """Recording rows (issue #13): written by the recording manager, read by the recordings API."""

    async def add_recording(self, row: RecordingRow) -> None: ...
    async def finish_recording(self, end: RecordingEnd) -> bool:
        """Finish a row still 'recording' (or failed as RECORDER_LOST); False if it was already finished
        (or is unknown)."""
        ...

    async def unfinished_recordings(self, node_id: str) -> list[RecordingRow]:
        """Rows left 'recording' (by a crash) of conferences this node recorded, and those failed as
        RECORDER_LOST while it was down."""
        ...

    async def recordings_by_id(self, recording_ids: Sequence[str]) -> dict[str, RecordingRow]:
        """Rows by id, whatever their account (the segment sweep: the server's own bookkeeping)."""
        ...

    async def get_recording(self, auth_id: str, recording_id: str) -> RecordingRow | None:
        """The account's own recording only: another account's is None."""
        ...

    async def list_recordings(self, query: RecordingQuery) -> tuple[list[RecordingRow], int]:
        """A page and the total count matching the filters."""
        ...

    async def delete_recording(self, auth_id: str, recording_id: str) -> bool: ...
    async def delete_recordings_at(self, locations: Sequence[str]) -> int:
        """Retention: the finished rows whose files were deleted; how many."""
        ...


@runtime_checkable
class Store(
    StoreLifecycle,
    AccountStore,
    PhloStore,
    RunStore,
    ConferenceStore,
    ConferenceHistory,
    DeliveryOutbox,
    RetentionStore,
    NodeLeases,
    ClusterDirectory,
    IdempotencyStore,
    RecordingStore,
    Protocol,
):
    """Every part at once: what a store adapter provides and `main/` wires; no consumer takes it."""


# --- recording files ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedFile:
    """A finished recording file, where its storage keeps it."""

    location: str
    size_bytes: int
    duration_ms: int


FileFinished = Callable[[str, RecordedFile | None, str | None], None]
"""(recording_id, the file or None, the failure reason or None): called on any thread."""


class RecordingFiles(Protocol):
    """Writes recordings' files off the event loop and the media tick (adapters/recordings)."""

    def bind(self, finished: FileFinished) -> None: ...
    def open(self, auth_id: str, recording_id: str, file_format: str) -> None:
        """Start a file; ValueError (the reason) if it cannot be."""
        ...

    def write(self, recording_id: str, pcm: bytes) -> None:
        """Queue 8 kHz mono int16 PCM; never blocks (a full queue fails the recording)."""
        ...

    def close(self, recording_id: str) -> None:
        """Finish the file; `finished` follows, once."""
        ...

    async def recover(self, auth_id: str, recording_id: str, file_format: str) -> RecordedFile:
        """The file a crash left open, repaired and stored; ValueError (the reason) if it cannot be."""
        ...


# --- the carrier ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegRequest:
    """Everything a carrier needs to place (or restore) one call leg."""

    conference_id: str
    leg_id: str
    to: str
    role: Role
    caller_id: str | None
    ring_timeout: float
    # The account whose conference places the leg: the sim carrier's phones are per account.
    auth_id: str = ""


SignalSink = Callable[[str, LegSignal], None]
"""Carriers report leg signals as (conference_id, signal); the call must not block."""


RecordingSink = Callable[[str, bytes], None]
"""A recording's audio as (recording_id, 8 kHz mono int16 little-endian PCM: one or more 20 ms frames),
in order; the call must not block (the SIP carrier calls it from its media thread, in chunks of up to
200 ms)."""


class Carrier(Protocol):
    """Places calls and moves audio. Methods return at once; outcomes come back as signals."""

    name: str

    def bind(self, sink: SignalSink) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    def dial(self, request: LegRequest) -> None: ...
    def drop(self, leg_id: str, reason: LeaveReason) -> None: ...
    def play(self, leg_id: str, media: str | None) -> None: ...
    def set_audio(self, conference_id: str, audio: SetAudio, music: MusicSources) -> None: ...
    def restore(self, request: LegRequest, *, answered: bool) -> None:
        """Take back a leg that was live before a restart (or report it gone)."""
        ...

    def start_recording(
        self, conference_id: str, recording_id: str, leg_id: str | None, sink: RecordingSink
    ) -> None:
        """Tap the conference's recorded mix (`SetAudio.recorded`), or one leg's voice, into `sink`
        every 20 ms until stop_recording."""
        ...

    def stop_recording(self, recording_id: str) -> None: ...
    def flush_recording(self, recording_id: str, then: Callable[[], None]) -> None:
        """Hand the tap's audio up to now to its sink, then call `then` (on any thread): what follows
        reaches the sink after `then` (a pause, resume or stop takes effect at that boundary; after
        stop_recording, nothing follows)."""
        ...

    def conference_ended(self, conference_id: str) -> None: ...
    def release_conference(self, conference_id: str) -> None:
        """Forget the conference's legs without hanging them up: another node owns them now."""
        ...
