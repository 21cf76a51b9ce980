"""A cold transfer asked for by a member's own phone (SIP REFER): `LegColdTransfer` is the API's
cold transfer with that member as trigger_source and its role for the target, refused alike."""

from __future__ import annotations

from corekit import AGENT, CUSTOMER, agent_and_customer, start

from bridgeline.core.commands import ColdTransfer, LegColdTransfer
from bridgeline.core.effects import DialLeg, DropLeg
from bridgeline.core.model import EventType, LeaveReason, MemberStatus, TransferKind, TransferState


def test_a_leg_asking_is_the_apis_cold_transfer_with_the_same_effects_and_events() -> None:
    by_phone, by_api = agent_and_customer(), agent_and_customer()
    phone_effects = by_phone.do(LegColdTransfer(by_phone.leg("A"), "B"))
    api_effects = by_api.do(ColdTransfer("B", AGENT, "A"))
    assert phone_effects == api_effects
    assert [(e.type, e.data) for e in by_phone.published] == [(e.type, e.data) for e in by_api.published]
    assert DialLeg(by_phone.leg("B"), "B", AGENT, 30.0) in phone_effects
    transfer = by_phone.conf.transfers[0]
    assert (transfer.kind, transfer.initiator, transfer.state) == (
        TransferKind.COLD,
        "A",
        TransferState.DIALING,
    )

    by_phone.answer("B")
    assert DropLeg(by_phone.leg("A"), LeaveReason.TRANSFERRED) in by_phone.last
    assert by_phone.conf.members["A"].leave_reason is LeaveReason.TRANSFERRED


def test_the_target_takes_the_role_of_the_member_who_asked() -> None:
    h = agent_and_customer()
    h.do(LegColdTransfer(h.leg("C"), "D"))
    assert h.conf.members["D"].role is CUSTOMER
    assert h.published[-1].type is EventType.MEMBER_DIALING


def test_refused_like_the_api_and_for_legs_that_are_not_members() -> None:
    h = agent_and_customer()
    assert "not a member" in h.refused(LegColdTransfer("no-such-leg", "B"))
    assert "already a member" in h.refused(LegColdTransfer(h.leg("A"), "C"))
    assert "is not a phone number" in h.refused(LegColdTransfer(h.leg("A"), "sip:a b@host"))
    h.do(LegColdTransfer(h.leg("A"), "B"))
    assert "already has a transfer in progress" in h.refused(LegColdTransfer(h.leg("A"), "D"))
    h.hang("C")
    assert "not a member" in h.refused(LegColdTransfer(h.leg("C"), "D"))  # it left


def test_a_member_still_ringing_cannot_transfer() -> None:
    h = start(("A", AGENT), ("C", CUSTOMER))
    assert h.conf.members["A"].status is MemberStatus.DIALING
    assert "has not answered yet" in h.refused(LegColdTransfer(h.leg("A"), "B"))
