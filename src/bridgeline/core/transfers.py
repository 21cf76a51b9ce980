"""Warm and cold transfers: a small subset of Asterisk's attended-transfer machine.

U1 = the initiator (`trigger_source`), U2 = the members U1 was talking with in the main room,
U3 = the target being dialed.

Warm transfer (U1 consults U3 privately, in a room of the transfer's own):
    state       input                          next        effect
    DIALING     U3 answers                     CONSULTING  U1 and U3 hear only each other
    DIALING     U3 busy/no answer/rejected     FAILED      U1 back to the main room
    DIALING     abort_transfer on U1           ABORTED     U3's dial cancelled, U1 back
    DIALING     resume_call on U1              COMPLETED   U1 back; U3 joins the main room on answer
                                               (three_way)
    DIALING     U1 leaves                      COMPLETED   U3 joins the main room on answer (blind)
    CONSULTING  U1 leaves (hangup)             COMPLETED   U3 joins U2 in the main room (transferred)
    CONSULTING  resume_call on U1              COMPLETED   U1 and U3 join the main room (three_way)
    CONSULTING  abort_transfer on U1           ABORTED     U3 hung up, U1 back with U2
    CONSULTING  U3 leaves                      ABORTED     U1 back with U2
Cold transfer (U3 is dialed while U1 and U2 keep talking):
    DIALING     U3 answers                     COMPLETED   U1 disconnected (transferred); U3 joins U2
    DIALING     U3 busy/no answer/rejected     FAILED      nothing else changes
    DIALING     abort_transfer on U1           ABORTED     U3's dial cancelled
    DIALING     U1 leaves                      DIALING     the transfer goes on: U3 still joins U2
Every other (state, input) pair is refused with a reason, or does not concern the transfer.
While U1 consults, the members left alone in the main room hear their role's hold music.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridgeline.core.commands import AbortTransfer, ColdTransfer, ResumeCall, WarmTransfer
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import (
    DIAL_FAILURES,
    MAIN_ROOM,
    EventType,
    LeaveReason,
    Member,
    MemberStatus,
    Transfer,
    TransferKind,
    TransferOutcome,
    TransferState,
)

if TYPE_CHECKING:
    from bridgeline.core.conference import Conference

__all__ = ["abort_transfer", "cold_transfer", "resume_call", "warm_transfer"]

_FINAL_EVENTS = {
    TransferState.COMPLETED: EventType.TRANSFER_COMPLETED,
    TransferState.ABORTED: EventType.TRANSFER_ABORTED,
    TransferState.FAILED: EventType.TRANSFER_FAILED,
}


def warm_transfer(conf: Conference, command: WarmTransfer, now: float) -> None:
    initiator = _require_can_transfer(conf, command.trigger_source)
    conf.require_can_add(command.to)
    transfer = _open(conf, TransferKind.WARM, initiator, command.to, now)
    transfer.room = f"consult-{transfer.transfer_id.rsplit('-', 1)[-1]}"
    initiator.room = transfer.room
    conf.dial(command.to, command.role, transfer.room, now)


def cold_transfer(conf: Conference, command: ColdTransfer, now: float) -> None:
    initiator = _require_can_transfer(conf, command.trigger_source)
    conf.require_can_add(command.to)
    _open(conf, TransferKind.COLD, initiator, command.to, now)
    conf.dial(command.to, command.role, MAIN_ROOM, now)


def resume_call(conf: Conference, command: ResumeCall, now: float) -> None:
    member = conf.require_member(command.address)
    transfer = conf.pending_transfer_by(member.address)
    if transfer is None:
        raise ActionRefused(f"no warm transfer in progress initiated by {member.address}")
    if transfer.kind is not TransferKind.WARM:
        raise ActionRefused(f"resume_call applies to a warm transfer; {member.address} started a cold one")
    member.room = MAIN_ROOM
    conf.members[transfer.target].room = MAIN_ROOM
    finish(conf, transfer, TransferState.COMPLETED, now, outcome=TransferOutcome.THREE_WAY)


def abort_transfer(conf: Conference, command: AbortTransfer, now: float) -> None:
    member = conf.require_member(command.address)
    transfer = conf.pending_transfer_by(member.address)
    if transfer is None:
        raise ActionRefused(f"no transfer in progress initiated by {member.address}")
    member.room = MAIN_ROOM
    finish(conf, transfer, TransferState.ABORTED, now)
    target = conf.live_member(transfer.target)
    if target is not None:
        conf.member_left(target, LeaveReason.TRANSFER_ABORTED, now, drop_leg=True)


def on_target_answered(conf: Conference, member: Member, now: float) -> None:
    transfer = conf.pending_transfer_to(member.address)
    if transfer is None:
        return
    if transfer.kind is TransferKind.WARM:
        transfer.state = TransferState.CONSULTING  # before the event: events carry the state after them
    conf.emit(now, EventType.TRANSFER_ANSWERED, transfer_data(transfer))
    if transfer.kind is TransferKind.WARM:
        return
    finish(conf, transfer, TransferState.COMPLETED, now, outcome=TransferOutcome.TRANSFERRED)
    initiator = conf.live_member(transfer.initiator)
    if initiator is not None:
        conf.member_left(initiator, LeaveReason.TRANSFERRED, now, drop_leg=True)


def on_member_left(conf: Conference, member: Member, reason: LeaveReason, now: float) -> None:
    started = conf.pending_transfer_by(member.address)
    if started is not None and started.kind is TransferKind.WARM:
        outcome = (
            TransferOutcome.TRANSFERRED
            if started.state is TransferState.CONSULTING
            else TransferOutcome.BLIND
        )
        conf.members[started.target].room = MAIN_ROOM
        finish(conf, started, TransferState.COMPLETED, now, outcome=outcome)
    targeted = conf.pending_transfer_to(member.address)
    if targeted is not None:
        initiator = conf.live_member(targeted.initiator)
        if initiator is not None:
            initiator.room = MAIN_ROOM
        state = TransferState.FAILED if reason in DIAL_FAILURES else TransferState.ABORTED
        finish(conf, targeted, state, now, reason=reason)


def finish(
    conf: Conference,
    transfer: Transfer,
    state: TransferState,
    now: float,
    *,
    outcome: TransferOutcome | None = None,
    reason: LeaveReason | None = None,
) -> None:
    transfer.state = state
    transfer.ended_at = now
    transfer.outcome = outcome
    data = transfer_data(transfer)
    if reason is not None:
        data["reason"] = reason.value
    conf.emit(now, _FINAL_EVENTS[state], data)


def transfer_data(transfer: Transfer) -> dict[str, Any]:
    data: dict[str, Any] = {
        "transfer_id": transfer.transfer_id,
        "transfer_type": transfer.kind.value,
        "initiator": transfer.initiator,
        "target": transfer.target,
        "transfer_state": transfer.state.value,
    }
    if transfer.outcome is not None:
        data["outcome"] = transfer.outcome.value
    return data


def _require_can_transfer(conf: Conference, address: str) -> Member:
    initiator = conf.require_trigger(address)
    if initiator.status is not MemberStatus.CONNECTED:
        raise ActionRefused(
            f"trigger_source {address} must be connected to transfer (status: {initiator.status})"
        )
    if initiator.playing_voicemail:
        raise ActionRefused(f"trigger_source {address} is playing a voicemail drop")
    if conf.pending_transfer_by(address) is not None:
        raise ActionRefused(f"trigger_source {address} already has a transfer in progress")
    if initiator.room != MAIN_ROOM:
        raise ActionRefused(f"trigger_source {address} is in a private consultation")
    return initiator


def _open(conf: Conference, kind: TransferKind, initiator: Member, target: str, now: float) -> Transfer:
    transfer = Transfer(
        transfer_id=conf.new_transfer_id(),
        kind=kind,
        initiator=initiator.address,
        target=target,
        state=TransferState.DIALING,
        started_at=now,
    )
    conf.transfers.append(transfer)
    conf.emit(now, EventType.TRANSFER_STARTED, transfer_data(transfer))
    return transfer
