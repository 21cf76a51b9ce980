"""The transfer table: the documented one and the data agree, and a real Conference follows every row.

U1 = agent `A`, U2 = customer `C` (and, drawn, customer `D`), U3 = agent `B`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from corekit import AGENT, CUSTOMER, RULES, T0, Harness, start
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgeline.core.commands import (
    AbortTransfer,
    ColdTransfer,
    Hangup,
    ResumeCall,
    VoicemailDrop,
    WarmTransfer,
)
from bridgeline.core.model import (
    DIAL_FAILURES,
    MAIN_ROOM,
    EventType,
    LeaveReason,
    MemberStatus,
    Music,
    TransferKind,
    TransferState,
)
from bridgeline.core.transfer_table import REFUSALS, TABLE, Fate, TransferInput, Transition

SEMANTICS = Path(__file__).resolve().parents[2] / "docs" / "semantics.md"
_FINAL_EVENTS = {
    TransferState.COMPLETED: EventType.TRANSFER_COMPLETED,
    TransferState.ABORTED: EventType.TRANSFER_ABORTED,
    TransferState.FAILED: EventType.TRANSFER_FAILED,
}
_HANG_UP_REASONS = {"A": LeaveReason.TRANSFERRED, "B": LeaveReason.TRANSFER_ABORTED}
_PENDING = {
    TransferKind.WARM: (TransferState.DIALING, TransferState.CONSULTING),
    TransferKind.COLD: (TransferState.DIALING,),
}
ALL_PAIRS = [
    (kind, state, input_)
    for kind, states in _PENDING.items()
    for state, input_ in itertools.product(states, TransferInput)
]


# ----------------------------------------------------------------- (a) the documented table is the data
def documented_rows() -> list[tuple[str, ...]]:
    """The rows of the table in docs/semantics.md's "Transfers" section, cells without backticks."""
    section = SEMANTICS.read_text().split("\n## Transfers\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")][2:]  # past header and rule
    return [tuple(cell.strip().strip("`") for cell in line.strip("|").split("|")) for line in lines]


def data_rows() -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [
        (k, s, i, t.next_state, t.outcome or "", t.initiator, t.target) for (k, s, i), t in TABLE.items()
    ]
    rows += [(k, s, i, "refused", "", "", "", f'"{reason}"') for (k, s, i), reason in REFUSALS.items()]
    return rows


def test_the_documented_transfer_table_is_the_data_row_for_row() -> None:
    documented = documented_rows()
    # The "What happens" column is prose, except for a refusal, whose reason is checked.
    compared = [row if row[3] == "refused" else row[:7] for row in documented]
    assert compared == data_rows()


# A human-readable row: "dialing" first (after a kind, maybe), a later state on the same line.
_PROSE_ROW = re.compile(
    r"^[^\w\n]*((warm|cold)[^\w\n]+)?dialing\W.*\b(consulting|completed|aborted|failed)\b", re.I | re.M
)


def test_the_transfer_table_is_written_out_once() -> None:
    root = SEMANTICS.parents[1]
    sources = [*root.glob("docs/*.md"), *root.glob("src/bridgeline/**/*.py")]
    holding = [p.name for p in sources if p.name != "transfer_table.py" and _PROSE_ROW.search(p.read_text())]
    assert holding == ["semantics.md"]


def test_every_pair_is_a_row_a_refusal_or_does_not_concern_the_transfer() -> None:
    assert not TABLE.keys() & REFUSALS.keys()
    assert set(TABLE) | set(REFUSALS) <= set(ALL_PAIRS)
    ignored = set(ALL_PAIRS) - set(TABLE) - set(REFUSALS)
    # U3 cannot answer or fail once it has answered: nothing else is left out.
    assert ignored == {
        (TransferKind.WARM, TransferState.CONSULTING, TransferInput.TARGET_ANSWERED),
        (TransferKind.WARM, TransferState.CONSULTING, TransferInput.TARGET_FAILED),
    }


# ----------------------------------------------------------------- (b) a real Conference follows each row
def into(kind: TransferKind, state: TransferState, with_d: bool) -> Harness:
    parties = [("A", AGENT), ("C", CUSTOMER)] + ([("D", CUSTOMER)] if with_d else [])
    h = start(*parties, rules=RULES)
    h.answer(*(a for a, _ in parties))
    command = WarmTransfer if kind is TransferKind.WARM else ColdTransfer
    h.do(command("B", AGENT, "A"))
    if state is TransferState.CONSULTING:
        h.answer("B")
    assert (h.transfer().kind, h.transfer().state) == (kind, state)
    return h


Drive = Callable[[Harness, st.DataObject], None]


def _target_failed(h: Harness, data: st.DataObject) -> None:
    if h.status("B") is MemberStatus.DIALING and data.draw(st.booleans(), label="U3 times out or hangs up"):
        if data.draw(st.booleans(), label="ring timeout"):
            deadline = h.member("B").ring_deadline
            assert deadline is not None
            h.timer(max(deadline, h.now))
        else:
            h.hang("B")  # a ringing leg hanging up is a failed dial
        return
    h.fail("B", data.draw(st.sampled_from(sorted(DIAL_FAILURES)), label="failure"))


