"""The warm and cold transfer machine as data: (kind, state, input) -> transition.

`transfers.py` decides every transition by looking it up here. The human-readable copy is the table
in docs/semantics.md ("Transfers"); tests/core/test_transfers_table.py keeps the two equal row for row.
A (kind, state, input) found in neither TABLE nor REFUSALS does not concern the transfer: U3
answering or failing once it has answered cannot happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bridgeline.core.model import TransferKind, TransferOutcome, TransferState

__all__ = ["REFUSALS", "TABLE", "Fate", "TransferInput", "Transition"]


class TransferInput(StrEnum):
    TARGET_ANSWERED = "target_answered"
    TARGET_FAILED = "target_failed"  # U3's dial failed: busy, no answer, rejected, failed
    TARGET_LEFT = "target_left"  # U3 left for any other reason
    INITIATOR_LEFT = "initiator_left"  # for any reason
    RESUME_CALL = "resume_call"  # on U1
    ABORT_TRANSFER = "abort_transfer"  # on U1
    CONFERENCE_ENDED = "conference_ended"


class Fate(StrEnum):
    """What a transition does to U1 or to U3 (U2 never moves: it stays in the main room)."""

    STAYS = "stays"
    TO_MAIN = "to_main"  # into the main room (a U3 still ringing joins it on answer)
    HUNG_UP = "hung_up"  # U1 with reason `transferred`, U3 with `transfer_aborted`


@dataclass(frozen=True, slots=True)
class Transition:
    next_state: TransferState
    outcome: TransferOutcome | None = None
    initiator: Fate = Fate.STAYS
    target: Fate = Fate.STAYS


_W, _C = TransferKind.WARM, TransferKind.COLD
_DIALING, _CONSULTING = TransferState.DIALING, TransferState.CONSULTING
_In = TransferInput
_COMPLETED, _ABORTED, _FAILED = TransferState.COMPLETED, TransferState.ABORTED, TransferState.FAILED
_MAIN, _HUNG_UP = Fate.TO_MAIN, Fate.HUNG_UP

# In the order of the table in docs/semantics.md.
TABLE: dict[tuple[TransferKind, TransferState, TransferInput], Transition] = {
    (_W, _DIALING, _In.TARGET_ANSWERED): Transition(_CONSULTING),
    (_W, _DIALING, _In.TARGET_FAILED): Transition(_FAILED, initiator=_MAIN),
    (_W, _DIALING, _In.TARGET_LEFT): Transition(_ABORTED, initiator=_MAIN),
    (_W, _DIALING, _In.ABORT_TRANSFER): Transition(_ABORTED, initiator=_MAIN, target=_HUNG_UP),
    (_W, _DIALING, _In.RESUME_CALL): Transition(
        _COMPLETED, TransferOutcome.THREE_WAY, initiator=_MAIN, target=_MAIN
    ),
    (_W, _DIALING, _In.INITIATOR_LEFT): Transition(_COMPLETED, TransferOutcome.BLIND, target=_MAIN),
    (_W, _DIALING, _In.CONFERENCE_ENDED): Transition(_ABORTED),
    (_W, _CONSULTING, _In.INITIATOR_LEFT): Transition(_COMPLETED, TransferOutcome.TRANSFERRED, target=_MAIN),
    (_W, _CONSULTING, _In.RESUME_CALL): Transition(
        _COMPLETED, TransferOutcome.THREE_WAY, initiator=_MAIN, target=_MAIN
    ),
    (_W, _CONSULTING, _In.ABORT_TRANSFER): Transition(_ABORTED, initiator=_MAIN, target=_HUNG_UP),
    (_W, _CONSULTING, _In.TARGET_LEFT): Transition(_ABORTED, initiator=_MAIN),
    (_W, _CONSULTING, _In.CONFERENCE_ENDED): Transition(_ABORTED),
    (_C, _DIALING, _In.TARGET_ANSWERED): Transition(
        _COMPLETED, TransferOutcome.TRANSFERRED, initiator=_HUNG_UP
    ),
    (_C, _DIALING, _In.TARGET_FAILED): Transition(_FAILED),
    (_C, _DIALING, _In.TARGET_LEFT): Transition(_ABORTED),
    (_C, _DIALING, _In.ABORT_TRANSFER): Transition(_ABORTED, target=_HUNG_UP),
    (_C, _DIALING, _In.INITIATOR_LEFT): Transition(_DIALING),  # the transfer goes on
    (_C, _DIALING, _In.CONFERENCE_ENDED): Transition(_ABORTED),
}

# Refused with this reason (formatted with the initiator's address); nothing changes.
REFUSALS: dict[tuple[TransferKind, TransferState, TransferInput], str] = {
    (_C, _DIALING, _In.RESUME_CALL): "resume_call applies to a warm transfer; {initiator} started a cold one",
}
