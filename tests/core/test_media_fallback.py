"""A music or message source that could not be played is published as a `media_fallback` event for the
member that should have heard it; it changes nothing else."""

from __future__ import annotations

from corekit import agent_and_customer

from bridgeline.core.commands import Hold, LegMediaFailed
from bridgeline.core.effects import SetAudio
from bridgeline.core.model import EventType


def test_a_failed_source_is_published_with_the_member_the_setting_and_the_reason() -> None:
    h = agent_and_customer()
    h.do(Hold("C"))
    plan = h.plan()
    effects = h.do(LegMediaFailed(h.leg("C"), "customer_hold_music", "hold.wav: not a regular file"))
    assert h.types() == [EventType.MEDIA_FALLBACK]
    assert h.event(EventType.MEDIA_FALLBACK) == {
        "member_address": "C",
        "role": "customer",
        "status": "on_hold",
        "leg_id": h.leg("C"),
        "mute": False,
        "answered_by": "human",
        "setting": "customer_hold_music",
        "reason": "hold.wav: not a regular file",
    }
    assert not [e for e in effects if isinstance(e, SetAudio)] and h.plan() == plan


def test_reports_for_unknown_or_departed_legs_and_ended_conferences_are_ignored() -> None:
    h = agent_and_customer()
    assert h.do(LegMediaFailed("no-such-leg", "wait_music", "x")) == []
    leg = h.leg("C")
    h.hang("C")
    assert h.do(LegMediaFailed(leg, "wait_music", "x")) == []
    h.hang("A")
    assert not h.conf.live and h.do(LegMediaFailed(leg, "wait_music", "x")) == []
