"""Outputs of a conference: what the caller must carry out after saving the new state."""

from __future__ import annotations

from dataclasses import dataclass

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
class SetAudio:
    """The complete audio routing of the conference's answered legs (replaces the previous one)."""

    legs: tuple[LegAudio, ...]


@dataclass(frozen=True, slots=True)
class Publish:
    event: Event


Effect = DialLeg | DropLeg | PlayMessage | SetAudio | Publish