def _target_left(h: Harness, data: st.DataObject) -> None:
    if h.status("B") is MemberStatus.CONNECTED and data.draw(st.booleans(), label="U3 hangs up itself"):
        h.hang("B")
    else:
        h.do(Hangup("B"))


def _initiator_left(h: Harness, data: st.DataObject) -> None:
    how = data.draw(st.sampled_from(["api", "remote", "voicemail"]), label="U1 leaves by")
    if how == "api":
        h.do(Hangup("A"))
    elif how == "remote":
        h.hang("A")
    else:
        h.do(VoicemailDrop("A"))
        h.playback_done("A")


DRIVES: dict[TransferInput, Drive] = {
    TransferInput.TARGET_ANSWERED: lambda h, data: h.answer("B"),
    TransferInput.TARGET_FAILED: _target_failed,
    TransferInput.TARGET_LEFT: _target_left,
    TransferInput.INITIATOR_LEFT: _initiator_left,
    TransferInput.RESUME_CALL: lambda h, data: h.do(ResumeCall("A")),
    TransferInput.ABORT_TRANSFER: lambda h, data: h.do(AbortTransfer("A")),
    TransferInput.CONFERENCE_ENDED: lambda h, data: h.timer(T0 + RULES.max_duration),
}
COMMANDS = {TransferInput.RESUME_CALL: ResumeCall("A"), TransferInput.ABORT_TRANSFER: AbortTransfer("A")}


@pytest.mark.parametrize(("kind", "state", "input_"), ALL_PAIRS, ids=lambda v: str(v))
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_a_conference_follows_the_table(
    kind: TransferKind, state: TransferState, input_: TransferInput, data: st.DataObject
) -> None:
    h = into(kind, state, with_d=data.draw(st.booleans(), label="a second U2"))
    h.now += data.draw(st.floats(0, 60), label="seconds until the input")  # the virtual clock
    transfer = h.transfer()
    key = (kind, state, input_)
    if key in REFUSALS:
        assert h.refused(COMMANDS[input_]) == REFUSALS[key].format(initiator="A")
        return
    before = {a: (m.status, m.room) for a, m in h.conf.members.items()}
    published = len(h.published)
    DRIVES[input_](h, data)
    step = h.published[published:]
    transfer_events = [e for e in step if "transfer_id" in e.data]
    row = TABLE.get(key)
    if row is None:  # does not concern the transfer
        assert transfer.state is state
        assert transfer_events == []
        assert {a: (m.status, m.room) for a, m in h.conf.members.items()} == before
        return
    assert (transfer.state, transfer.outcome) == (row.next_state, row.outcome)
    assert [e.type for e in transfer_events] == expected_transfer_events(input_, row)
    for event in transfer_events:
        assert event.at == h.now
    if not row.next_state.pending:
        final = transfer_events[-1].data
        assert final["transfer_state"] == row.next_state
        assert final.get("outcome") == row.outcome
        target_input = input_ in (TransferInput.TARGET_FAILED, TransferInput.TARGET_LEFT)
        assert ("reason" in final) == target_input
    for address, fate in (("A", row.initiator), ("B", row.target)):
        left = [e for e in step if e.type is EventType.MEMBER_LEFT and e.data["member_address"] == address]
        hung_up = [e for e in left if e.data["reason"] == _HANG_UP_REASONS[address]]
        assert len(hung_up) == (fate is Fate.HUNG_UP)
        if fate is Fate.HUNG_UP:
            assert step.index(hung_up[0]) > step.index(transfer_events[-1])  # after the transfer event
        member = h.member(address)
        if member.live:
            assert member.room == (MAIN_ROOM if fate is Fate.TO_MAIN else before[address][1])
    check_audio(h, kind, row)


def expected_transfer_events(input_: TransferInput, row: Transition) -> list[EventType]:
    answered = [EventType.TRANSFER_ANSWERED] if input_ is TransferInput.TARGET_ANSWERED else []
    return answered + ([] if row.next_state.pending else [_FINAL_EVENTS[row.next_state]])


def check_audio(h: Harness, kind: TransferKind, row: Transition) -> None:
    """Connected members hear the connected others of their room; alone in the main room they hear
    their role's hold music while a warm transfer is pending, wait music otherwise."""
    members = h.conf.members.values()
    connected = [m for m in members if m.status is MemberStatus.CONNECTED and not m.playing_voicemail]
    consulting_away = kind is TransferKind.WARM and row.next_state.pending
    plan = h.plan()
    for member in connected:
        heard = {o.address for o in connected if o is not member and o.room == member.room}
        assert set(plan[member.address].hears) == heard, member.address
        if not heard:
            away = member.room == MAIN_ROOM and consulting_away
            assert plan[member.address].music == (Music.hold_for(member.role) if away else Music.WAIT)
        else:
            assert plan[member.address].music is None
