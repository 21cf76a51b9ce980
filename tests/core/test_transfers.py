"""Warm and cold transfers: one test per row of the transfer table (docs/semantics.md), then the refusals.

U1 = agent `A` (trigger_source), U2 = customer `C`, U3 = agent `B` (the target).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from corekit import (
    AGENT,
    AGENT_HOLD,
    CUSTOMER,
    CUSTOMER_HOLD,
    RULES,
    VOICEMAIL,
    WAIT,
    Harness,
    agent_and_customer,
    hears,
    talking,
)

from bridgeline.core.commands import (
    AbortTransfer,
    Call,
    ColdTransfer,
    Hangup,
    Hold,
    ResumeCall,
    VoicemailDrop,
    WarmTransfer,
)
from bridgeline.core.effects import DropLeg
from bridgeline.core.model import (
    MAIN_ROOM,
    EventType,
    LeaveReason,
    MemberStatus,
    TransferKind,
    TransferOutcome,
    TransferState,
)

E = EventType


def warm_dialing() -> Harness:
    h = agent_and_customer()
    h.do(WarmTransfer("B", AGENT, "A"))
    return h


def warm_consulting() -> Harness:
    h = warm_dialing()
    h.answer("B")
    return h


def cold_dialing() -> Harness:
    h = agent_and_customer()
    h.do(ColdTransfer("B", AGENT, "A"))
    return h


def fail_target(h: Harness, how: str) -> None:
    if how == "timeout":
        h.timer(h.member("B").ring_deadline or 0)
    else:
        h.fail("B", LeaveReason(how))


def leave(h: Harness, address: str, how: str) -> None:
    if how == "api hangup":
        h.do(Hangup(address))
    elif how == "remote hangup":
        h.hang(address)
    else:
        h.do(VoicemailDrop(address))
        h.playback_done(address)


TARGET_FAILURES = ["busy", "timeout", "rejected", "failed"]
LEAVES = ["api hangup", "remote hangup", "voicemail drop"]

# --------------------------------------------------------------------------- warm transfer


def test_warm_transfer_start_moves_u1_to_a_private_room_and_dials_u3_into_it() -> None:
    h = warm_dialing()
    t = h.transfer()
    assert (t.kind, t.state, t.initiator, t.target) == (TransferKind.WARM, TransferState.DIALING, "A", "B")
    assert h.room("A") == h.room("B") == t.room != MAIN_ROOM
    assert h.types() == [E.TRANSFER_STARTED, E.MEMBER_DIALING]
    assert h.event(E.TRANSFER_STARTED) == {
        "transfer_id": t.transfer_id,
        "transfer_type": "warm",
        "initiator": "A",
        "target": "B",
        "transfer_state": "dialing",
    }
    assert [d.to for d in h.dials()] == ["B"]
    assert h.plan() == {"A": WAIT, "C": CUSTOMER_HOLD}


def test_warm_dialing_u3_answers_starts_the_consultation() -> None:
    h = warm_consulting()
    assert h.transfer().state is TransferState.CONSULTING
    assert h.types() == [E.MEMBER_CONNECTED, E.TRANSFER_ANSWERED]
    assert h.event(E.TRANSFER_ANSWERED)["transfer_state"] == "consulting"  # events carry the state after
    assert h.plan() == {"A": hears("B"), "B": hears("A"), "C": CUSTOMER_HOLD}


@pytest.mark.parametrize("how", TARGET_FAILURES)
def test_warm_dialing_u3_does_not_answer_fails_and_brings_u1_back(how: str) -> None:
    h = warm_dialing()
    fail_target(h, how)
    reason = "no_answer" if how == "timeout" else how
    assert h.transfer().state is TransferState.FAILED
    assert h.types() == [E.MEMBER_LEFT, E.TRANSFER_FAILED]
    assert h.event(E.TRANSFER_FAILED)["reason"] == reason
    assert h.room("A") == MAIN_ROOM
    assert h.plan() == {"A": hears("C"), "C": hears("A")}


def test_warm_dialing_abort_cancels_the_dial_and_brings_u1_back() -> None:
    h = warm_dialing()
    h.do(AbortTransfer("A"))
    assert h.transfer().state is TransferState.ABORTED
    assert h.types() == [E.TRANSFER_ABORTED, E.MEMBER_LEFT]
    assert h.drops() == [DropLeg(h.leg("B"), LeaveReason.TRANSFER_ABORTED)]
    assert h.member("B").leave_reason is LeaveReason.TRANSFER_ABORTED
    assert h.plan() == {"A": hears("C"), "C": hears("A")}


def test_warm_dialing_resume_call_completes_three_way_and_u3_joins_on_answer() -> None:
    h = warm_dialing()
    h.do(ResumeCall("A"))
    t = h.transfer()
    assert (t.state, t.outcome) == (TransferState.COMPLETED, TransferOutcome.THREE_WAY)
    assert h.types() == [E.TRANSFER_COMPLETED]
    assert h.event(E.TRANSFER_COMPLETED)["outcome"] == "three_way"
    assert h.plan() == {"A": hears("C"), "C": hears("A")}
    h.answer("B")
    assert h.types() == [E.MEMBER_CONNECTED]  # no transfer event: the transfer is over
    assert h.plan() == {"A": hears("C", "B"), "C": hears("A", "B"), "B": hears("A", "C")}


@pytest.mark.parametrize("how", LEAVES)
def test_warm_dialing_u1_leaves_completes_blind_and_u3_joins_on_answer(how: str) -> None:
    h = warm_dialing()
    leave(h, "A", how)
    t = h.transfer()
    assert (t.state, t.outcome) == (TransferState.COMPLETED, TransferOutcome.BLIND)
    assert h.types() == [E.MEMBER_LEFT, E.TRANSFER_COMPLETED]
    assert h.status("B") is MemberStatus.DIALING
    assert h.room("B") == MAIN_ROOM
    assert h.plan() == {"C": WAIT}
    h.answer("B")
    assert h.plan() == {"B": hears("C"), "C": hears("B")}


def test_warm_blind_completion_whose_target_then_fails_just_loses_the_target() -> None:
    h = warm_dialing()
    h.do(Hangup("A"))
    h.fail("B")
    assert h.types() == [E.MEMBER_LEFT]
    assert h.transfer().state is TransferState.COMPLETED
    assert h.plan() == {"C": WAIT}


@pytest.mark.parametrize("how", LEAVES)
def test_warm_consulting_u1_leaves_transfers_u3_to_u2(how: str) -> None:
    h = warm_consulting()
    leave(h, "A", how)
    t = h.transfer()
    assert (t.state, t.outcome) == (TransferState.COMPLETED, TransferOutcome.TRANSFERRED)
    assert h.types() == [E.MEMBER_LEFT, E.TRANSFER_COMPLETED]
    assert h.room("B") == MAIN_ROOM
    assert h.plan() == {"B": hears("C"), "C": hears("B")}


def test_warm_consulting_resume_call_brings_u1_and_u3_into_the_main_room() -> None:
    h = warm_consulting()
    h.do(ResumeCall("A"))
    t = h.transfer()
    assert (t.state, t.outcome) == (TransferState.COMPLETED, TransferOutcome.THREE_WAY)
    assert h.types() == [E.TRANSFER_COMPLETED]
    assert h.room("A") == h.room("B") == MAIN_ROOM
    assert h.plan() == {"A": hears("C", "B"), "B": hears("A", "C"), "C": hears("A", "B")}


def test_warm_consulting_abort_hangs_up_u3_and_returns_u1_to_u2() -> None:
    h = warm_consulting()
    h.do(AbortTransfer("A"))
    assert h.transfer().state is TransferState.ABORTED
    assert h.types() == [E.TRANSFER_ABORTED, E.MEMBER_LEFT]
    assert h.drops() == [DropLeg(h.leg("B"), LeaveReason.TRANSFER_ABORTED)]
    assert h.plan() == {"A": hears("C"), "C": hears("A")}


@pytest.mark.parametrize("how", LEAVES)
def test_warm_consulting_u3_leaves_aborts_and_returns_u1_to_u2(how: str) -> None:
    h = warm_consulting()
    leave(h, "B", how)
    assert h.transfer().state is TransferState.ABORTED
    assert h.types() == [E.MEMBER_LEFT, E.TRANSFER_ABORTED]
    assert h.event(E.TRANSFER_ABORTED)["reason"] == h.member("B").leave_reason
    assert h.plan() == {"A": hears("C"), "C": hears("A")}


def test_warm_transfer_puts_each_member_left_alone_on_its_roles_hold_music() -> None:
    h = talking(("A", AGENT), ("C", CUSTOMER), ("D", AGENT))
    h.do(WarmTransfer("B", AGENT, "A"))
    assert h.plan()["C"] == hears("D")  # C and D still talk
    h.do(Hangup("D"))
    assert h.plan()["C"] == CUSTOMER_HOLD
    h2 = talking(("A", AGENT), ("D", AGENT))
    h2.do(WarmTransfer("B", AGENT, "A"))
    assert h2.plan()["D"] == AGENT_HOLD


@pytest.mark.parametrize("action", [ResumeCall, AbortTransfer])
@pytest.mark.parametrize("u1", ["on_hold", "voicemail"])
def test_u1_on_hold_or_playing_voicemail_can_still_resume_or_abort(u1: str, action: type) -> None:
    h = warm_consulting()
    h.do(Hold("A") if u1 == "on_hold" else VoicemailDrop("A"))
    h.do(action("A"))
    assert h.transfer().state is (TransferState.COMPLETED if action is ResumeCall else TransferState.ABORTED)
    assert h.room("A") == MAIN_ROOM
    assert h.plan()["A"] == (AGENT_HOLD if u1 == "on_hold" else VOICEMAIL)


# --------------------------------------------------------------------------- cold transfer


def test_cold_transfer_start_keeps_u1_and_u2_talking() -> None:
    h = cold_dialing()
    t = h.transfer()
    assert (t.kind, t.state) == (TransferKind.COLD, TransferState.DIALING)
    assert h.types() == [E.TRANSFER_STARTED, E.MEMBER_DIALING]
    assert h.room("B") == MAIN_ROOM
    assert h.plan() == {"A": hears("C"), "C": hears("A")}
    assert h.audio() == []


def test_cold_dialing_u3_answers_disconnects_u1_and_joins_u2() -> None:
    h = cold_dialing()
    h.answer("B")
    t = h.transfer()
    assert (t.state, t.outcome) == (TransferState.COMPLETED, TransferOutcome.TRANSFERRED)
    assert h.types() == [E.MEMBER_CONNECTED, E.TRANSFER_ANSWERED, E.TRANSFER_COMPLETED, E.MEMBER_LEFT]
    assert h.drops() == [DropLeg(h.leg("A"), LeaveReason.TRANSFERRED)]
    assert h.member("A").leave_reason is LeaveReason.TRANSFERRED
    assert h.plan() == {"B": hears("C"), "C": hears("B")}


@pytest.mark.parametrize("how", TARGET_FAILURES)
def test_cold_dialing_u3_fails_changes_nothing_else(how: str) -> None:
    h = cold_dialing()
    fail_target(h, how)
    assert h.transfer().state is TransferState.FAILED
    assert h.types() == [E.MEMBER_LEFT, E.TRANSFER_FAILED]
    assert h.plan() == {"A": hears("C"), "C": hears("A")}
    assert h.audio() == []


def test_cold_dialing_abort_cancels_the_dial() -> None:
    h = cold_dialing()
    h.do(AbortTransfer("A"))
    assert h.transfer().state is TransferState.ABORTED
    assert h.types() == [E.TRANSFER_ABORTED, E.MEMBER_LEFT]
    assert h.drops() == [DropLeg(h.leg("B"), LeaveReason.TRANSFER_ABORTED)]
    assert h.plan() == {"A": hears("C"), "C": hears("A")}


@pytest.mark.parametrize("how", LEAVES)
def test_cold_dialing_u1_leaves_the_transfer_goes_on(how: str) -> None:
    h = cold_dialing()
    leave(h, "A", how)
    assert h.transfer().state is TransferState.DIALING
    assert h.types() == [E.MEMBER_LEFT]
    h.answer("B")
    assert h.types() == [E.MEMBER_CONNECTED, E.TRANSFER_ANSWERED, E.TRANSFER_COMPLETED]
    assert h.drops() == []
    assert h.plan() == {"B": hears("C"), "C": hears("B")}


def test_cold_transfer_initiator_cannot_rejoin_while_its_transfer_rings() -> None:
    """Otherwise the new leg at U1's address would be dropped as 'transferred' when U3 answers."""
    h = cold_dialing()
    h.do(Hangup("A"))
    assert "transfer that is still in progress" in h.refused(Call("A", AGENT, "C"))
    h.answer("B")
    h.do(Call("A", AGENT, "C"))
    assert h.status("A") is MemberStatus.DIALING


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("second", [WarmTransfer, ColdTransfer])
@pytest.mark.parametrize("first", [warm_dialing, warm_consulting, cold_dialing])
def test_a_second_transfer_by_the_same_initiator_is_refused(first, second) -> None:  # type: ignore[no-untyped-def]
    h = first()
    assert "already has a transfer in progress" in h.refused(second("D", AGENT, "A"))


