"""Who hears whom, derived from the conference state (never stored, so it cannot drift).

Rules, for every answered member:
- playing a voicemail drop: hears the message; nobody hears it;
- on hold: hears its role's hold music; nobody hears it;
- connected: hears every other connected member of its room (the main room, or the private
  room of a warm transfer). When nobody else in its room is audible it hears:
  - its role's hold music, in the main room while a warm-transfer initiator is consulting;
  - nothing, when the others in its room are on hold (whoever held them is not "waiting");
  - wait music otherwise (alone, waiting for somebody to be dialed in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridgeline.core.effects import LegAudio, SetAudio
from bridgeline.core.model import MAIN_ROOM, Member, MemberStatus, Music, TransferKind

if TYPE_CHECKING:
    from bridgeline.core.conference import Conference


@dataclass(frozen=True, slots=True)
class Listening:
    hears: tuple[str, ...]  # member addresses
    music: Music | None


def plan(conf: Conference) -> dict[str, Listening]:
    answered = [m for m in conf.members.values() if m.answered]
    rooms: dict[str, list[Member]] = {}
    for member in answered:
        rooms.setdefault(member.room, []).append(member)
    consulting_away = any(t.state.pending and t.kind is TransferKind.WARM for t in conf.transfers)
    return {m.address: _listening(m, rooms[m.room], consulting_away) for m in answered}


def _listening(member: Member, room: list[Member], consulting_away: bool) -> Listening:
    if member.playing_voicemail:
        return Listening((), Music.VOICEMAIL)
    if member.status is MemberStatus.ON_HOLD:
        return Listening((), Music.hold_for(member.role))
    talkers = tuple(o.address for o in room if o is not member and o.talking)
    if talkers:
        return Listening(talkers, None)
    if member.room == MAIN_ROOM and consulting_away:
        return Listening((), Music.hold_for(member.role))
    if any(o.status is MemberStatus.ON_HOLD for o in room if o is not member):
        return Listening((), None)
    return Listening((), Music.WAIT)


def set_audio(conf: Conference) -> SetAudio:
    legs = tuple(
        LegAudio(
            conf.members[address].leg_id,
            tuple(conf.members[h].leg_id for h in listening.hears),
            listening.music,
        )
        for address, listening in plan(conf).items()
    )
    return SetAudio(legs)
