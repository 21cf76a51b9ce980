"""Random API actions, leg signals and timers: the conference invariants hold after every step."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bridgeline.core import audio, snapshot
from bridgeline.core.commands import (
    AbortTransfer,
    Call,
    ColdTransfer,
    Command,
    Hangup,
    Hold,
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegRinging,
    Mute,
    PlaybackFinished,
    ResumeCall,
    Unhold,
    Unmute,
    VoicemailDrop,
    WarmTransfer,
)
from bridgeline.core.conference import Conference, ConferenceRules
from bridgeline.core.effects import DialLeg, DropLeg, Effect, Publish, SetAudio
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import (
    MAIN_ROOM,
    AnsweredBy,
    EndReason,
    EventType,
    LeaveReason,
    MemberStatus,
    Music,
    QueuedDial,
    Role,
    TransferKind,
    TransferState,
)

ADDRESSES = ["a1", "a2", "c1", "c2", "c3"]
addresses = st.sampled_from(ADDRESSES)
roles = st.sampled_from(list(Role))
NEW_PARTY = (Call, WarmTransfer, ColdTransfer)
ON_MEMBER = (Hold, Unhold, Mute, Unmute, Hangup, ResumeCall, VoicemailDrop, AbortTransfer)
# Weighted towards answers, so that conferences live long enough to get interesting.
SIGNALS = (LegRinging, LegAnswered, LegAnswered, LegAnswered, LegFailed, LegHungUp, PlaybackFinished)
# Leaves the carrier reports itself: the conference must not drop those legs again.
REMOTE_LEAVES = (LegFailed, LegHungUp)


conference_settings = st.fixed_dictionaries(
    {
        "parties": st.lists(st.tuples(addresses, roles), min_size=1, max_size=3, unique_by=lambda p: p[0]),
        "sequential": st.booleans(),
        "answer_all": st.booleans(),
        "rules": st.builds(
            ConferenceRules,
            max_participants=st.integers(2, 5),
            max_duration=st.sampled_from([150.0, 600.0]),
            ring_timeout=st.sampled_from([20.0, 45.0]),
            voicemail_configured=st.booleans(),
        ),
    }
)


class ConferenceMachine(RuleBasedStateMachine):
    conf: Conference

    @initialize(setup=conference_settings)
    def first_conference(self, setup: dict[str, Any]) -> None:
        self.now = 0.0
        self.begin(**setup)

    @precondition(lambda self: not self.conf.live)
    @rule(setup=conference_settings, poke=st.sampled_from([Hold("a1"), Call("a2", Role.AGENT, "a1")]))
    def next_conference(self, setup: dict[str, Any], poke: Command) -> None:
        """An ended conference refuses actions and ignores signals and timers; then start another one."""
        before = snapshot.dump(self.conf)
        for leg in self.legs:
            assert self.conf.handle(LegAnswered(leg), self.now) == []
            assert self.conf.handle(LegHungUp(leg), self.now) == []
        assert self.conf.handle_timer(self.now + 1e6) == []
        self.apply(poke)
        assert snapshot.dump(self.conf) == before
        self.begin(**setup)

    def begin(
        self, parties: list[tuple[str, Role]], sequential: bool, answer_all: bool, rules: ConferenceRules
    ) -> None:
        self.next_seq = 1
        self.legs: list[str] = []  # every leg ever dialed
        self.dropped: set[str] = set()
        self.live_legs: dict[str, str] = {}  # leg -> address, kept from the published events
        self.initiator_legs: dict[str, str] = {}  # transfer id -> the initiator's leg when it started
        self.seen_status: dict[str, str] = {}  # leg -> member status, from the events
        self.seen_state: dict[str, str] = {}  # transfer id -> transfer state, from the events
        self.routing: SetAudio | None = None
        self.restored = False
        dials = [QueuedDial(a, r) for a, r in parties]
        if len(dials) > rules.max_participants:
            with pytest.raises(ActionRefused, match="max participants"):
                Conference.start("cf", rules, self.now, dials, sequential=sequential)
            dials = dials[:1]
        self.conf, effects = Conference.start("cf", rules, self.now, dials, sequential=sequential)
        self.check_step({"members": [], "pending": set(), "live": True}, None, effects)
        if answer_all:
            for member in list(self.conf.members.values()):
                self.apply(LegAnswered(member.leg_id))

    # ----------------------------------------------------------------- rules
    def someone(self, pick: int, *, answered: bool = False) -> str:
        """Mostly a live (or answered) member, so that actions get accepted; sometimes any address."""
        live = [m.address for m in self.conf.live_members() if m.answered or not answered]
        return live[pick % len(live)] if live and pick < 80 else ADDRESSES[pick % len(ADDRESSES)]

    @precondition(lambda self: self.conf.live)
    @rule(kind=st.sampled_from(NEW_PARTY), to=st.integers(0, 99), role=roles, trigger=st.integers(0, 99))
    def new_party(self, kind: type[Call], to: int, role: Role, trigger: int) -> None:
        # Often an address that left (a transfer's initiator first), to exercise re-dials.
        initiators = [t.initiator for t in self.conf.transfers[::-1]]
        gone = [m.address for m in self.conf.members.values() if not m.live]
        gone = sorted(gone, key=lambda a: initiators.index(a) if a in initiators else len(initiators))
        address = (
            gone[to % len(gone) if to < 20 else 0] if gone and to < 50 else ADDRESSES[to % len(ADDRESSES)]
        )
        self.apply(kind(address, role, self.someone(trigger, answered=True)))

    @precondition(lambda self: self.conf.live)
    @rule(kind=st.sampled_from(ON_MEMBER), address=st.integers(0, 99))
    def member_action(self, kind: type[Hold], address: int) -> None:
        self.apply(kind(self.someone(address)))

    @precondition(lambda self: self.conf.live)
    @rule(
        kind=st.sampled_from(SIGNALS),
        pick=st.integers(0, 99),
        reason=st.sampled_from(list(LeaveReason)),
        by=st.sampled_from(list(AnsweredBy)),
    )
    def leg_signal(self, kind: type, pick: int, reason: LeaveReason, by: AnsweredBy) -> None:
        # Mostly a live leg, sometimes a stale or unknown one.
        live = [m.leg_id for m in self.conf.live_members()]
        stale = [*self.legs, "unknown-leg"]
        leg = live[pick % len(live)] if live and pick < 85 else stale[pick % len(stale)]
        if kind is LegFailed:
            signal: Command = LegFailed(leg, reason)
        elif kind is LegAnswered:
            signal = LegAnswered(leg, by)
        else:
            signal = kind(leg)
        self.apply(signal)

    @precondition(lambda self: self.conf.live)
    @rule(seconds=st.sampled_from([0.0, 1.0, 5.0, 30.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: self.conf.live)
    @rule(to_deadline=st.booleans(), late=st.sampled_from([0.0, 0.5, 10.0]))
    def timer(self, to_deadline: bool, late: float) -> None:
        deadline = self.conf.next_deadline()
        if to_deadline and deadline is not None:
            self.now = max(self.now, deadline + late)
        before = self.observe()
        self.check_step(before, None, self.conf.handle_timer(self.now))

    @precondition(lambda self: self.conf.live)
    @rule()
    def restore_from_snapshot(self) -> None:
        self.conf = snapshot.load(snapshot.dump(self.conf))
        self.restored = True

    # ----------------------------------------------------------------- stepping
    def apply(self, command: Command) -> None:
        before = self.observe()
        try:
            effects = self.conf.handle(command, self.now)
        except ActionRefused as refused:
            assert refused.message
            assert snapshot.dump(self.conf) == before["dump"], f"refused {command} changed the state"
            assert self.conf.effects == [], "a refused action left effects behind"
            return
        self.check_step(before, command, effects)

    def observe(self) -> dict[str, Any]:
        return {
            "dump": snapshot.dump(self.conf),
            "members": [(m.leg_id, m.status) for m in self.conf.members.values()],
            "pending": {t.transfer_id for t in self.conf.transfers if t.state.pending},
            "live": self.conf.live,
        }

    def check_step(self, before: dict[str, Any], command: Command | None, effects: list[Effect]) -> None:
        conf = self.conf
        was_live = {leg for leg, status in before["members"] if status is not MemberStatus.LEFT}
        known = {leg for leg, _ in before["members"]}
        by_leg = {m.leg_id: m for m in conf.members.values()}

        # Events: contiguous seqs, stamped now, and a model of who is live.
        for event in (e.event for e in effects if isinstance(e, Publish)):
            assert event.seq == self.next_seq
            assert event.at == self.now
            self.next_seq += 1
            if event.type is EventType.MEMBER_DIALING:
                assert event.data["member_address"] not in self.live_legs.values(), "address live twice"
                self.live_legs[event.data["leg_id"]] = event.data["member_address"]
            elif event.type is EventType.MEMBER_LEFT:
                assert event.data["reason"]
                del self.live_legs[event.data["leg_id"]]
        assert conf.next_seq == self.next_seq
        assert set(self.live_legs) == {m.leg_id for m in conf.live_members()}

        # Every change of a member's status or a transfer's state is published, with the value after it.
        for event in (e.event for e in effects if isinstance(e, Publish)):
            if "leg_id" in event.data:
                self.seen_status[event.data["leg_id"]] = event.data["status"]
            if "transfer_id" in event.data:
                self.seen_state[event.data["transfer_id"]] = event.data["transfer_state"]
        assert all(self.seen_status[leg] == member.status for leg, member in by_leg.items())
        assert self.seen_state == {t.transfer_id: t.state for t in conf.transfers}

        # A transfer belongs to the initiator's leg that started it, never to a later leg at that address.
        for transfer in conf.transfers:
            if transfer.transfer_id not in self.initiator_legs:
                self.initiator_legs[transfer.transfer_id] = conf.members[transfer.initiator].leg_id
            initiator = conf.live_member(transfer.initiator)
            if transfer.state.pending and initiator is not None:
                assert initiator.leg_id == self.initiator_legs[transfer.transfer_id], (
                    "a transfer adopted a new leg"
                )

        # DialLeg for every new member, and only for those.
        dials = [e for e in effects if isinstance(e, DialLeg)]
        new_legs = set(by_leg) - known
        assert sorted(d.leg_id for d in dials) == sorted(new_legs)
        for dial in dials:
            member = by_leg[dial.leg_id]
            assert (dial.to, dial.role, dial.ring_timeout) == (
                member.address,
                member.role,
                conf.rules.ring_timeout,
            )
            assert member.status is MemberStatus.DIALING
        self.legs += [d.leg_id for d in dials]

        # DropLeg exactly once for each member the conference itself hung up.
        left_now = {leg for leg in was_live if by_leg[leg].status is MemberStatus.LEFT}
        remote = {command.leg_id} if isinstance(command, REMOTE_LEAVES) else set()
        drops = Counter(e.leg_id for e in effects if isinstance(e, DropLeg))
        assert set(drops) == left_now - remote, (drops, left_now, command)
        assert all(n == 1 for n in drops.values())
        assert not self.dropped & set(drops), "a leg dropped twice"
        self.dropped |= set(drops)
        for drop in (e for e in effects if isinstance(e, DropLeg)):
            assert drop.reason is by_leg[drop.leg_id].leave_reason

        # A conference ends when nobody is left (it hangs nobody up then), or at max duration (it aborts the
        # pending transfers and hangs everybody up).
        if before["live"] and not conf.live:
            # Only the timer reads the clock: an input after the max duration can still empty the conference.
            at_max = command is None and self.now >= conf.started_at + conf.rules.max_duration
            assert conf.end_reason is (EndReason.MAX_DURATION if at_max else EndReason.EMPTY)
            if at_max:
                assert all(by_leg[leg].leave_reason is LeaveReason.MAX_DURATION for leg in was_live)
                assert all(
                    t.state is TransferState.ABORTED
                    for t in conf.transfers
                    if t.transfer_id in before["pending"]
                )
            else:
                assert all(by_leg[leg].leave_reason is not LeaveReason.CONFERENCE_ENDED for leg in left_now)

        # The snapshot is lossless.
        data = snapshot.dump(conf)
        assert snapshot.dump(snapshot.load(data)) == data

        # SetAudio: last, only on change, and in sync with the state.
        routings = [e for e in effects if isinstance(e, SetAudio)]
        assert len(routings) <= 1
        if routings:
            assert effects[-1] is routings[0]
            assert routings[0] != self.routing or self.restored
            self.routing = routings[0]
            self.restored = False
        if not self.restored:
            assert self.routing == audio.set_audio(conf)

    # ----------------------------------------------------------------- invariants
    @invariant()
    def audio_rules(self) -> None:
        conf = self.conf
        plan = conf.audio_plan()
        answered = {m.address for m in conf.members.values() if m.answered}
        assert set(plan) == answered
        for address, listening in plan.items():
            member = conf.members[address]
            assert address not in listening.hears
            assert not (listening.hears and listening.music), "music over a conversation"
            for heard in listening.hears:
                other = conf.members[heard]
                assert other.talking, f"{address} hears {heard} who is {other.status}"
                assert other.room == member.room
            # A muted member is heard by nobody (it is not `talking`) but hears its room like the others.
            if member.status is MemberStatus.CONNECTED and not member.playing_voicemail:
                room = {m.address for m in conf.members.values() if m.room == member.room and m.talking}
                assert set(listening.hears) == room - {address}
            else:
                assert listening.hears == ()
                assert listening.music == (
                    Music.VOICEMAIL if member.playing_voicemail else Music.hold_for(member.role)
                )

    @invariant()
    def member_and_transfer_rules(self) -> None:
        conf = self.conf
        for member in conf.members.values():
            assert (member.status is MemberStatus.LEFT) == (member.leave_reason is not None)
            assert (member.status is MemberStatus.LEFT) == (member.left_at is not None)
            assert (member.ring_deadline is not None) == (member.status is MemberStatus.DIALING)
            assert not member.playing_voicemail or member.status is MemberStatus.CONNECTED
        pending = [t for t in conf.transfers if t.state.pending]
        initiators = Counter(t.initiator for t in pending)
        assert all(n == 1 for n in initiators.values()), initiators
        for transfer in pending:
            target = conf.live_member(transfer.target)
            assert target is not None, "a pending transfer has a live target"
            assert target.room == transfer.room
        assert len(conf.claimed_addresses()) <= conf.rules.max_participants
        # Private rooms exist only for pending warm transfers, and hold just their initiator and target.
        private = {t.room: {t.initiator, t.target} for t in pending if t.kind is TransferKind.WARM}
        for member in conf.live_members():
            assert member.room == MAIN_ROOM or member.address in private.get(member.room, ()), member
        for room, (initiator, target) in (
            (t.room, (t.initiator, t.target)) for t in pending if t.room != MAIN_ROOM
        ):
            assert conf.members[initiator].live and conf.members[initiator].room == room
            assert conf.members[target].room == room

    @invariant()
    def lifecycle(self) -> None:
        conf = self.conf
        if conf.live:
            assert conf.live_members(), "a live conference with nobody connected or dialed"
            deadline = conf.next_deadline()
            assert deadline is not None
            assert deadline <= conf.started_at + conf.rules.max_duration
        else:
            assert conf.live_members() == []
            assert not any(t.state.pending for t in conf.transfers)
            assert conf.queued == []
            assert conf.next_deadline() is None
            assert conf.end_reason is not None and conf.ended_at is not None


ConferenceMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestConferenceMachine = ConferenceMachine.TestCase