def test_the_consulted_target_cannot_transfer_from_the_private_room() -> None:
    h = warm_consulting()
    assert "private consultation" in h.refused(ColdTransfer("D", AGENT, "B"))


def test_another_member_may_transfer_while_u1_consults() -> None:
    h = warm_consulting()
    h.do(ColdTransfer("D", AGENT, "C"))
    assert len([t for t in h.conf.transfers if t.state.pending]) == 2


@pytest.mark.parametrize("kind", [WarmTransfer, ColdTransfer])
def test_transfer_to_a_member_or_beyond_max_participants_is_refused(kind) -> None:  # type: ignore[no-untyped-def]
    h = agent_and_customer(rules=replace(RULES, max_participants=2))
    assert "already a member" in h.refused(kind("C", AGENT, "A"))
    assert "already a member" in h.refused(kind("A", AGENT, "A"))
    assert "max participants (2) reached" in h.refused(kind("B", AGENT, "A"))
    assert "not in a live conference" in h.refused(kind("B", AGENT, "nobody"))


def test_a_held_initiator_cannot_transfer() -> None:
    h = agent_and_customer()
    h.do(Hold("A"))
    assert "must be connected" in h.refused(WarmTransfer("B", AGENT, "A"))


def test_resume_call_applies_only_to_a_pending_warm_transfer() -> None:
    h = cold_dialing()
    assert "started a cold one" in h.refused(ResumeCall("A"))
    assert "no warm transfer in progress" in h.refused(ResumeCall("C"))
    h.answer("B")
    assert "not a member" in h.refused(ResumeCall("A"))


