"""Outputs of a conference: what the caller must carry out after saving the new state."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bridgeline.core.model import Event, LeaveReason, Music, Role


@dataclass(frozen=True, slots=True)
class DialLeg:
    leg_id: str
    to: str
    role: Role
    ring_timeout: float


@dataclass(frozen=True, slots=True)
class DropLeg:
    """Hang up an answered leg, or cancel one that is still ringing."""

    leg_id: str
    reason: LeaveReason


@dataclass(frozen=True, slots=True)
class PlayMessage:
    """Play the node's voicemail message into one leg; the carrier answers PlaybackFinished."""

    leg_id: str


@dataclass(frozen=True, slots=True)
class LegAudio:
    leg_id: str
    hears: tuple[str, ...]  # leg ids
    music: Music | None


@dataclass(frozen=True, slots=True)
class MusicSources:
    """What each kind of music plays in one conference: a media spec (phlo/media_spec.py's grammar),
    or None for the carrier's default. Field names are the `Music` values."""

    agent_hold: str | None = None
    customer_hold: str | None = None
    wait: str | None = None
    voicemail: str | None = None

    def spec(self, kind: Music) -> str | None:
        value: str | None = getattr(self, kind.value)
        return value


@dataclass(frozen=True, slots=True)
class SetAudio:
    """The complete audio routing of the conference's answered legs (replaces the previous one)."""

    legs: tuple[LegAudio, ...]
    # The legs the conference recording hears: the main room's talkers (core/recording.py).
    recorded: tuple[str, ...] = ()


class RecordingAction(StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class ControlRecording:
    """Start, pause, resume or stop one recording's tap and file. `leg_id`: a participant track's
    member leg, None for the conference mix. A stop is answered by `RecordingFinished`."""

    recording_id: str
    action: RecordingAction
    leg_id: str | None = None
    file_format: str = "wav"
    member: str | None = None  # a participant track's member address
    previous_recording_id: str | None = None  # the segment a START continues


@dataclass(frozen=True, slots=True)
class Publish:
    event: Event


Effect = DialLeg | DropLeg | PlayMessage | SetAudio | Publish | ControlRecording
