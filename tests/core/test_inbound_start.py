"""Conferences that start with an inbound caller already on the line."""

from __future__ import annotations

import pytest

from bridgeline.core.commands import LegAnswered, LegDtmf, LegFailed, LegHungUp
from bridgeline.core.conference import Conference, ConferenceRules
from bridgeline.core.effects import DialLeg, Publish
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import AnsweredParty, LeaveReason, MemberStatus, Music, QueuedDial, Role

CALLER, AGENT, AGENT2 = "+14155550100", "alice", "bob"


def start(*dials: QueuedDial, sequential: bool = True) -> tuple[Conference, list[object]]:
    conf, effects = Conference.start(
        "c1",
        ConferenceRules(),
        0.0,
        list(dials),
        sequential=sequential,
        answered=[AnsweredParty(CALLER, Role.CUSTOMER, "in-1")],
    )
    return conf, list(effects)


def test_the_caller_is_connected_at_once_and_the_agent_is_dialed() -> None:
    conf, effects = start(QueuedDial(AGENT, Role.AGENT))
    caller = conf.members[CALLER]
    assert caller.status is MemberStatus.CONNECTED and caller.leg_id == "in-1"
    assert [e.event.type for e in effects if isinstance(e, Publish)] == [
        "conference_started",
        "member_connected",
        "member_dialing",
    ]
    assert [e.to for e in effects if isinstance(e, DialLeg)] == [AGENT]
    assert conf.audio_plan()[CALLER].music is Music.WAIT  # waiting alone for the agent


def test_the_caller_and_the_agent_hear_each_other_once_it_answers() -> None:
    conf, _ = start(QueuedDial(AGENT, Role.AGENT))
    conf.handle(LegAnswered(conf.members[AGENT].leg_id), 1.0)
    plan = conf.audio_plan()
    assert plan[CALLER].hears == (AGENT,) and plan[AGENT].hears == (CALLER,)


def test_sequential_dials_the_next_agent_only_after_the_first_answers() -> None:
    conf, effects = start(QueuedDial(AGENT, Role.AGENT), QueuedDial(AGENT2, Role.AGENT))
    assert [e.to for e in effects if isinstance(e, DialLeg)] == [AGENT]
    more = conf.handle(LegAnswered(conf.members[AGENT].leg_id), 1.0)
    assert [e.to for e in more if isinstance(e, DialLeg)] == [AGENT2]


def test_an_agent_who_does_not_answer_leaves_the_caller_waiting() -> None:
    conf, _ = start(QueuedDial(AGENT, Role.AGENT))
    conf.handle(LegFailed(conf.members[AGENT].leg_id, LeaveReason.BUSY), 1.0)
    assert conf.live and conf.members[CALLER].status is MemberStatus.CONNECTED


def test_the_caller_hanging_up_alone_ends_the_conference() -> None:
    conf, _ = start()
    assert conf.live
    conf.handle(LegHungUp("in-1"), 2.0)
    assert not conf.live and conf.members[CALLER].leave_reason is LeaveReason.REMOTE_HANGUP


def test_an_address_both_answered_and_dialed_is_refused() -> None:
    with pytest.raises(ActionRefused, match="twice"):
        start(QueuedDial(CALLER, Role.AGENT))


def test_a_key_press_is_published_with_the_member_and_changes_nothing_else() -> None:
    conf, _ = start(QueuedDial(AGENT, Role.AGENT))
    before = conf.audio_plan()
    effects = conf.handle(LegDtmf("in-1", "5"), 1.0)
    (event,) = [e.event for e in effects if isinstance(e, Publish)]
    assert event.type == "member_dtmf"
    assert event.data["digit"] == "5" and event.data["member_address"] == CALLER
    assert conf.audio_plan() == before


def test_key_presses_from_a_leg_still_ringing_are_ignored() -> None:
    conf, _ = start(QueuedDial(AGENT, Role.AGENT))
    assert conf.handle(LegDtmf(conf.members[AGENT].leg_id, "1"), 1.0) == []
