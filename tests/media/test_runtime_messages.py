"""Messages (`play`): they replace what the leg hears, end with one PlaybackFinished carrying their
token, and a replaced or closed message never reports."""

from __future__ import annotations

import numpy as np
import pytest
from media_sim import PCMA, Sim, dominant_freq, level_at
from numpy.typing import NDArray

from bridgeline.core.effects import LegAudio
from bridgeline.media.player import ToneSource
from bridgeline.media.runtime import PlaybackFinished, UnknownLeg


class Message:
    """A tone that lasts `frames` ticks, then is finished."""

    def __init__(self, freq: float, frames: int) -> None:
        self.tone = ToneSource(freq)
        self.left = frames

    @property
    def finished(self) -> bool:
        return self.left <= 0

    def next_frame(self) -> NDArray[np.int16]:
        self.left -= 1
        return self.tone.next_frame()


def finished(sim: Sim) -> list[tuple[str, object]]:
    return [(e.leg_id, e.token) for e in sim.events if isinstance(e, PlaybackFinished)]


def test_play_replaces_routes_then_reports_once() -> None:
    sim = Sim()
    a, b = sim.peer(440), sim.peer(880)
    sim.join("a", a)
    sim.join("b", b)
    sim.runtime.set_routes("c1", [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None)], {})
    sim.run(0.2)
    sim.runtime.play("a", Message(1000, frames=30), token="vm")  # 0.6 s
    started = sim.now
    sim.run(0.58)
    assert finished(sim) == []  # 29 of its 30 frames
    during = a.pcm_since(started)
    assert dominant_freq(during) == pytest.approx(1000, abs=4)
    assert level_at(during, 880) < 0.02  # only the message
    assert level_at(b.pcm_since(started), 1000) < 0.02  # b does not hear it
    sim.run(0.02)
    assert finished(sim) == [("a", "vm")]  # reported with the tick of its last frame
    mark = sim.settle(0.3)
    sim.run(0.2)
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)  # routes again
    assert finished(sim) == [("a", "vm")]


def test_a_replaced_or_closed_message_never_reports() -> None:
    sim = Sim()
    a, b = sim.peer(None), sim.peer(None, PCMA)
    sim.join("a", a)
    sim.join("b", b)
    sim.runtime.play("a", Message(700, frames=5), token=1)
    sim.runtime.play("a", Message(1000, frames=10), token=2)  # replaces 1 before it started
    sim.runtime.play("b", Message(1000, frames=10), token=3)
    mark = sim.run(0.1)
    sim.runtime.close_leg("b")
    sim.run(0.4)
    assert finished(sim) == [("a", 2)]
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(1000, abs=4)
    with pytest.raises(UnknownLeg):
        sim.runtime.play("b", Message(1000, frames=1))


def test_a_message_plays_to_a_leg_in_no_conference_and_to_a_three_party_member() -> None:
    sim = Sim()
    lone = sim.peer(None)
    sim.join("lone", lone)
    members = [sim.peer(f) for f in (440, 700, 1100)]
    for leg, peer in zip("xyz", members, strict=True):
        sim.join(leg, peer)
    routes = [LegAudio(leg, tuple(o for o in "xyz" if o != leg), None) for leg in "xyz"]
    sim.runtime.set_routes("c1", routes, {})
    sim.run(0.3)
    sim.runtime.play("lone", Message(1300, frames=10), token="l")
    sim.runtime.play("x", Message(1700, frames=10), token="x")
    mark = sim.run(0.2)
    assert dominant_freq(lone.pcm_since(mark)) == pytest.approx(1300, abs=4)
    assert dominant_freq(members[0].pcm_since(mark)) == pytest.approx(1700, abs=4)
    assert level_at(members[1].pcm_since(mark), 1700) < 0.02
    assert sorted(finished(sim)) == [("lone", "l"), ("x", "x")]
