"""Inputs to a conference: API actions (imperative names) and signals from call legs.

Leg signals are protocol-neutral: the `sim` and `sip` carriers both translate their own
events into these, so the conference never sees a SIP message.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridgeline.core.model import AnsweredBy, LeaveReason, Role


@dataclass(frozen=True, slots=True)
class Call:
    to: str
    role: Role
    trigger_source: str


@dataclass(frozen=True, slots=True)
class WarmTransfer:
    to: str
    role: Role
    trigger_source: str


@dataclass(frozen=True, slots=True)
class ColdTransfer:
    to: str
    role: Role
    trigger_source: str


@dataclass(frozen=True, slots=True)
class Hold:
    address: str


@dataclass(frozen=True, slots=True)
class Unhold:
    address: str


@dataclass(frozen=True, slots=True)
class Mute:
    address: str


@dataclass(frozen=True, slots=True)
class Unmute:
    address: str


@dataclass(frozen=True, slots=True)
class Hangup:
    address: str


@dataclass(frozen=True, slots=True)
class ResumeCall:
    address: str


@dataclass(frozen=True, slots=True)
class VoicemailDrop:
    address: str


@dataclass(frozen=True, slots=True)
class AbortTransfer:
    address: str


@dataclass(frozen=True, slots=True)
class LegColdTransfer:
    """The party on this leg asked, from its phone (SIP REFER), that its call go to `to`: the API's
    cold transfer with this member as trigger_source, the target taking the member's role. Refused
    (ActionRefused) like the API's when the member could not transfer."""

    leg_id: str
    to: str


@dataclass(frozen=True, slots=True)
class StartRecording:
    """Start the conference recording (`member` None) or that member's participant track."""

    member: str | None = None
    file_format: str | None = None  # wav | mp3; None: the node's record_file_format


@dataclass(frozen=True, slots=True)
class StopRecording:
    member: str | None = None


@dataclass(frozen=True, slots=True)
class PauseRecording:
    member: str | None = None


@dataclass(frozen=True, slots=True)
class ResumeRecording:
    member: str | None = None


RecordingCommand = StartRecording | StopRecording | PauseRecording | ResumeRecording


@dataclass(frozen=True, slots=True)
class RecordingFinished:
    """The recording's file was closed (after a stop, the conference's end, or a failure of its
    writer or storage): `error` None means completed. Accepted after the conference has ended."""

    recording_id: str
    duration_ms: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RecorderChanged:
    """The conference was adopted by a process that does not hold its recordings' files (a restart,
    a takeover after a node died, a drain hand-off): each active recording ends as a segment and
    goes on in a new one (docs/semantics.md "Recording", "Segments")."""


MpcAction = Call | WarmTransfer | ColdTransfer
MemberAction = Hold | Unhold | Mute | Unmute | Hangup | ResumeCall | VoicemailDrop | AbortTransfer


@dataclass(frozen=True, slots=True)
class LegRinging:
    leg_id: str


@dataclass(frozen=True, slots=True)
class LegAnswered:
    leg_id: str
    answered_by: AnsweredBy = AnsweredBy.HUMAN


@dataclass(frozen=True, slots=True)
class LegFailed:
    """A dial that never connected: busy, rejected, unreachable."""

    leg_id: str
    reason: LeaveReason


@dataclass(frozen=True, slots=True)
class LegHungUp:
    """An answered call ended: the party hung up, or (`reason` FAILED) the carrier could not set
    its media up after the answer, e.g. a late-offer ACK without a usable SDP answer."""

    leg_id: str
    reason: LeaveReason = LeaveReason.REMOTE_HANGUP


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    leg_id: str


@dataclass(frozen=True, slots=True)
class LegDtmf:
    """The party pressed a key (RFC 4733 event or equivalent). The carrier relays it to the
    members that hear this one; the conference only publishes it."""

    leg_id: str
    digit: str


@dataclass(frozen=True, slots=True)
class LegMediaFailed:
    """A music or message source this leg should hear could not be used (unreadable, too big, too
    slow, not audio): the carrier plays the default instead; the conference only publishes it."""

    leg_id: str
    setting: str  # agent_hold_music, customer_hold_music, wait_music or voicemail_message
    reason: str


LegSignal = LegRinging | LegAnswered | LegFailed | LegHungUp | PlaybackFinished | LegDtmf | LegMediaFailed
Command = (
    MpcAction
    | MemberAction
    | LegSignal
    | LegColdTransfer
    | RecordingCommand
    | RecordingFinished
    | RecorderChanged
)
