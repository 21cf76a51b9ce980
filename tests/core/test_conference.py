"""The conference state machine: starting, member actions in every status, leg signals, timers, events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from corekit import (
    AGENT,
    CUSTOMER,
    CUSTOMER_HOLD,
    RULES,
    T0,
    WAIT,
    Harness,
    agent_and_customer,
    hears,
    start,
    talking,
)

from bridgeline.core import snapshot
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
from bridgeline.core.conference import Conference
from bridgeline.core.effects import DialLeg, DropLeg, PlayMessage, SetAudio
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import (
    AnsweredBy,
    ConferencePhase,
    EndReason,
    EventType,
    LeaveReason,
    MemberStatus,
    QueuedDial,
)

# --------------------------------------------------------------------------- member `X` in each status


def _x_dialing(h: Harness) -> None:
    h.do(Call("X", AGENT, "A"))


def _x_connected(h: Harness) -> None:
    _x_dialing(h)
    h.answer("X")


def _x_on_hold(h: Harness) -> None:
    _x_connected(h)
    h.do(Hold("X"))


def _x_left(h: Harness) -> None:
    _x_connected(h)
    h.hang("X")


def _x_voicemail(h: Harness) -> None:
    _x_connected(h)
    h.do(VoicemailDrop("X"))


X_STATUS: dict[str, Callable[[Harness], None]] = {
    "dialing": _x_dialing,
    "connected": _x_connected,
    "on_hold": _x_on_hold,
    "left": _x_left,
    "voicemail": _x_voicemail,
}


def with_x(status: str) -> Harness:
    """Agent A and customer C talking, plus a third member X in `status`."""
    h = agent_and_customer()
    X_STATUS[status](h)
    return h


# Commands whose subject is X, and the refusal reason expected per status (None: accepted).
REFUSALS: dict[str, dict[str, str | None]] = {
    "hold": {
        "dialing": "has not answered yet",
        "connected": None,
        "on_hold": "already on hold",
        "left": "not a member",
        "voicemail": "voicemail drop is playing",
    },
    "unhold": {
        "dialing": "not on hold",
        "connected": "not on hold",
        "on_hold": None,
        "left": "not a member",
        "voicemail": "not on hold",
    },
    "hangup": {
        "dialing": None,
        "connected": None,
        "on_hold": None,
        "left": "not a member",
        "voicemail": None,
    },
    "voicemail_drop": {
        "dialing": "has not answered yet",
        "connected": None,
        "on_hold": None,
        "left": "not a member",
        "voicemail": "voicemail drop is playing",
    },
    "mute": {
        "dialing": "has not answered yet",
        "connected": None,
        "on_hold": None,
        "left": "not a member",
        "voicemail": "voicemail drop is playing",
    },
    "unmute": {
        "dialing": "is not muted",
        "connected": "is not muted",
        "on_hold": "is not muted",
        "left": "not a member",
        "voicemail": "is not muted",
    },
    "resume_call": {
        "dialing": "no warm transfer in progress",
        "connected": "no warm transfer in progress",
        "on_hold": "no warm transfer in progress",
        "left": "not a member",
        "voicemail": "no warm transfer in progress",
    },
    "abort_transfer": {
        "dialing": "no transfer in progress",
        "connected": "no transfer in progress",
        "on_hold": "no transfer in progress",
        "left": "not a member",
        "voicemail": "no transfer in progress",
    },
    "call": {
        "dialing": "has not answered yet",
        "connected": None,
        "on_hold": None,
        "left": "not in a live conference",
        "voicemail": None,
    },
    "warm_transfer": {
        "dialing": "has not answered yet",
        "connected": None,
        "on_hold": "must be connected",
        "left": "not in a live conference",
        "voicemail": "playing a voicemail drop",
    },
    "cold_transfer": {
        "dialing": "has not answered yet",
        "connected": None,
        "on_hold": "must be connected",
        "left": "not in a live conference",
        "voicemail": "playing a voicemail drop",
    },
}

COMMANDS: dict[str, Command] = {
    "hold": Hold("X"),
    "unhold": Unhold("X"),
    "mute": Mute("X"),
    "unmute": Unmute("X"),
    "hangup": Hangup("X"),
    "voicemail_drop": VoicemailDrop("X"),
    "resume_call": ResumeCall("X"),
    "abort_transfer": AbortTransfer("X"),
    "call": Call("N", CUSTOMER, "X"),
    "warm_transfer": WarmTransfer("N", AGENT, "X"),
    "cold_transfer": ColdTransfer("N", AGENT, "X"),
}

ACCEPTED_EVENT = {
    "hold": EventType.MEMBER_HELD,
    "unhold": EventType.MEMBER_UNHELD,
    "mute": EventType.MEMBER_MUTED,
    "hangup": EventType.MEMBER_LEFT,
    "voicemail_drop": EventType.VOICEMAIL_STARTED,
    "call": EventType.MEMBER_DIALING,
    "warm_transfer": EventType.TRANSFER_STARTED,
    "cold_transfer": EventType.TRANSFER_STARTED,
}

MATRIX = [(action, status, reason) for action, row in REFUSALS.items() for status, reason in row.items()]


@pytest.mark.parametrize(("action", "status", "reason"), MATRIX, ids=[f"{a}-{s}" for a, s, _ in MATRIX])
def test_every_action_in_every_member_status_is_accepted_or_refused_with_a_reason(
    action: str, status: str, reason: str | None
) -> None:
    h = with_x(status)
    if reason is not None:
        message = h.refused(COMMANDS[action])
        assert reason in message
        return
    effects = h.do(COMMANDS[action])
    assert h.types(effects)[0] is ACCEPTED_EVENT[action]


@pytest.mark.parametrize("status", ["connected", "on_hold", "voicemail"])
def test_hangup_drops_an_answered_member_of_any_status(status: str) -> None:
    h = with_x(status)
    h.do(Hangup("X"))
    assert h.status("X") is MemberStatus.LEFT
    assert h.member("X").leave_reason is LeaveReason.HANGUP
    assert h.drops() == [DropLeg(h.leg("X"), LeaveReason.HANGUP)]
    assert h.event(EventType.MEMBER_LEFT)["reason"] == "hangup"
    assert {h.status("A"), h.status("C")} == {MemberStatus.CONNECTED}


def test_hangup_of_a_dialing_member_cancels_the_dial() -> None:
    h = with_x("dialing")
    h.do(Hangup("X"))
    assert h.drops() == [DropLeg(h.leg("X"), LeaveReason.HANGUP)]
    assert h.member("X").ring_deadline is None
    assert h.do(LegAnswered(h.leg("X"))) == []  # the carrier's late answer is ignored


def test_hold_and_unhold_round_trip() -> None:
    h = with_x("connected")
    h.do(Hold("X"))
    assert h.status("X") is MemberStatus.ON_HOLD
    assert h.types() == [EventType.MEMBER_HELD]
    assert h.event(EventType.MEMBER_HELD)["status"] == "on_hold"
    h.do(Unhold("X"))
    assert h.status("X") is MemberStatus.CONNECTED
    assert h.types() == [EventType.MEMBER_UNHELD]


def test_voicemail_drop_plays_the_message_then_hangs_up_the_leg() -> None:
    h = with_x("connected")
    h.do(VoicemailDrop("X"))
    assert h.plays() == [PlayMessage(h.leg("X"))]
    assert h.types() == [EventType.VOICEMAIL_STARTED]
    assert h.member("X").playing_voicemail
    assert h.status("X") is MemberStatus.CONNECTED
    h.playback_done("X")
    assert h.member("X").leave_reason is LeaveReason.VOICEMAIL_DROPPED
    assert h.drops() == [DropLeg(h.leg("X"), LeaveReason.VOICEMAIL_DROPPED)]
    assert h.types() == [EventType.MEMBER_LEFT]


def test_voicemail_drop_on_a_held_member_takes_it_off_hold() -> None:
    h = with_x("on_hold")
    h.do(VoicemailDrop("X"))
    assert h.status("X") is MemberStatus.CONNECTED
    assert h.member("X").playing_voicemail


def test_voicemail_drop_is_refused_when_the_node_has_no_voicemail_message() -> None:
    h = agent_and_customer(rules=replace(RULES, voicemail_configured=False))
    assert "no voicemail_message configured" in h.refused(VoicemailDrop("C"))


def test_playback_finished_after_a_hangup_is_ignored() -> None:
    h = with_x("voicemail")
    h.do(Hangup("X"))
    before = snapshot.dump(h.conf)
    assert h.playback_done("X") == []
    assert snapshot.dump(h.conf) == before


# --------------------------------------------------------------------------- call


def test_call_dials_the_new_party_with_its_role() -> None:
    h = agent_and_customer()
    h.do(Call("X", CUSTOMER, "A"))
    assert h.dials() == [DialLeg(h.leg("X"), "X", CUSTOMER, RULES.ring_timeout)]
    assert h.event(EventType.MEMBER_DIALING) == {
        "member_address": "X",
        "role": "customer",
        "status": "dialing",
        "leg_id": h.leg("X"),
        "mute": False,
    }
    assert h.audio() == []  # a ringing party changes nobody's audio


def test_call_answered_joins_everybody() -> None:
    h = agent_and_customer()
    h.do(Call("X", CUSTOMER, "A"))
    h.answer("X")
    assert h.plan() == {"A": hears("C", "X"), "C": hears("A", "X"), "X": hears("A", "C")}


@pytest.mark.parametrize(
    "reason", [LeaveReason.BUSY, LeaveReason.NO_ANSWER, LeaveReason.REJECTED, LeaveReason.FAILED]
)
def test_call_that_fails_leaves_with_the_reason_and_affects_nobody_else(reason: LeaveReason) -> None:
    h = agent_and_customer()
    h.do(Call("X", CUSTOMER, "A"))
    plan = h.plan()
    h.fail("X", reason)
    assert h.member("X").leave_reason is reason
    assert h.types() == [EventType.MEMBER_LEFT]
    assert h.event(EventType.MEMBER_LEFT)["reason"] == reason.value
    assert h.drops() == []  # the carrier already ended the dial
    assert h.plan() == plan
    assert h.conf.live


def test_a_leg_failure_with_a_non_dial_reason_counts_as_failed() -> None:
    h = with_x("dialing")
    h.fail("X", LeaveReason.REMOTE_HANGUP)
    assert h.member("X").leave_reason is LeaveReason.FAILED


def test_a_hang_up_before_the_answer_counts_as_a_failed_dial() -> None:
    h = with_x("dialing")
    h.hang("X")
    assert h.member("X").leave_reason is LeaveReason.FAILED
    assert h.drops() == []


def test_a_remote_hang_up_is_not_dropped_again() -> None:
    h = with_x("connected")
    h.hang("X")
    assert h.member("X").leave_reason is LeaveReason.REMOTE_HANGUP
    assert h.drops() == []


def test_an_answered_call_lost_by_the_carrier_leaves_as_failed() -> None:
    h = with_x("connected")
    h.do(LegHungUp(h.leg("X"), LeaveReason.FAILED))  # e.g. no usable SDP answer in a late-offer ACK
    assert h.member("X").leave_reason is LeaveReason.FAILED
    assert h.event(EventType.MEMBER_LEFT)["reason"] == "failed"
    assert h.drops() == []


def test_call_refusals() -> None:
    h = agent_and_customer(rules=replace(RULES, max_participants=3))
    assert "already a member" in h.refused(Call("C", CUSTOMER, "A"))
    assert "not in a live conference" in h.refused(Call("X", CUSTOMER, "nobody"))
    h.do(Call("X", CUSTOMER, "A"))
    assert "max participants (3) reached" in h.refused(Call("Y", CUSTOMER, "A"))


def test_a_left_address_can_be_called_again_with_a_new_leg_and_its_old_leg_is_ignored() -> None:
    h = with_x("left")
    old_leg = h.leg("X")
    h.do(Call("X", AGENT, "A"))
    assert h.leg("X") != old_leg
    before = snapshot.dump(h.conf)
    for signal in (LegAnswered(old_leg), LegHungUp(old_leg), LegFailed(old_leg, LeaveReason.BUSY)):
        assert h.do(signal) == []
    assert snapshot.dump(h.conf) == before
    assert h.status("X") is MemberStatus.DIALING


def test_answered_by_machine_is_recorded_and_published() -> None:
    h = with_x("dialing")
    h.answer("X", by=AnsweredBy.MACHINE)
    assert h.member("X").answered_by is AnsweredBy.MACHINE
    assert h.event(EventType.MEMBER_CONNECTED)["answered_by"] == "machine"


def test_ringing_is_published_once() -> None:
    h = with_x("dialing")
    h.ring("X")
    assert h.types() == [EventType.MEMBER_RINGING]
    assert h.member("X").ringing
    assert h.ring("X") == []


# --------------------------------------------------------------------------- stale and unknown signals

STALE_SIGNALS = {
    "unknown leg answered": lambda h: LegAnswered("no-such-leg"),
    "unknown leg failed": lambda h: LegFailed("no-such-leg", LeaveReason.BUSY),
    "unknown leg hung up": lambda h: LegHungUp("no-such-leg"),
    "unknown leg ringing": lambda h: LegRinging("no-such-leg"),
    "unknown leg playback": lambda h: PlaybackFinished("no-such-leg"),
    "answered twice": lambda h: LegAnswered(h.leg("A")),
    "ringing after answer": lambda h: LegRinging(h.leg("A")),
    "failed after answer": lambda h: LegFailed(h.leg("A"), LeaveReason.BUSY),
    "playback without voicemail": lambda h: PlaybackFinished(h.leg("A")),
    "left member hangs up": lambda h: LegHungUp(h.leg("L")),
    "left member answers": lambda h: LegAnswered(h.leg("L")),
    "left member rings": lambda h: LegRinging(h.leg("L")),
    "left member fails": lambda h: LegFailed(h.leg("L"), LeaveReason.BUSY),
}


@pytest.mark.parametrize("make", STALE_SIGNALS.values(), ids=STALE_SIGNALS.keys())
def test_signals_for_unknown_or_stale_legs_are_ignored(make: Callable[[Harness], Command]) -> None:
    h = agent_and_customer()
    h.do(Call("L", CUSTOMER, "A"))
    h.do(Hangup("L"))
    before = snapshot.dump(h.conf)
    assert h.do(make(h)) == []
    assert snapshot.dump(h.conf) == before


def test_an_unknown_command_type_is_a_programming_error() -> None:
    h = agent_and_customer()
    with pytest.raises(TypeError):
        h.conf.handle("hold", T0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- starting


def test_parallel_start_dials_everybody_at_once() -> None:
    h = start(("A", AGENT), ("C", CUSTOMER))
    assert [d.to for d in h.dials()] == ["A", "C"]
    assert h.types() == [EventType.CONFERENCE_STARTED, EventType.MEMBER_DIALING, EventType.MEMBER_DIALING]
    assert h.conf.queued == []
    h.answer("C")
    assert h.plan() == {"C": WAIT}  # alone, waiting for the agent


def test_sequential_start_dials_the_next_party_only_after_the_first_answers() -> None:
    h = start(("A", AGENT), ("C", CUSTOMER), sequential=True)
    assert [d.to for d in h.dials()] == ["A"]
    assert h.conf.queued == [QueuedDial("C", CUSTOMER)]
    assert "C" not in h.conf.members
    h.ring("A")
    assert h.dials() == []
    h.answer("A")
    assert h.types() == [EventType.MEMBER_CONNECTED, EventType.MEMBER_DIALING]
    assert h.dials() == [DialLeg(h.leg("C"), "C", CUSTOMER, RULES.ring_timeout)]
    assert h.conf.queued == []
    h.answer("C")
    assert h.plan() == {"A": hears("C"), "C": hears("A")}


@pytest.mark.parametrize("how", ["busy", "ring timeout", "hangup"])
def test_sequential_start_ends_without_dialing_the_rest_when_the_first_party_does_not_answer(
    how: str,
) -> None:
    h = start(("A", AGENT), ("C", CUSTOMER), sequential=True)
    if how == "busy":
        effects = h.fail("A")
    elif how == "ring timeout":
        effects = h.timer(T0 + RULES.ring_timeout)
    else:
        effects = h.do(Hangup("A"))
    assert h.dials(effects) == []
    assert "C" not in h.conf.members
    assert h.conf.queued == []
    assert h.conf.end_reason is EndReason.EMPTY
    assert h.types(effects)[-2:] == [EventType.MEMBER_LEFT, EventType.CONFERENCE_ENDED]


def test_a_queued_party_is_already_claimed() -> None:
    h = start(("A", AGENT), ("C", CUSTOMER), ("D", CUSTOMER), sequential=True)
    h.answer("A")  # dials C, D still queued
    assert "already a member" in h.refused(Call("D", CUSTOMER, "A"))
    assert [q.address for q in h.conf.queued] == ["D"]


def test_a_queued_party_counts_toward_max_participants() -> None:
    h = start(
        ("A", AGENT),
        ("C", CUSTOMER),
        ("D", CUSTOMER),
        sequential=True,
        rules=replace(RULES, max_participants=3),
    )
    h.answer("A")
    assert "max participants" in h.refused(Call("E", CUSTOMER, "A"))


@pytest.mark.parametrize(
    ("parties", "reason"),
    [
        ([], "at least one party"),
        ([("A", AGENT), ("A", CUSTOMER)], "appears twice"),
        ([(f"P{i}", CUSTOMER) for i in range(RULES.max_participants + 1)], "max participants"),
    ],
)
def test_start_refusals(parties: list[tuple[str, object]], reason: str) -> None:
    with pytest.raises(ActionRefused, match=reason):
        Conference.start("c1", RULES, T0, [QueuedDial(a, r) for a, r in parties])  # type: ignore[arg-type]


# --------------------------------------------------------------------------- timers


def test_ring_timeout_drops_the_dial_as_no_answer() -> None:
    h = agent_and_customer()
    h.do(Call("X", CUSTOMER, "A"), at=T0 + 10)
    deadline = T0 + 10 + RULES.ring_timeout
    assert h.member("X").ring_deadline == deadline
    assert h.conf.next_deadline() == deadline
    assert h.timer(deadline - 0.5) == []
    h.timer(deadline)
    assert h.member("X").leave_reason is LeaveReason.NO_ANSWER
    assert h.drops() == [DropLeg(h.leg("X"), LeaveReason.NO_ANSWER)]
    assert h.types() == [EventType.MEMBER_LEFT]
    assert h.conf.next_deadline() == T0 + RULES.max_duration


def test_an_answer_clears_the_ring_deadline() -> None:
    h = with_x("dialing")
    h.answer("X")
    assert h.member("X").ring_deadline is None
    assert h.timer(h.now + RULES.ring_timeout * 2) == []
    assert h.status("X") is MemberStatus.CONNECTED


def test_timeouts_of_several_dials_at_once() -> None:
    h = start(("A", AGENT), ("C", CUSTOMER), ("D", CUSTOMER))
    h.answer("A")
    h.timer(T0 + RULES.ring_timeout)
    assert {d.leg_id for d in h.drops()} == {h.leg("C"), h.leg("D")}
    assert h.conf.live


def test_max_duration_ends_the_conference_and_hangs_up_everybody() -> None:
    h = agent_and_customer()
    h.do(Call("X", CUSTOMER, "A"))
    h.do(Hold("C"))
    end = T0 + RULES.max_duration
    assert h.conf.next_deadline() == h.member("X").ring_deadline
    h.answer("X")
    assert h.conf.next_deadline() == end
    assert h.timer(end - 1) == []
    h.timer(end)
    assert not h.conf.live
    assert h.conf.end_reason is EndReason.MAX_DURATION
    assert {d.leg_id for d in h.drops()} == {h.leg(a) for a in "ACX"}
    assert {d.reason for d in h.drops()} == {LeaveReason.MAX_DURATION}
    assert all(h.member(a).leave_reason is LeaveReason.MAX_DURATION for a in "ACX")
    assert h.types()[-1] is EventType.CONFERENCE_ENDED
    assert h.events()[-1].data == {"reason": "max_duration"}
    assert h.conf.next_deadline() is None
    assert h.audio()[-1] == SetAudio(())


def test_max_duration_aborts_pending_transfers_before_hanging_up() -> None:
    h = agent_and_customer()
    h.do(WarmTransfer("X", AGENT, "A"))
    h.timer(T0 + RULES.max_duration)
    assert h.types()[0] is EventType.TRANSFER_ABORTED
    assert h.transfer().state.value == "aborted"
    assert h.member("X").leave_reason is LeaveReason.MAX_DURATION


def test_an_ended_conference_refuses_actions_and_ignores_signals_and_timers() -> None:
    h = agent_and_customer()
    h.timer(T0 + RULES.max_duration)
    before = snapshot.dump(h.conf)
    assert "has ended" in h.refused(Hold("A"))
    assert "has ended" in h.refused(Call("X", CUSTOMER, "A"))
    assert h.do(LegHungUp(h.leg("A"))) == []
    assert h.timer(h.now + 10_000) == []
    assert snapshot.dump(h.conf) == before


def test_the_conference_ends_when_the_last_member_leaves() -> None:
    h = agent_and_customer()
    h.hang("A")
    assert h.conf.live
    h.hang("C")
    assert h.conf.phase is ConferencePhase.ENDED
    assert h.conf.end_reason is EndReason.EMPTY
    assert h.conf.ended_at == h.now
    assert h.types() == [EventType.MEMBER_LEFT, EventType.CONFERENCE_ENDED]
    assert h.events()[-1].data == {"reason": "empty"}
    assert h.drops() == []


def test_a_held_member_keeps_the_conference_alive() -> None:
    h = agent_and_customer()
    h.do(Hold("C"))
    h.hang("A")
    assert h.conf.live
    assert h.plan() == {"C": CUSTOMER_HOLD}


# --------------------------------------------------------------------------- events and audio effects


def test_events_have_contiguous_seqs_types_and_data_in_order() -> None:
    h = start(("A", AGENT), ("C", CUSTOMER), sequential=True)
    h.ring("A")
    h.answer("A", "C")
    h.do(Hold("C"))
    h.do(Unhold("C"))
    h.do(ColdTransfer("B", AGENT, "A"))
    h.answer("B")
    h.do(Hangup("C"))
    h.hang("B")
    assert [e.seq for e in h.published] == list(range(1, len(h.published) + 1))
    assert h.conf.next_seq == len(h.published) + 1
    assert [e.at for e in h.published] == sorted(e.at for e in h.published)
    assert [(e.type.value, e.data.get("member_address", e.data.get("target"))) for e in h.published] == [
        ("conference_started", None),
        ("member_dialing", "A"),
        ("member_ringing", "A"),
        ("member_connected", "A"),
        ("member_dialing", "C"),
        ("member_connected", "C"),
        ("member_held", "C"),
        ("member_unheld", "C"),
        ("transfer_started", "B"),
        ("member_dialing", "B"),
        ("member_connected", "B"),
        ("transfer_answered", "B"),
        ("transfer_completed", "B"),
        ("member_left", "A"),
        ("member_left", "C"),
        ("member_left", "B"),
        ("conference_ended", None),
    ]
    left = [e.data for e in h.published if e.type is EventType.MEMBER_LEFT]
    assert [d["reason"] for d in left] == ["transferred", "hangup", "remote_hangup"]
    assert all(d["status"] == "left" for d in left)


def test_set_audio_is_emitted_only_when_the_routing_changes() -> None:
    h = agent_and_customer()
    assert h.audio()  # the answer changed the routing
    h.do(Call("X", CUSTOMER, "A"))
    assert h.audio() == []
    h.ring("X")
    assert h.audio() == []
    h.answer("X")
    [routing] = h.audio()
    assert {leg.leg_id: set(leg.hears) for leg in routing.legs} == {
        h.leg("A"): {h.leg("C"), h.leg("X")},
        h.leg("C"): {h.leg("A"), h.leg("X")},
        h.leg("X"): {h.leg("A"), h.leg("C")},
    }
    h.do(Hold("X"))
    assert len(h.audio()) == 1
    assert h.timer(h.now + 1) == []


def test_set_audio_carries_music_by_leg() -> None:
    h = talking(("A", AGENT))
    [routing] = h.audio()
    assert [(leg.leg_id, leg.hears, leg.music) for leg in routing.legs] == [(h.leg("A"), (), WAIT.music)]
