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
This file keeps the conference's lifecycle (start, timers, the end) and dispatches each input to its
family's handlers (`_HANDLERS`): the API's member actions in `member_actions.py`, transfers in
`transfers.py` (its table in `transfer_table.py`), recordings in `recording.py`, what carriers
report about legs in `leg_signals.py`. The audio rules live in `audio.py`.

The members, transfers and queued dials, and the steps that change them (dial, take a member out,
publish an event), live in a private `Floor` (`floor.py`) that every handler is handed:
this class's public API is only its inputs and its queries (a test pins the list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from bridgeline.core import audio, leg_signals, member_actions, recording, transfers
from bridgeline.core.commands import (
    AbortTransfer,
    Call,
    ColdTransfer,
    Command,
    Hangup,
    Hold,
    LegAnswered,
    LegColdTransfer,
    LegDtmf,
    LegFailed,
    LegHungUp,
    LegMediaFailed,
    LegRinging,
    LegSignal,
    Mute,
    PauseRecording,
    PlaybackFinished,
    RecorderChanged,
    RecordingFinished,
    ResumeCall,
    ResumeRecording,
    StartRecording,
    StopRecording,
    Unhold,
    Unmute,
    VoicemailDrop,
    WarmTransfer,
)
from bridgeline.core.effects import Effect, SetAudio
from bridgeline.core.errors import ActionRefused
from bridgeline.core.floor import Floor
from bridgeline.core.model import (
    MAIN_ROOM,
    AnsweredBy,
    AnsweredParty,
    ConferencePhase,
    EndReason,
    EventType,
    LeaveReason,
    Member,
    MemberStatus,
    QueuedDial,
    Transfer,
)
from bridgeline.core.model import ConferenceRules as ConferenceRules  # where callers have always found it

# How much history a conference keeps in its state (and so in every snapshot): the newest departed
# members and finished transfers, for the API's views. Older ones are dropped (their events stay in
# the store), so the cost of an input does not grow with a long conference's churn.
MAX_DEPARTED_MEMBERS = 50
MAX_FINISHED_TRANSFERS = 50


