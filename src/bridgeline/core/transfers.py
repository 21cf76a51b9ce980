"""Warm and cold transfers: a small subset of Asterisk's attended-transfer machine.

U1 = the initiator (`trigger_source`), U2 = the members U1 was talking with in the main room,
U3 = the target being dialed.

The (kind, state, input) -> transition table is data, in `transfer_table.py`; this module opens
transfers, turns what happens to U1 and U3 into inputs, and applies the row it finds there.
While U1 consults, the members left alone in the main room hear their role's hold music.

Every function here works on the conference's `Floor` (`floor.py`: members, transfers, and the steps
that change them), never on the `Conference`, whose public API is only its inputs and queries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridgeline.core.address import InvalidAddress, classify
from bridgeline.core.commands import AbortTransfer, ColdTransfer, LegColdTransfer, ResumeCall, WarmTransfer
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
from bridgeline.core.transfer_table import REFUSALS, TABLE, Fate, TransferInput

if TYPE_CHECKING:
    from bridgeline.core.floor import Floor

__all__ = ["abort_transfer", "cold_transfer", "leg_cold_transfer", "resume_call", "warm_transfer"]

_FINAL_EVENTS = {
    TransferState.COMPLETED: EventType.TRANSFER_COMPLETED,
    TransferState.ABORTED: EventType.TRANSFER_ABORTED,
    TransferState.FAILED: EventType.TRANSFER_FAILED,
}


def warm_transfer(floor: Floor, command: WarmTransfer, now: float) -> None:
    initiator = _require_can_transfer(floor, command.trigger_source)
    floor.require_can_add(command.to)
    transfer = _open(floor, TransferKind.WARM, initiator, command.to, now)
    transfer.room = f"consult-{transfer.transfer_id.rsplit('-', 1)[-1]}"
    initiator.room = transfer.room
    floor.dial(command.to, command.role, transfer.room, now)


def cold_transfer(floor: Floor, command: ColdTransfer, now: float) -> None:
    initiator = _require_can_transfer(floor, command.trigger_source)
    floor.require_can_add(command.to)
    _open(floor, TransferKind.COLD, initiator, command.to, now)
    floor.dial(command.to, command.role, MAIN_ROOM, now)


def leg_cold_transfer(floor: Floor, command: LegColdTransfer, now: float) -> None:
    """A member's phone asked for a cold transfer itself (SIP REFER): the API's cold transfer, with
    that member as its trigger."""
    member = floor.member_by_leg(command.leg_id)
    if member is None or not member.live:
        raise ActionRefused("the call asking for a transfer is not a member of this conference")
    try:
        classify(command.to)
    except InvalidAddress as exc:
        raise ActionRefused(str(exc)) from exc
    cold_transfer(floor, ColdTransfer(command.to, member.role, member.address), now)


def resume_call(floor: Floor, command: ResumeCall, now: float) -> None:
    member = floor.require_member(command.address)
    transfer = floor.pending_transfer_by(member.address)
    if transfer is None:
        raise ActionRefused(f"no warm transfer in progress initiated by {member.address}")
    _step(floor, transfer, TransferInput.RESUME_CALL, now)


def abort_transfer(floor: Floor, command: AbortTransfer, now: float) -> None:
    member = floor.require_member(command.address)
    transfer = floor.pending_transfer_by(member.address)
    if transfer is None:
        raise ActionRefused(f"no transfer in progress initiated by {member.address}")
    _step(floor, transfer, TransferInput.ABORT_TRANSFER, now)


def on_target_answered(floor: Floor, member: Member, now: float) -> None:
    transfer = floor.pending_transfer_to(member.address)
    if transfer is not None:
        _step(floor, transfer, TransferInput.TARGET_ANSWERED, now)


def on_member_left(floor: Floor, member: Member, reason: LeaveReason, now: float) -> None:
    started = floor.pending_transfer_by(member.address)
    if started is not None:
        _step(floor, started, TransferInput.INITIATOR_LEFT, now)
    targeted = floor.pending_transfer_to(member.address)
    if targeted is not None:
        input_ = TransferInput.TARGET_FAILED if reason in DIAL_FAILURES else TransferInput.TARGET_LEFT
        _step(floor, targeted, input_, now, reason)


def on_conference_ended(floor: Floor, now: float) -> None:
    """Before the members leave: an initiator leaving would otherwise "complete" its transfer."""
    for transfer in floor.transfers:
        if transfer.state.pending:
            _step(floor, transfer, TransferInput.CONFERENCE_ENDED, now)


def _step(
    floor: Floor, transfer: Transfer, input_: TransferInput, now: float, reason: LeaveReason | None = None
) -> None:
    """Apply the table's row for this input; `reason` is U3's, when its departure is the input."""
    key = (transfer.kind, transfer.state, input_)
    if key in REFUSALS:
        raise ActionRefused(REFUSALS[key].format(initiator=transfer.initiator))
    row = TABLE.get(key)
    if row is None:
        return  # does not concern the transfer
    _move(floor, transfer.initiator, row.initiator)
    _move(floor, transfer.target, row.target)
    if row.next_state.pending:
        transfer.state = row.next_state  # before the event: events carry the state after them
    if input_ is TransferInput.TARGET_ANSWERED:
        floor.emit(now, EventType.TRANSFER_ANSWERED, transfer_data(transfer))
    if not row.next_state.pending:
        finish(floor, transfer, row.next_state, now, outcome=row.outcome, reason=reason)
    _hang_up(floor, transfer.initiator, row.initiator, LeaveReason.TRANSFERRED, now)
    _hang_up(floor, transfer.target, row.target, LeaveReason.TRANSFER_ABORTED, now)


def _move(floor: Floor, address: str, fate: Fate) -> None:
    member = floor.live_member(address)
    if member is not None and fate is Fate.TO_MAIN:
        member.room = MAIN_ROOM


def _hang_up(floor: Floor, address: str, fate: Fate, reason: LeaveReason, now: float) -> None:
    member = floor.live_member(address)
    if member is not None and fate is Fate.HUNG_UP:
        floor.member_left(member, reason, now, drop_leg=True)


def finish(
    floor: Floor,
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
    floor.emit(now, _FINAL_EVENTS[state], data)


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


def _require_can_transfer(floor: Floor, address: str) -> Member:
    initiator = floor.require_trigger(address)
    if initiator.status is not MemberStatus.CONNECTED:
        raise ActionRefused(
            f"trigger_source {address} must be connected to transfer (status: {initiator.status})"
        )
    if initiator.playing_voicemail:
        raise ActionRefused(f"trigger_source {address} is playing a voicemail drop")
    if floor.pending_transfer_by(address) is not None:
        raise ActionRefused(f"trigger_source {address} already has a transfer in progress")
    if initiator.room != MAIN_ROOM:
        raise ActionRefused(f"trigger_source {address} is in a private consultation")
    return initiator


def _open(floor: Floor, kind: TransferKind, initiator: Member, target: str, now: float) -> Transfer:
    transfer = Transfer(
        transfer_id=floor.new_transfer_id(),
        kind=kind,
        initiator=initiator.address,
        target=target,
        state=TransferState.DIALING,
        started_at=now,
    )
    floor.transfers.append(transfer)
    floor.emit(now, EventType.TRANSFER_STARTED, transfer_data(transfer))
    return transfer
