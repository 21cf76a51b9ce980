"""The API's actions on one member: call (add a party), hold, unhold, mute, unmute, hang up,
voicemail drop.

Apart from `conference.py`, which dispatches every input to its family's handlers and keeps the
conference's lifecycle; transfers are `transfers.py`, recordings `recording.py`, and what the
carriers report about legs `leg_signals.py`. Like those, every function here works on the
conference's `Floor`, never on the `Conference`, and checks all its preconditions before it changes
anything (a refused action leaves the floor as it was).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridgeline.core.commands import Call, Hangup, Hold, Mute, Unhold, Unmute, VoicemailDrop
from bridgeline.core.effects import PlayMessage
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import MAIN_ROOM, EventType, LeaveReason, Member, MemberStatus

if TYPE_CHECKING:
    from bridgeline.core.floor import Floor

__all__ = ["call", "hangup", "hold", "mute", "unhold", "unmute", "voicemail_drop"]


def call(floor: Floor, command: Call, now: float) -> None:
    floor.require_trigger(command.trigger_source)
    floor.require_can_add(command.to)
    floor.dial(command.to, command.role, MAIN_ROOM, now)


def hold(floor: Floor, command: Hold, now: float) -> None:
    member = floor.require_member(command.address)
    if member.status is MemberStatus.ON_HOLD:
        raise ActionRefused(f"member {member.address} is already on hold")
    _require_answered(member, "hold")
    member.status = MemberStatus.ON_HOLD
    floor.emit(now, EventType.MEMBER_HELD, floor.member_data(member))


def unhold(floor: Floor, command: Unhold, now: float) -> None:
    member = floor.require_member(command.address)
    if member.status is not MemberStatus.ON_HOLD:
        raise ActionRefused(f"member {member.address} is not on hold (status: {member.status})")
    member.status = MemberStatus.CONNECTED
    floor.emit(now, EventType.MEMBER_UNHELD, floor.member_data(member))


# Mute is a flag beside the status, not a status: a held member can be muted (it stays muted once
# unheld), a muted member can be held, moved by a transfer or voicemail-dropped. Repeats are
# refused like hold's.
def mute(floor: Floor, command: Mute, now: float) -> None:
    member = floor.require_member(command.address)
    if member.muted:
        raise ActionRefused(f"member {member.address} is already muted")
    _require_answered(member, "mute")
    member.muted = True
    floor.emit(now, EventType.MEMBER_MUTED, floor.member_data(member))


def unmute(floor: Floor, command: Unmute, now: float) -> None:
    member = floor.require_member(command.address)
    if not member.muted:
        raise ActionRefused(f"member {member.address} is not muted")
    member.muted = False
    floor.emit(now, EventType.MEMBER_UNMUTED, floor.member_data(member))


def hangup(floor: Floor, command: Hangup, now: float) -> None:
    member = floor.require_member(command.address)
    floor.member_left(member, LeaveReason.HANGUP, now, drop_leg=True)


def voicemail_drop(floor: Floor, command: VoicemailDrop, now: float) -> None:
    member = floor.require_member(command.address)
    if not floor.rules.voicemail_configured:
        raise ActionRefused("this node has no voicemail_message configured")
    _require_answered(member, "voicemail_drop")
    member.status = MemberStatus.CONNECTED
    member.playing_voicemail = True
    floor.effects.append(PlayMessage(member.leg_id))
    floor.emit(now, EventType.VOICEMAIL_STARTED, floor.member_data(member))


def _require_answered(member: Member, action: str) -> None:
    if member.status is MemberStatus.DIALING:
        raise ActionRefused(f"cannot {action} {member.address}: the member has not answered yet")
    if member.playing_voicemail:
        raise ActionRefused(f"cannot {action} {member.address}: a voicemail drop is playing")