class Conference:
    """One live multi-party call: its members, transfers, and event sequence."""

    def __init__(self, conference_id: str, rules: ConferenceRules, started_at: float) -> None:
        self._floor = Floor(conference_id, rules)
        self.started_at = started_at
        self.phase = ConferencePhase.LIVE
        self.ended_at: float | None = None
        self.end_reason: EndReason | None = None
        self._last_audio: SetAudio | None = None
        self._last_routing_key: audio.RoutingKey | None = None

    @classmethod
    def restore(
        cls,
        floor: Floor,
        started_at: float,
        phase: ConferencePhase,
        ended_at: float | None,
        end_reason: EndReason | None,
    ) -> Conference:
        """A conference as a snapshot left it (`snapshot.load`), around the floor rebuilt from it."""
        conference = cls(floor.conference_id, floor.rules, started_at)
        conference._floor = floor
        conference.phase, conference.ended_at, conference.end_reason = phase, ended_at, end_reason
        return conference

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
        floor = conference._floor
        floor.emit(now, EventType.CONFERENCE_STARTED, {})
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
            floor.members[party.address] = member
            floor.emit(now, EventType.MEMBER_CONNECTED, floor.member_data(member))
        first, rest = (dials[:1], dials[1:]) if sequential else (dials, [])
        for dial in first:
            floor.dial(dial.address, dial.role, MAIN_ROOM, now)
        floor.queued = rest
        return conference, conference._flush()

    # ----------------------------------------------------------------- queries
    @property
    def conference_id(self) -> str:
        return self._floor.conference_id

    @property
    def rules(self) -> ConferenceRules:
        return self._floor.rules

    @property
    def members(self) -> dict[str, Member]:
        """Every member ever, by address (a re-dial replaces a left one); read, do not change."""
        return self._floor.members

    @property
    def transfers(self) -> list[Transfer]:
        return self._floor.transfers

    @property
    def queued(self) -> list[QueuedDial]:
        """The dials a sequential start will place, in order."""
        return self._floor.queued

    @property
    def next_seq(self) -> int:
        """The sequence number of the next event."""
        return self._floor.next_seq

    @property
    def leg_counter(self) -> int:
        return self._floor.leg_counter

    @property
    def transfer_counter(self) -> int:
        return self._floor.transfer_counter

    @property
    def effects(self) -> list[Effect]:
        """A copy of the effects produced and not yet returned: empty between inputs, also after a
        refused one (tests check it)."""
        return list(self._floor.effects)

    @property
    def live(self) -> bool:
        return self.phase is ConferencePhase.LIVE

    def live_member(self, address: str) -> Member | None:
        return self._floor.live_member(address)

    def live_members(self) -> list[Member]:
        return self._floor.live_members()

    def member_by_leg(self, leg_id: str) -> Member | None:
        return self._floor.member_by_leg(leg_id)

    def claimed_addresses(self) -> set[str]:
        """Addresses this conference holds: live members and dials it will place."""
        return self._floor.claimed_addresses()

    def pending_transfer_by(self, initiator: str) -> Transfer | None:
        return self._floor.pending_transfer_by(initiator)

    def pending_transfer_to(self, target: str) -> Transfer | None:
        return self._floor.pending_transfer_to(target)

    def next_deadline(self) -> float | None:
        """The earliest moment `handle_timer` has something to do, or None."""
        if not self.live:
            return None
        deadlines = [self.started_at + self.rules.max_duration]
        deadlines += [m.ring_deadline for m in self.live_members() if m.ring_deadline is not None]
        return min(deadlines)

    @property
    def recordings(self) -> list[recording.Recording]:
        """Every recording of this conference, oldest first; read, do not change."""
        return self._floor.recordings

    @property
    def recording_counter(self) -> int:
        return self._floor.recording_counter

    @property
    def auto_recorded(self) -> frozenset[str]:
        """The recordings already auto-started once ("": the conference's; else member addresses)."""
        return frozenset(self._floor.auto_recorded)

    def audio_plan(self) -> dict[str, audio.Listening]:
        return audio.plan(self)

    # ----------------------------------------------------------------- inputs
    def handle(self, command: Command, now: float) -> list[Effect]:
        handler = _HANDLERS.get(type(command))
        if handler is None:
            raise TypeError(f"not a conference command: {command!r}")
        if not self.live:
            if isinstance(command, RecordingFinished):  # a file finishes after its conference
                recording.finished(self._floor, command, now)
                return self._floor.take_effects()
            if isinstance(command, LegSignal):
                return []
            raise ActionRefused("the conference has ended")
        handler(self._floor, command, now)
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
                self._floor.member_left(member, LeaveReason.NO_ANSWER, now, drop_leg=True)
        self._after_input(now)
        return self._flush()

    # ----------------------------------------------------------------- after every input
    def _after_input(self, now: float) -> None:
        if self.live:
            recording.after_input(self._floor, now)
        if self.live and not any(m.live for m in self.members.values()):
            self._end(now, EndReason.EMPTY)
        self._trim_history()

    def _trim_history(self) -> None:
        """Drop the oldest departed members and finished transfers beyond the caps; a departed member
        that a pending transfer names (a cold transfer's initiator) is kept."""
        floor = self._floor
        departed = [m for m in floor.members.values() if not m.live]
        if len(departed) > MAX_DEPARTED_MEMBERS:
            named = {a for t in floor.transfers if t.state.pending for a in (t.initiator, t.target)}
            oldest_first = sorted((m for m in departed if m.address not in named), key=_left_at)
            for member in oldest_first[: len(departed) - MAX_DEPARTED_MEMBERS]:
                del floor.members[member.address]
        finished = [t for t in floor.transfers if not t.state.pending]
        if len(finished) > MAX_FINISHED_TRANSFERS:
            dropped = {t.transfer_id for t in finished[: len(finished) - MAX_FINISHED_TRANSFERS]}
            floor.transfers = [t for t in floor.transfers if t.transfer_id not in dropped]

    def _end(self, now: float, reason: EndReason) -> None:
        floor = self._floor
        leave = LeaveReason.MAX_DURATION if reason is EndReason.MAX_DURATION else LeaveReason.CONFERENCE_ENDED
        transfers.on_conference_ended(floor, now)
        for member in floor.live_members():
            floor.member_left(member, leave, now, drop_leg=True)
        floor.queued = []
        recording.conference_ended(floor, now)
        self.phase = ConferencePhase.ENDED
        self.ended_at = now
        self.end_reason = reason
        floor.emit(now, EventType.CONFERENCE_ENDED, {"reason": reason.value})

    def _flush(self) -> list[Effect]:
        # Most inputs (a dial, a ring, a DTMF) leave the routing's inputs as they were: then the
        # routing is too, and computing it again is skipped.
        key = audio.routing_key(self)
        if key != self._last_routing_key:
            self._last_routing_key = key
            current = audio.set_audio(self)
            if current != self._last_audio:
                self._floor.effects.append(current)
                self._last_audio = current
        return self._floor.take_effects()


def _left_at(member: Member) -> float:
    return member.left_at if member.left_at is not None else 0.0


_HANDLERS: dict[type, Callable[[Floor, Any, float], None]] = {
    Call: member_actions.call,
    WarmTransfer: transfers.warm_transfer,
    ColdTransfer: transfers.cold_transfer,
    LegColdTransfer: transfers.leg_cold_transfer,
    Hold: member_actions.hold,
    Unhold: member_actions.unhold,
    Mute: member_actions.mute,
    Unmute: member_actions.unmute,
    Hangup: member_actions.hangup,
    ResumeCall: transfers.resume_call,
    VoicemailDrop: member_actions.voicemail_drop,
    AbortTransfer: transfers.abort_transfer,
    LegRinging: leg_signals.ringing,
    LegAnswered: leg_signals.answered,
    LegFailed: leg_signals.failed,
    LegHungUp: leg_signals.hung_up,
    PlaybackFinished: leg_signals.playback_finished,
    LegDtmf: leg_signals.dtmf,
    LegMediaFailed: leg_signals.media_failed,
    StartRecording: recording.handle_command,
    StopRecording: recording.handle_command,
    PauseRecording: recording.handle_command,
    ResumeRecording: recording.handle_command,
    RecordingFinished: recording.finished,
    RecorderChanged: lambda floor, _signal, now: recording.recorder_changed(floor, now),  # no fields
}
