"""The conference state machine.

Rules of this file:
1. `Conference.handle(command, now)` and `Conference.handle_timer(now)` are the only inputs;
   both return the effects to carry out, in order. No I/O, no clock, no randomness: ids are
   derived from the conference id and counters kept in the state.
2. Every handler checks all its preconditions before it changes anything, so a refused action
   (`ActionRefused`) leaves the conference exactly as it was.
3. Leg signals for legs the conference no longer cares about (a dial it already cancelled, a
   leg that already left) are ignored: carriers and the conference race, and the conference wins.
4. After every input the audio routing is derived from the state (again only when what it depends
   on changed); a `SetAudio` effect is emitted only when it changed.

U1 is the member that triggers an action (`trigger_source`), U3 the party being dialed.
The transfer rules live in `transfers.py` and its table `transfer_table.py`, the audio rules in `audio.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bridgeline.core import audio, transfers
from bridgeline.core.commands import (
    AbortTransfer,
    Call,
    ColdTransfer,
    Command,
    Hangup,
    Hold,
    LegAnswered,
    LegDtmf,
    LegFailed,
    LegHungUp,
    LegMediaFailed,
    LegRinging,
    LegSignal,
    PlaybackFinished,
    ResumeCall,
    Unhold,
    VoicemailDrop,
    WarmTransfer,
)
from bridgeline.core.effects import DialLeg, DropLeg, Effect, PlayMessage, Publish, SetAudio
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import (
    DIAL_FAILURES,
    MAIN_ROOM,
    AnsweredBy,
    AnsweredParty,
    ConferencePhase,
    EndReason,
    Event,
    EventType,
    LeaveReason,
    Member,
    MemberStatus,
    QueuedDial,
    Role,
    Transfer,
)

# How much history a conference keeps in its state (and so in every snapshot): the newest departed
# members and finished transfers, for the API's views. Older ones are dropped (their events stay in
# the store), so the cost of an input does not grow with a long conference's churn.
MAX_DEPARTED_MEMBERS = 50
MAX_FINISHED_TRANSFERS = 50


@dataclass(frozen=True, slots=True)
class ConferenceRules:
    """The node settings the conference itself enforces."""

    max_participants: int = 10
    max_duration: float = 14400.0
    ring_timeout: float = 45.0
    voicemail_configured: bool = False


class Conference:
    """One live multi-party call: its members, transfers, and event sequence."""

    def __init__(self, conference_id: str, rules: ConferenceRules, started_at: float) -> None:
        self.conference_id = conference_id
        self.rules = rules
        self.started_at = started_at
        self.phase = ConferencePhase.LIVE
        self.ended_at: float | None = None
        self.end_reason: EndReason | None = None
        self.members: dict[str, Member] = {}  # every member ever, by address (a re-dial replaces a left one)
        self.transfers: list[Transfer] = []
        self.queued: list[QueuedDial] = []
        self.next_seq = 1
        self.leg_counter = 0
        self.transfer_counter = 0
        self._effects: list[Effect] = []
        self._last_audio: SetAudio | None = None
        self._last_routing_key: audio.RoutingKey | None = None

    # ----------------------------------------------------------------- starting
    @classmethod
    def start(
        cls,
        conference_id: str,
        rules: ConferenceRules,
        now: float,
        dials: Iterable[QueuedDial],
        *,
        sequential: bool = True,
        answered: Iterable[AnsweredParty] = (),
    ) -> tuple[Conference, list[Effect]]:
        """Open a conference and place its first dial(s).

        Sequential: dial the first party; each following one is dialed once somebody connects
        (an agent is called first, then the customer). Parallel: dial everybody now.
        `answered` parties (inbound callers) are connected from the start; with them, a
        sequential start still dials one party at a time.
        """
        dials, answered = list(dials), list(answered)
        if not dials and not answered:
            raise ActionRefused("a conference needs at least one party")
        addresses = [d.address for d in dials] + [a.address for a in answered]
        if len(set(addresses)) != len(addresses):
            raise ActionRefused("the same address appears twice among the parties")
        if len(addresses) > rules.max_participants:
            raise ActionRefused(f"max participants ({rules.max_participants}) would be exceeded")
        conference = cls(conference_id, rules, now)
        conference.emit(now, EventType.CONFERENCE_STARTED, {})
        for party in answered:
            member = Member(
                address=party.address,
                role=party.role,
                leg_id=party.leg_id,
                status=MemberStatus.CONNECTED,
                room=MAIN_ROOM,
                dialed_at=now,
                ring_deadline=None,
                connected_at=now,
                answered_by=AnsweredBy.HUMAN,
            )
            conference.members[party.address] = member
            conference.emit(now, EventType.MEMBER_CONNECTED, conference.member_data(member))
        first, rest = (dials[:1], dials[1:]) if sequential else (dials, [])
        for dial in first:
            conference.dial(dial.address, dial.role, MAIN_ROOM, now)
        conference.queued = rest
        return conference, conference._flush()

    # ----------------------------------------------------------------- queries
    @property
    def live(self) -> bool:
        return self.phase is ConferencePhase.LIVE

    def live_member(self, address: str) -> Member | None:
        member = self.members.get(address)
        return member if member is not None and member.live else None

    def live_members(self) -> list[Member]:
        return [m for m in self.members.values() if m.live]

    def member_by_leg(self, leg_id: str) -> Member | None:
        for member in self.members.values():
            if member.leg_id == leg_id:
                return member
        return None

    def claimed_addresses(self) -> set[str]:
        """Addresses this conference holds: live members and dials it will place."""
        return {m.address for m in self.live_members()} | {q.address for q in self.queued}

    def pending_transfer_by(self, initiator: str) -> Transfer | None:
        return next((t for t in self.transfers if t.initiator == initiator and t.state.pending), None)

    def pending_transfer_to(self, target: str) -> Transfer | None:
        return next((t for t in self.transfers if t.target == target and t.state.pending), None)

    def next_deadline(self) -> float | None:
        """The earliest moment `handle_timer` has something to do, or None."""
        if not self.live:
            return None
        deadlines = [self.started_at + self.rules.max_duration]
        deadlines += [m.ring_deadline for m in self.live_members() if m.ring_deadline is not None]
        return min(deadlines)

    def audio_plan(self) -> dict[str, audio.Listening]:
        return audio.plan(self)

    # ----------------------------------------------------------------- inputs
    def handle(self, command: Command, now: float) -> list[Effect]:
        handler = _HANDLERS.get(type(command))
        if handler is None:
            raise TypeError(f"not a conference command: {command!r}")
        if not self.live:
            if isinstance(command, LegSignal):
                return []
            raise ActionRefused("the conference has ended")
        handler(self, command, now)
        self._after_input(now)
        return self._flush()

    def handle_timer(self, now: float) -> list[Effect]:
        if not self.live:
            return []
        if now >= self.started_at + self.rules.max_duration:
            self._end(now, EndReason.MAX_DURATION)
            return self._flush()
        for member in self.live_members():
            if member.ring_deadline is not None and now >= member.ring_deadline:
                self.member_left(member, LeaveReason.NO_ANSWER, now, drop_leg=True)
        self._after_input(now)
        return self._flush()

    # ----------------------------------------------------------------- API actions
    def _call(self, command: Call, now: float) -> None:
        self.require_trigger(command.trigger_source)
        self.require_can_add(command.to)
        self.dial(command.to, command.role, MAIN_ROOM, now)

    def _hold(self, command: Hold, now: float) -> None:
        member = self.require_member(command.address)
        if member.status is MemberStatus.ON_HOLD:
            raise ActionRefused(f"member {member.address} is already on hold")
        self._require_answered(member, "hold")
        member.status = MemberStatus.ON_HOLD
        self.emit(now, EventType.MEMBER_HELD, self.member_data(member))

    def _unhold(self, command: Unhold, now: float) -> None:
        member = self.require_member(command.address)
        if member.status is not MemberStatus.ON_HOLD:
            raise ActionRefused(f"member {member.address} is not on hold (status: {member.status})")
        member.status = MemberStatus.CONNECTED
        self.emit(now, EventType.MEMBER_UNHELD, self.member_data(member))

    def _hangup(self, command: Hangup, now: float) -> None:
        member = self.require_member(command.address)
        self.member_left(member, LeaveReason.HANGUP, now, drop_leg=True)

    def _voicemail_drop(self, command: VoicemailDrop, now: float) -> None:
        member = self.require_member(command.address)
        if not self.rules.voicemail_configured:
            raise ActionRefused("this node has no voicemail_message configured")
        self._require_answered(member, "voicemail_drop")
        member.status = MemberStatus.CONNECTED
        member.playing_voicemail = True
        self.effects.append(PlayMessage(member.leg_id))
        self.emit(now, EventType.VOICEMAIL_STARTED, self.member_data(member))

    # ----------------------------------------------------------------- leg signals
    def _leg_ringing(self, signal: LegRinging, now: float) -> None:
        member = self._dialing_member(signal.leg_id)
        if member is None or member.ringing:
            return
        member.ringing = True
        self.emit(now, EventType.MEMBER_RINGING, self.member_data(member))

    def _leg_answered(self, signal: LegAnswered, now: float) -> None:
        member = self._dialing_member(signal.leg_id)
        if member is None:
            return
        member.status = MemberStatus.CONNECTED
        member.connected_at = now
        member.ring_deadline = None
        member.answered_by = signal.answered_by
        self.emit(now, EventType.MEMBER_CONNECTED, self.member_data(member))
        transfers.on_target_answered(self, member, now)
        if self.queued:
            nxt = self.queued.pop(0)
            self.dial(nxt.address, nxt.role, MAIN_ROOM, now)

    def _leg_failed(self, signal: LegFailed, now: float) -> None:
        member = self._dialing_member(signal.leg_id)
        if member is None:
            return
        reason = signal.reason if signal.reason in DIAL_FAILURES else LeaveReason.FAILED
        self.member_left(member, reason, now, drop_leg=False)

    def _leg_hung_up(self, signal: LegHungUp, now: float) -> None:
        member = self.member_by_leg(signal.leg_id)
        if member is None or not member.live:
            return
        if member.status is MemberStatus.DIALING:
            # A carrier that reports a hang-up before the answer means the dial failed.
            self.member_left(member, LeaveReason.FAILED, now, drop_leg=False)
        else:
            self.member_left(member, LeaveReason.REMOTE_HANGUP, now, drop_leg=False)

    def _leg_dtmf(self, signal: LegDtmf, now: float) -> None:
        member = self.member_by_leg(signal.leg_id)
        if member is None or not member.answered:
            return
        self.emit(now, EventType.MEMBER_DTMF, {**self.member_data(member), "digit": signal.digit})

    def _leg_media_failed(self, signal: LegMediaFailed, now: float) -> None:
        member = self.member_by_leg(signal.leg_id)
        if member is None or not member.live:
            return
        data = {**self.member_data(member), "setting": signal.setting, "reason": signal.reason}
        self.emit(now, EventType.MEDIA_FALLBACK, data)

    def _playback_finished(self, signal: PlaybackFinished, now: float) -> None:
        member = self.member_by_leg(signal.leg_id)
        if member is None or not member.live or not member.playing_voicemail:
            return
        self.member_left(member, LeaveReason.VOICEMAIL_DROPPED, now, drop_leg=True)

    # ----------------------------------------------------------------- shared rules
    @property
    def effects(self) -> list[Effect]:
        return self._effects

    def require_member(self, address: str) -> Member:
        member = self.live_member(address)
        if member is None:
            raise ActionRefused(f"{address} is not a member of this conference")
        return member

    def require_trigger(self, address: str) -> Member:
        member = self.live_member(address)
        if member is None:
            raise ActionRefused(f"trigger_source {address} is not in a live conference of this node")
        if member.status is MemberStatus.DIALING:
            raise ActionRefused(f"trigger_source {address} has not answered yet")
        return member

    def require_can_add(self, address: str) -> None:
        if address in self.claimed_addresses():
            raise ActionRefused(f"{address} is already a member of this conference")
        if self.pending_transfer_by(address) is not None:
            # A cold transfer outlives its initiator's leg; a new leg at that address would be taken for it.
            raise ActionRefused(f"{address} left a transfer that is still in progress")
        if len(self.claimed_addresses()) >= self.rules.max_participants:
            raise ActionRefused(f"max participants ({self.rules.max_participants}) reached")

    @staticmethod
    def _require_answered(member: Member, action: str) -> None:
        if member.status is MemberStatus.DIALING:
            raise ActionRefused(f"cannot {action} {member.address}: the member has not answered yet")
        if member.playing_voicemail:
            raise ActionRefused(f"cannot {action} {member.address}: a voicemail drop is playing")

    def _dialing_member(self, leg_id: str) -> Member | None:
        member = self.member_by_leg(leg_id)
        if member is None or member.status is not MemberStatus.DIALING:
            return None
        return member

    def new_transfer_id(self) -> str:
        self.transfer_counter += 1
        return f"{self.conference_id}-t{self.transfer_counter}"

    def dial(self, address: str, role: Role, room: str, now: float) -> Member:
        self.leg_counter += 1
        member = Member(
            address=address,
            role=role,
            leg_id=f"{self.conference_id}-l{self.leg_counter}",
            status=MemberStatus.DIALING,
            room=room,
            dialed_at=now,
            ring_deadline=now + self.rules.ring_timeout,
        )
        self.members[address] = member
        self.effects.append(DialLeg(member.leg_id, address, role, self.rules.ring_timeout))
        self.emit(now, EventType.MEMBER_DIALING, self.member_data(member))
        return member

    def member_left(self, member: Member, reason: LeaveReason, now: float, *, drop_leg: bool) -> None:
        """Take a member out, then let pending transfers react to its departure."""
        if drop_leg:
            self.effects.append(DropLeg(member.leg_id, reason))
        member.status = MemberStatus.LEFT
        member.left_at = now
        member.leave_reason = reason
        member.ring_deadline = None
        member.playing_voicemail = False
        self.emit(now, EventType.MEMBER_LEFT, self.member_data(member))
        transfers.on_member_left(self, member, reason, now)

    def _after_input(self, now: float) -> None:
        if self.live and not any(m.live for m in self.members.values()):
            self._end(now, EndReason.EMPTY)
        self._trim_history()

    def _trim_history(self) -> None:
        """Drop the oldest departed members and finished transfers beyond the caps; a departed member
        that a pending transfer names (a cold transfer's initiator) is kept."""
        departed = [m for m in self.members.values() if not m.live]
        if len(departed) > MAX_DEPARTED_MEMBERS:
            named = {a for t in self.transfers if t.state.pending for a in (t.initiator, t.target)}
            oldest_first = sorted((m for m in departed if m.address not in named), key=_left_at)
            for member in oldest_first[: len(departed) - MAX_DEPARTED_MEMBERS]:
                del self.members[member.address]
        finished = [t for t in self.transfers if not t.state.pending]
        if len(finished) > MAX_FINISHED_TRANSFERS:
            dropped = {t.transfer_id for t in finished[: len(finished) - MAX_FINISHED_TRANSFERS]}
            self.transfers = [t for t in self.transfers if t.transfer_id not in dropped]

    def _end(self, now: float, reason: EndReason) -> None:
        leave = LeaveReason.MAX_DURATION if reason is EndReason.MAX_DURATION else LeaveReason.CONFERENCE_ENDED
        transfers.on_conference_ended(self, now)
        for member in self.live_members():
            self.member_left(member, leave, now, drop_leg=True)
        self.queued = []
        self.phase = ConferencePhase.ENDED
        self.ended_at = now
        self.end_reason = reason
        self.emit(now, EventType.CONFERENCE_ENDED, {"reason": reason.value})

    def member_data(self, member: Member) -> dict[str, Any]:
        data: dict[str, Any] = {
            "member_address": member.address,
            "role": member.role.value,
            "status": member.status.value,
            "leg_id": member.leg_id,
        }
        if member.leave_reason is not None:
            data["reason"] = member.leave_reason.value
        if member.answered_by is not None:
            data["answered_by"] = member.answered_by.value
        return data

    def emit(self, now: float, type_: EventType, data: dict[str, Any]) -> None:
        self.effects.append(Publish(Event(self.next_seq, type_, now, data)))
        self.next_seq += 1

    def _flush(self) -> list[Effect]:
        # Most inputs (a dial, a ring, a DTMF) leave the routing's inputs as they were: then the
        # routing is too, and computing it again is skipped.
        key = audio.routing_key(self)
        if key != self._last_routing_key:
            self._last_routing_key = key
            current = audio.set_audio(self)
            if current != self._last_audio:
                self._effects.append(current)
                self._last_audio = current
        effects, self._effects = self._effects, []
        return effects


def _left_at(member: Member) -> float:
    return member.left_at if member.left_at is not None else 0.0


_HANDLERS: dict[type, Callable[[Conference, Any, float], None]] = {
    Call: Conference._call,
    WarmTransfer: transfers.warm_transfer,
    ColdTransfer: transfers.cold_transfer,
    Hold: Conference._hold,
    Unhold: Conference._unhold,
    Hangup: Conference._hangup,
    ResumeCall: transfers.resume_call,
    VoicemailDrop: Conference._voicemail_drop,
    AbortTransfer: transfers.abort_transfer,
    LegRinging: Conference._leg_ringing,
    LegAnswered: Conference._leg_answered,
    LegFailed: Conference._leg_failed,
    LegHungUp: Conference._leg_hung_up,
    PlaybackFinished: Conference._playback_finished,
    LegDtmf: Conference._leg_dtmf,
    LegMediaFailed: Conference._leg_media_failed,
}
