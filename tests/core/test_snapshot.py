"""snapshot.dump / load: lossless, JSON-friendly, and a restored conference carries on identically."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from corekit import AGENT, CUSTOMER, RULES, T0, Harness, agent_and_customer, start

from bridgeline.core import snapshot
from bridgeline.core.commands import (
    AbortTransfer,
    Call,
    ColdTransfer,
    Command,
    Hangup,
    Hold,
    LegAnswered,
    LegHungUp,
    ResumeCall,
    VoicemailDrop,
    WarmTransfer,
)
from bridgeline.core.conference import MAX_DEPARTED_MEMBERS, MAX_FINISHED_TRANSFERS
from bridgeline.core.effects import DialLeg, SetAudio
from bridgeline.core.model import EventType, MemberStatus, QueuedDial, TransferState


def _talking(h: Harness) -> None:
    pass


def _consulting(h: Harness) -> None:
    h.do(WarmTransfer("B", AGENT, "A"))
    h.answer("B")


def _mixed(h: Harness) -> None:
    h.do(Hold("C"))
    h.do(ColdTransfer("B", AGENT, "A"))
    h.do(Call("D", CUSTOMER, "C"))
    h.ring("D")
    h.do(Hangup("A"))


def _voicemail(h: Harness) -> None:
    h.do(VoicemailDrop("C"))


def _ended(h: Harness) -> None:
    h.timer(T0 + RULES.max_duration)


STATES: dict[str, Callable[[Harness], None]] = {
    "talking": _talking,
    "consulting": _consulting,
    "mixed": _mixed,
    "voicemail": _voicemail,
    "ended": _ended,
}


def roundtrip(data: dict) -> dict:  # type: ignore[type-arg]
    return snapshot.dump(snapshot.load(json.loads(json.dumps(data))))


@pytest.mark.parametrize("prepare", STATES.values(), ids=STATES.keys())
def test_dump_survives_json_and_load(prepare: Callable[[Harness], None]) -> None:
    h = agent_and_customer()
    prepare(h)
    data = snapshot.dump(h.conf)
    assert roundtrip(data) == data


def test_queued_dials_survive_a_roundtrip() -> None:
    h = start(("A", AGENT), ("C", CUSTOMER), sequential=True)
    restored = snapshot.load(snapshot.dump(h.conf))
    assert restored.queued == [QueuedDial("C", CUSTOMER)]
    effects = restored.handle(LegAnswered(h.leg("A")), T0 + 1)
    assert [e.to for e in effects if isinstance(e, DialLeg)] == ["C"]


def test_a_restored_conference_behaves_like_the_original() -> None:
    h = agent_and_customer()
    _consulting(h)
    twin = snapshot.load(snapshot.dump(h.conf))
    script: list[Callable[[], Command]] = [
        lambda: Call("E", CUSTOMER, "C"),
        lambda: ResumeCall("A"),
        lambda: ColdTransfer("D", CUSTOMER, "B"),
        lambda: LegAnswered(h.leg("D")),
        lambda: Hold("C"),
        lambda: LegHungUp(h.leg("E")),
    ]
    for i, make in enumerate(script):
        command = make()
        original = h.conf.handle(command, h.now + i)
        restored = twin.handle(command, h.now + i)
        if i == 0:
            # The restored copy does not know which routing the carrier has, so it sends it once more.
            assert [e for e in original if isinstance(e, SetAudio)] == []
            assert restored == [*original, h.conf._last_audio]
        else:
            assert restored == original
        assert snapshot.dump(twin) == snapshot.dump(h.conf)


def test_dump_is_a_copy() -> None:
    h = agent_and_customer()
    data = snapshot.dump(h.conf)
    data["members"][0]["status"] = "left"
    assert h.conf.members["A"].status.value == "connected"


# Written by the first implementation (dataclasses.asdict + json) for the "mixed" state: stores hold
# snapshots like this one, which must keep loading.
FIRST_FORMAT = (
    '{"version":1,"conference_id":"c1","rules":{"max_participants":5,"max_duration":3600.0,"ring_timeout"'
    ':30.0,"voicemail_configured":true},"started_at":1000.0,"phase":"live","ended_at":null,"end_reason":n'
    'ull,"members":[{"address":"A","role":"agent","leg_id":"c1-l1","status":"left","room":"main","dialed_'
    'at":1000.0,"ring_deadline":null,"connected_at":1001.0,"left_at":1007.0,"leave_reason":"hangup","answ'
    'ered_by":"human","playing_voicemail":false,"ringing":false},{"address":"C","role":"customer","leg_id'
    '":"c1-l2","status":"on_hold","room":"main","dialed_at":1000.0,"ring_deadline":null,"connected_at":10'
    '02.0,"left_at":null,"leave_reason":null,"answered_by":"human","playing_voicemail":false,"ringing":fa'
    'lse},{"address":"B","role":"agent","leg_id":"c1-l3","status":"dialing","room":"main","dialed_at":100'
    '4.0,"ring_deadline":1034.0,"connected_at":null,"left_at":null,"leave_reason":null,"answered_by":null'
    ',"playing_voicemail":false,"ringing":false},{"address":"D","role":"customer","leg_id":"c1-l4","statu'
    's":"dialing","room":"main","dialed_at":1005.0,"ring_deadline":1035.0,"connected_at":null,"left_at":n'
    'ull,"leave_reason":null,"answered_by":null,"playing_voicemail":false,"ringing":true}],"transfers":[{'
    '"transfer_id":"c1-t1","kind":"cold","initiator":"A","target":"B","state":"dialing","started_at":1004'
    '.0,"ended_at":null,"outcome":null,"room":"main"}],"queued":[],"next_seq":12,"leg_counter":4,"transfe'
    'r_counter":1}'
)


def test_a_snapshot_of_the_first_implementation_loads_and_dumps_the_same() -> None:
    h = agent_and_customer()
    _mixed(h)
    data = json.loads(FIRST_FORMAT)
    restored = snapshot.load(data)
    assert snapshot.dump(restored) == data == snapshot.dump(h.conf)
    assert json.dumps(snapshot.dump(restored), separators=(",", ":")) == FIRST_FORMAT


def test_an_unknown_version_is_rejected() -> None:
    data = snapshot.dump(agent_and_customer().conf)
    with pytest.raises(ValueError, match="version"):
        snapshot.load({**data, "version": 99})


def test_a_long_conference_keeps_only_the_newest_departed_members() -> None:
    h = agent_and_customer()
    callees = [f"X{i}" for i in range(MAX_DEPARTED_MEMBERS + 10)]
    for callee in callees:
        h.do(Call(callee, CUSTOMER, "A"))
        h.answer(callee)
        h.do(Hangup(callee))
    departed = [m.address for m in h.conf.members.values() if not m.live]
    assert sorted(departed) == sorted(callees[10:])
    assert [m.address for m in h.conf.live_members()] == ["A", "C"]
    assert len(snapshot.dump(h.conf)["members"]) == MAX_DEPARTED_MEMBERS + 2
    # Every departure was still published.
    assert sum(e.type is EventType.MEMBER_LEFT for e in h.published) == len(callees)


def test_a_departed_initiator_of_a_pending_transfer_is_kept() -> None:
    h = agent_and_customer()
    h.do(ColdTransfer("B", AGENT, "A"))
    h.do(Hangup("A"))  # the cold transfer outlives its initiator's leg
    for i in range(MAX_DEPARTED_MEMBERS + 5):
        h.do(Call(f"X{i}", CUSTOMER, "C"))
        h.answer(f"X{i}")
        h.do(Hangup(f"X{i}"))
    assert h.conf.members["A"].status is MemberStatus.LEFT
    assert h.refused(Call("A", AGENT, "C")) == "A left a transfer that is still in progress"
    h.answer("B")
    assert h.transfer().state is TransferState.COMPLETED


def test_a_long_conference_keeps_only_the_newest_finished_transfers() -> None:
    h = agent_and_customer()
    for i in range(MAX_FINISHED_TRANSFERS + 5):
        h.do(WarmTransfer(f"T{i}", AGENT, "A"))
        h.do(AbortTransfer("A"))
    kept = [t.transfer_id for t in h.conf.transfers]
    assert kept == [f"c1-t{i}" for i in range(6, MAX_FINISHED_TRANSFERS + 6)]
    h.do(WarmTransfer("T-last", AGENT, "A"))
    assert h.conf.transfers[-1].state is TransferState.DIALING
    assert len(h.conf.transfers) == MAX_FINISHED_TRANSFERS + 1
