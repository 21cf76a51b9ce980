"""Who hears whom: the audio plan of every scenario of the spec, and the SetAudio that carries it.

A = agent (U1), C = customer (U2), B = agent (U3), D = a second agent.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from corekit import (
    AGENT,
    AGENT_HOLD,
    CUSTOMER,
    CUSTOMER_HOLD,
    SILENCE,
    VOICEMAIL,
    WAIT,
    Harness,
    hears,
    start,
)

from bridgeline.core.audio import Listening
from bridgeline.core.commands import (
    AbortTransfer,
    Call,
    ColdTransfer,
    Hangup,
    Hold,
    Mute,
    ResumeCall,
    Unhold,
    Unmute,
    VoicemailDrop,
    WarmTransfer,
)
from bridgeline.core.effects import LegAudio, SetAudio
from bridgeline.core.model import MAIN_ROOM

Step = Callable[[Harness], object]


def answered(*addresses: str) -> Step:
    return lambda h: h.answer(*addresses)


def do(command: object) -> Step:
    return lambda h: h.do(command)  # type: ignore[arg-type]


AC = [answered("A", "C")]
WARM = [*AC, do(WarmTransfer("B", AGENT, "A"))]
CONSULT = [*WARM, answered("B")]
COLD = [*AC, do(ColdTransfer("B", AGENT, "A"))]

SCENARIOS: dict[str, tuple[list[Step], dict[str, Listening]]] = {
    "nobody answered yet": ([], {}),
    "agent alone waits for the customer": ([answered("A")], {"A": WAIT}),
    "agent and customer talk": (AC, {"A": hears("C"), "C": hears("A")}),
    "a dialed party is heard by nobody before it answers": (
        [*AC, do(Call("B", AGENT, "A"))],
        {"A": hears("C"), "C": hears("A")},
    ),
    "call answered: everybody hears everybody": (
        [*AC, do(Call("B", AGENT, "A")), answered("B")],
        {"A": hears("C", "B"), "C": hears("A", "B"), "B": hears("A", "C")},
    ),
    "a member who left is in no plan": (
        [*AC, do(Call("B", AGENT, "A")), answered("B"), do(Hangup("B"))],
        {"A": hears("C"), "C": hears("A")},
    ),
    "agent holds the only customer: agent hears silence": (
        [*AC, do(Hold("C"))],
        {"A": SILENCE, "C": CUSTOMER_HOLD},
    ),
    "customer holds the only agent: customer hears silence": (
        [*AC, do(Hold("A"))],
        {"A": AGENT_HOLD, "C": SILENCE},
    ),
    "one of three on hold: the other two still talk": (
        [*AC, do(Call("D", AGENT, "A")), answered("D"), do(Hold("C"))],
        {"A": hears("D"), "C": CUSTOMER_HOLD, "D": hears("A")},
    ),
    "unhold restores the conversation": (
        [*AC, do(Hold("C")), do(Unhold("C"))],
        {"A": hears("C"), "C": hears("A")},
    ),
    "muted customer: heard by nobody, still hears the agent; the agent hears silence, no music": (
        [*AC, do(Mute("C"))],
        {"A": SILENCE, "C": hears("A")},
    ),
    "one of three muted: the other two hear each other, the muted one hears both": (
        [*AC, do(Call("D", AGENT, "A")), answered("D"), do(Mute("C"))],
        {"A": hears("D"), "C": hears("A", "D"), "D": hears("A")},
    ),
    "unmute restores the conversation": (
        [*AC, do(Mute("C")), do(Unmute("C"))],
        {"A": hears("C"), "C": hears("A")},
    ),
    "muted then held: hold music; unheld it is still muted": (
        [*AC, do(Mute("C")), do(Hold("C")), do(Unhold("C"))],
        {"A": SILENCE, "C": hears("A")},
    ),
    "muted U1 consulting: U3 hears silence, U1 hears U3": (
        [*CONSULT, do(Mute("A"))],
        {"A": hears("B"), "B": SILENCE, "C": CUSTOMER_HOLD},
    ),
    "muted U3 stays muted after resume_call": (
        [*CONSULT, do(Mute("B")), do(ResumeCall("A"))],
        {"A": hears("C"), "B": hears("A", "C"), "C": hears("A")},
    ),
    "warm transfer with only a muted agent left beside the customer: customer hold music": (
        [*AC, do(Call("D", AGENT, "A")), answered("D"), do(Mute("D")), do(WarmTransfer("B", AGENT, "A"))],
        {"A": WAIT, "C": CUSTOMER_HOLD, "D": hears("C")},
    ),
    "voicemail drop: the member hears the message, the other waits": (
        [*AC, do(VoicemailDrop("C"))],
        {"A": WAIT, "C": VOICEMAIL},
    ),
    "warm dialing: U1 waits alone, U2 hears customer hold music": (WARM, {"A": WAIT, "C": CUSTOMER_HOLD}),
    "warm consulting: U1 and U3 hear only each other": (
        CONSULT,
        {"A": hears("B"), "B": hears("A"), "C": CUSTOMER_HOLD},
    ),
    "warm consulting with U1 on hold: U3 hears silence": (
        [*CONSULT, do(Hold("A"))],
        {"A": AGENT_HOLD, "B": SILENCE, "C": CUSTOMER_HOLD},
    ),
    "warm consulting with U2 on hold: U2 still hears only hold music": (
        [*CONSULT, do(Hold("C"))],
        {"A": hears("B"), "B": hears("A"), "C": CUSTOMER_HOLD},
    ),
    "warm transfer with an agent left in the main room: agent hold music": (
        [
            answered("A", "C"),
            do(Hangup("C")),
            do(Call("D", AGENT, "A")),
            answered("D"),
            do(WarmTransfer("B", AGENT, "A")),
        ],
        {"A": WAIT, "D": AGENT_HOLD},
    ),
    "warm completed by U1 hanging up: U3 and U2 talk": (
        [*CONSULT, do(Hangup("A"))],
        {"B": hears("C"), "C": hears("B")},
    ),
    "warm resumed: three-way in the main room": (
        [*CONSULT, do(ResumeCall("A"))],
        {"A": hears("C", "B"), "B": hears("A", "C"), "C": hears("A", "B")},
    ),
    "warm aborted: U1 back with U2": (
        [*CONSULT, do(AbortTransfer("A"))],
        {"A": hears("C"), "C": hears("A")},
    ),
    "cold dialing: U1 and U2 keep talking": (COLD, {"A": hears("C"), "C": hears("A")}),
    "cold answered: U2 and U3 talk": ([*COLD, answered("B")], {"B": hears("C"), "C": hears("B")}),
    "cold aborted: U1 and U2 keep talking": (
        [*COLD, do(AbortTransfer("A"))],
        {"A": hears("C"), "C": hears("A")},
    ),
}


@pytest.mark.parametrize(("steps", "expected"), SCENARIOS.values(), ids=SCENARIOS.keys())
def test_who_hears_whom(steps: list[Step], expected: dict[str, Listening]) -> None:
    h = start(("A", AGENT), ("C", CUSTOMER))
    for step in steps:
        step(h)
    plan = h.plan()
    assert plan == expected
    # The conference recording hears the main room's talkers (core/recording.py).
    talkers = tuple(m.leg_id for m in h.conf.members.values() if m.talking and m.room == MAIN_ROOM)
    assert h.routing == SetAudio(
        tuple(
            LegAudio(h.leg(a), tuple(h.leg(x) for x in listening.hears), listening.music)
            for a, listening in plan.items()
        ),
        talkers,
    )


def test_the_plan_is_derived_from_state_and_does_not_change_on_reads() -> None:
    h = start(("A", AGENT), ("C", CUSTOMER))
    h.answer("A", "C")
    assert h.plan() == h.plan()
    assert h.conf.audio_plan() is not h.conf.audio_plan()


def test_music_sources_name_one_field_per_music_kind() -> None:
    """A carrier looks a kind's spec up by the kind's wire value: every kind must have its field."""
    from dataclasses import fields

    from bridgeline.core.effects import MusicSources
    from bridgeline.core.model import Music

    assert [f.name for f in fields(MusicSources)] == [kind.value for kind in Music]
    sources = MusicSources(wait="tone:350", voicemail="vm.wav")
    assert [sources.spec(kind) for kind in Music] == [None, None, "tone:350", "vm.wav"]
