"""The conference vocabulary: enums whose values are the wire strings, and the state records.

Nothing here does I/O or reads a clock; times are UNIX seconds handed in by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAIN_ROOM = "main"


class Role(StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"


class MemberStatus(StrEnum):
    DIALING = "dialing"
    CONNECTED = "connected"
    ON_HOLD = "on_hold"
    LEFT = "left"


class Music(StrEnum):
    """What a member hears instead of (or while waiting for) other members."""

    AGENT_HOLD = "agent_hold"
    CUSTOMER_HOLD = "customer_hold"
    WAIT = "wait"
    VOICEMAIL = "voicemail"  # the node's voicemail message, played by `voicemail_drop`

    @classmethod
    def hold_for(cls, role: Role) -> Music:
        return cls.AGENT_HOLD if role is Role.AGENT else cls.CUSTOMER_HOLD


class AnsweredBy(StrEnum):
    HUMAN = "human"
    MACHINE = "machine"


class LeaveReason(StrEnum):
    HANGUP = "hangup"  # hung up through the API
    REMOTE_HANGUP = "remote_hangup"  # the party hung up
    BUSY = "busy"
    NO_ANSWER = "no_answer"  # ring timeout
    REJECTED = "rejected"
    FAILED = "failed"  # unreachable, network or carrier error
    TRANSFERRED = "transferred"  # the initiator of a completed cold transfer
    TRANSFER_ABORTED = "transfer_aborted"  # the target of an aborted transfer
    VOICEMAIL_DROPPED = "voicemail_dropped"
    MAX_DURATION = "max_duration"
    CONFERENCE_ENDED = "conference_ended"  # a dial still ringing when the conference ended


DIAL_FAILURES = frozenset({LeaveReason.BUSY, LeaveReason.NO_ANSWER, LeaveReason.REJECTED, LeaveReason.FAILED})


class TransferKind(StrEnum):
    WARM = "warm"
    COLD = "cold"


class TransferState(StrEnum):
    DIALING = "dialing"  # the target is being dialed
    CONSULTING = "consulting"  # warm only: initiator and target talk privately
    COMPLETED = "completed"
    ABORTED = "aborted"
    FAILED = "failed"

    @property
    def pending(self) -> bool:
        return self in (TransferState.DIALING, TransferState.CONSULTING)


class TransferOutcome(StrEnum):
    """How a completed transfer completed."""

    TRANSFERRED = "transferred"  # target joined the transferees, initiator gone
    BLIND = "blind"  # warm transfer whose initiator hung up before the target answered
    THREE_WAY = "three_way"  # resume_call: initiator and target both joined the main room


class ConferencePhase(StrEnum):
    LIVE = "live"
    ENDED = "ended"


class EndReason(StrEnum):
    EMPTY = "empty"  # nobody connected or being dialed
    MAX_DURATION = "max_duration"


class EventType(StrEnum):
    CONFERENCE_STARTED = "conference_started"
    CONFERENCE_ENDED = "conference_ended"
    MEMBER_DIALING = "member_dialing"
    MEMBER_RINGING = "member_ringing"
    MEMBER_CONNECTED = "member_connected"
    MEMBER_HELD = "member_held"
    MEMBER_UNHELD = "member_unheld"
    MEMBER_MUTED = "member_muted"
    MEMBER_UNMUTED = "member_unmuted"
    MEMBER_LEFT = "member_left"
    VOICEMAIL_STARTED = "voicemail_started"
    MEMBER_DTMF = "member_dtmf"
    MEDIA_FALLBACK = "media_fallback"  # a music/message setting could not be played: the default plays
    TRANSFER_STARTED = "transfer_started"
    TRANSFER_ANSWERED = "transfer_answered"
    TRANSFER_COMPLETED = "transfer_completed"
    TRANSFER_ABORTED = "transfer_aborted"
    TRANSFER_FAILED = "transfer_failed"
    # Recording events carry Plivo's own event names (core/recording.py).
    RECORDING_INITIATED = "MPCRecordingInitiated"
    RECORDING_PAUSED = "MPCRecordingPaused"
    RECORDING_RESUMED = "MPCRecordingResumed"
    RECORDING_COMPLETED = "MPCRecordingCompleted"
    RECORDING_FAILED = "MPCRecordingFailed"
    PARTICIPANT_RECORDING_INITIATED = "ParticipantRecordingInitiated"
    PARTICIPANT_RECORDING_PAUSED = "ParticipantRecordingPaused"
    PARTICIPANT_RECORDING_RESUMED = "ParticipantRecordingResumed"
    PARTICIPANT_RECORDING_COMPLETED = "ParticipantRecordingCompleted"
    PARTICIPANT_RECORDING_FAILED = "ParticipantRecordingFailed"


@dataclass(slots=True)
class Member:
    address: str
    role: Role
    leg_id: str
    status: MemberStatus
    room: str
    dialed_at: float
    ring_deadline: float | None
    connected_at: float | None = None
    left_at: float | None = None
    leave_reason: LeaveReason | None = None
    answered_by: AnsweredBy | None = None
    playing_voicemail: bool = False
    ringing: bool = False
    muted: bool = False  # heard by nobody, still hears its room; independent of hold

    @property
    def live(self) -> bool:
        return self.status is not MemberStatus.LEFT

    @property
    def answered(self) -> bool:
        return self.status in (MemberStatus.CONNECTED, MemberStatus.ON_HOLD)

    @property
    def talking(self) -> bool:
        """Heard by the others in its room."""
        return self.status is MemberStatus.CONNECTED and not self.playing_voicemail and not self.muted


@dataclass(slots=True)
class Transfer:
    transfer_id: str
    kind: TransferKind
    initiator: str
    target: str
    state: TransferState
    started_at: float
    ended_at: float | None = None
    outcome: TransferOutcome | None = None
    room: str = MAIN_ROOM  # the private consultation room of a warm transfer


@dataclass(frozen=True, slots=True)
class ConferenceRules:
    """The node settings a conference itself enforces."""

    max_participants: int = 10
    max_duration: float = 14400.0
    ring_timeout: float = 45.0
    voicemail_configured: bool = False
    record: bool = False  # record the conference (the main room's mix)
    record_participant_track: bool = False  # record each answered member's own voice
    record_file_format: str = "wav"  # wav | mp3 (core/recording.py RecordFormat)
    record_min_member_count: int = 1  # the conference recording starts once this many are on the line


@dataclass(frozen=True, slots=True)
class AnsweredParty:
    """A party already on the line when the conference starts: an inbound caller."""

    address: str
    role: Role
    leg_id: str


@dataclass(frozen=True, slots=True)
class QueuedDial:
    """A dial the conference will place once a member connects (sequential PHLO runs)."""

    address: str
    role: Role


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    type: EventType
    at: float
    data: dict[str, Any]
