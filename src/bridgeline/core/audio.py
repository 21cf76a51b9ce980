"""Who hears whom, derived from the conference state (never stored, so it cannot drift).

Rules, for every answered member:
- playing a voicemail drop: hears the message; nobody hears it;
- on hold: hears its role's hold music; nobody hears it;
- muted (connected or held): heard by nobody; what it hears is unchanged;
- connected: hears every other connected, unmuted member of its room (the main room, or the
  private room of a warm transfer). When nobody else in its room is audible it hears:
  - its role's hold music, in the main room while a warm-transfer initiator is consulting;
  - nothing, when the others in its room are on hold (whoever held them is not "waiting") or
    muted (they are there, only not speaking: music would burst in on every mute);
  - wait music otherwise (alone, waiting for somebody to be dialed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridgeline.core.effects import LegAudio, SetAudio
from bridgeline.core.model import MAIN_ROOM, Member, MemberStatus, Music, TransferKind
from bridgeline.core.recording import recorded_legs

if TYPE_CHECKING:
    from bridgeline.core.conference import Conference


@dataclass(frozen=True, slots=True)
class Listening:
    hears: tuple[str, ...]  # member addresses
    music: Music | None


_ANSWERED = (MemberStatus.CONNECTED, MemberStatus.ON_HOLD)

# What a routing is computed from: each answered member (its leg id stands for its address and role,
# which never change), its status, room, voicemail and mute flags, in member order; and whether a warm
# transfer is consulting away. Equal keys give equal routings.
RoutingKey = tuple[object, ...]


def routing_key(conf: Conference) -> RoutingKey:
    key: list[object] = [
        (m.leg_id, m.status, m.room, m.playing_voicemail, m.muted)
        for m in conf.members.values()
        if m.status in _ANSWERED
    ]
    key.append(_consulting_away(conf))
    return tuple(key)


def plan(conf: Conference) -> dict[str, Listening]:
    return {
        member.address: Listening(tuple(o.address for o in heard), music)
        for member, heard, music in _routes(conf)
    }


def set_audio(conf: Conference) -> SetAudio:
    return SetAudio(
        tuple(
            LegAudio(member.leg_id, tuple(o.leg_id for o in heard), music)
            for member, heard, music in _routes(conf)
        ),
        recorded_legs([m for m in conf.members.values() if m.status in _ANSWERED]),
    )


def _consulting_away(conf: Conference) -> bool:
    return any(t.state.pending and t.kind is TransferKind.WARM for t in conf.transfers)


def _routes(conf: Conference) -> list[tuple[Member, list[Member], Music | None]]:
    """For each answered member, in member order: the members it hears and its music."""
    answered = [m for m in conf.members.values() if m.status in _ANSWERED]
    rooms: dict[str, list[Member]] = {}
    for member in answered:
        rooms.setdefault(member.room, []).append(member)
    consulting_away = _consulting_away(conf)
    return [(m, *_listening(m, rooms[m.room], consulting_away)) for m in answered]


def _listening(
    member: Member, room: list[Member], consulting_away: bool
) -> tuple[list[Member], Music | None]:
    if member.playing_voicemail:
        return [], Music.VOICEMAIL
    if member.status is MemberStatus.ON_HOLD:
        return [], Music.hold_for(member.role)
    # Member.talking, spelled out: this runs after most inputs.
    present = [
        o for o in room if o is not member and o.status is MemberStatus.CONNECTED and not o.playing_voicemail
    ]
    talkers = [o for o in present if not o.muted]
    if talkers:
        return talkers, None
    if member.room == MAIN_ROOM and consulting_away:
        return [], Music.hold_for(member.role)
    if present or any(o.status is MemberStatus.ON_HOLD for o in room if o is not member):
        return [], None
    return [], Music.WAIT