@pytest.mark.parametrize("end", ["resume", "abort", "fail"])
def test_a_finished_transfer_cannot_be_resumed_or_aborted(end: str) -> None:
    h = warm_consulting()
    if end == "resume":
        h.do(ResumeCall("A"))
    elif end == "abort":
        h.do(AbortTransfer("A"))
    else:
        h.hang("B")
    assert "no transfer in progress" in h.refused(AbortTransfer("A"))
    assert "no warm transfer in progress" in h.refused(ResumeCall("A"))


def test_abort_by_the_target_is_refused() -> None:
    h = warm_consulting()
    assert "no transfer in progress initiated by B" in h.refused(AbortTransfer("B"))


def test_transfer_ids_and_private_rooms_are_distinct() -> None:
    h = talking(("A", AGENT), ("C", CUSTOMER), ("D", AGENT))
    h.do(WarmTransfer("B", AGENT, "A"))
    h.do(WarmTransfer("E", AGENT, "D"))
    first, second = h.conf.transfers
    assert first.transfer_id != second.transfer_id
    assert first.room != second.room
    h.answer("B", "E")
    assert h.plan() == {
        "A": hears("B"),
        "B": hears("A"),
        "D": hears("E"),
        "E": hears("D"),
        "C": CUSTOMER_HOLD,
    }
