"""snapshot.dump / load: lossless, JSON-friendly, and a restored conference carries on identically."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from corekit import AGENT, CUSTOMER, RULES, T0, Harness, agent_and_customer, start

from bridgeline.core import snapshot
from bridgeline.core.commands import (
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
from bridgeline.core.effects import DialLeg, SetAudio
from bridgeline.core.model import QueuedDial


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


def test_an_unknown_version_is_rejected() -> None:
    data = snapshot.dump(agent_and_customer().conf)
    with pytest.raises(ValueError, match="version"):
        snapshot.load({**data, "version": 99})
