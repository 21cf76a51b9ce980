"""What the carriers report about a leg: ringing, answered, failed, hung up, a DTMF digit, a media
setting it fell back from, a voicemail message played to its end.

Apart from `conference.py` (the dispatch and the lifecycle) and `member_actions.py` (what the API
asks): these are facts, not requests, so none is refused. A signal for a leg the conference no
longer cares about (a dial it already cancelled, a leg that already left) is ignored: carriers and
the conference race, and the conference wins. Every function works on the conference's `Floor`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridgeline.core import transfers
from bridgeline.core.commands import (
    LegAnswered,
    LegDtmf,
    LegFailed,
    LegHungUp,
    LegMediaFailed,
    LegRinging,
    PlaybackFinished,
)
from bridgeline.core.model import DIAL_FAILURES, MAIN_ROOM, EventType, LeaveReason, Member, MemberStatus

if TYPE_CHECKING:
    from bridgeline.core.floor import Floor

__all__ = ["answered", "dtmf", "failed", "hung_up", "media_failed", "playback_finished", "ringing"]


def ringing(floor: Floor, signal: LegRinging, now: float) -> None:
    member = _dialing_member(floor, signal.leg_id)
    if member is None or member.ringing:
        return
    member.ringing = True
    floor.emit(now, EventType.MEMBER_RINGING, floor.member_data(member))


def answered(floor: Floor, signal: LegAnswered, now: float) -> None:
    member = _dialing_member(floor, signal.leg_id)
    if member is None:
        return
    member.status = MemberStatus.CONNECTED
    member.connected_at = now
    member.ring_deadline = None
    member.answered_by = signal.answered_by
    floor.emit(now, EventType.MEMBER_CONNECTED, floor.member_data(member))
    transfers.on_target_answered(floor, member, now)
    if floor.queued:
        nxt = floor.queued.pop(0)
        floor.dial(nxt.address, nxt.role, MAIN_ROOM, now)


def failed(floor: Floor, signal: LegFailed, now: float) -> None:
    member = _dialing_member(floor, signal.leg_id)
    if member is None:
        return
    reason = signal.reason if signal.reason in DIAL_FAILURES else LeaveReason.FAILED
    floor.member_left(member, reason, now, drop_leg=False)


def hung_up(floor: Floor, signal: LegHungUp, now: float) -> None:
    member = floor.member_by_leg(signal.leg_id)
    if member is None or not member.live:
        return
    if member.status is MemberStatus.DIALING:
        # A carrier that reports a hang-up before the answer means the dial failed.
        floor.member_left(member, LeaveReason.FAILED, now, drop_leg=False)
    else:
        floor.member_left(member, signal.reason, now, drop_leg=False)


def dtmf(floor: Floor, signal: LegDtmf, now: float) -> None:
    member = floor.member_by_leg(signal.leg_id)
    if member is None or not member.answered:
        return
    data = {**floor.member_data(member), "digit": signal.digit}
    floor.emit(now, EventType.MEMBER_DTMF, data)


def media_failed(floor: Floor, signal: LegMediaFailed, now: float) -> None:
    member = floor.member_by_leg(signal.leg_id)
    if member is None or not member.live:
        return
    data = {**floor.member_data(member), "setting": signal.setting, "reason": signal.reason}
    floor.emit(now, EventType.MEDIA_FALLBACK, data)


def playback_finished(floor: Floor, signal: PlaybackFinished, now: float) -> None:
    member = floor.member_by_leg(signal.leg_id)
    if member is None or not member.live or not member.playing_voicemail:
        return
    floor.member_left(member, LeaveReason.VOICEMAIL_DROPPED, now, drop_leg=True)


def _dialing_member(floor: Floor, leg_id: str) -> Member | None:
    member = floor.member_by_leg(leg_id)
    if member is None or member.status is not MemberStatus.DIALING:
        return None
    return member
