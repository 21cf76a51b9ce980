"""mute / unmute: a flag beside the member's status, refused on repeat like hold, kept across hold,
transfers and restarts. What is heard is in test_audio.py; the status matrix in test_conference.py.

A = agent (U1), C = customer, B = transfer target.
"""

from __future__ import annotations

from corekit import AGENT, agent_and_customer

from bridgeline.core import snapshot
from bridgeline.core.commands import Call, Hangup, Hold, Mute, ResumeCall, Unhold, Unmute, WarmTransfer
from bridgeline.core.effects import LegAudio, SetAudio
from bridgeline.core.model import EventType, MemberStatus


def test_mute_and_unmute_publish_the_member_with_its_mute_flag() -> None:
    h = agent_and_customer()
    h.do(Mute("C"))
    assert h.types() == [EventType.MEMBER_MUTED]
    assert h.event(EventType.MEMBER_MUTED) == {
        "member_address": "C",
        "role": "customer",
        "status": "connected",
        "leg_id": h.leg("C"),
        "mute": True,
        "answered_by": "human",
    }
    h.do(Unmute("C"))
    assert h.types() == [EventType.MEMBER_UNMUTED]
    assert h.event(EventType.MEMBER_UNMUTED)["mute"] is False


def test_mute_sends_the_new_routing_without_the_muted_leg() -> None:
    h = agent_and_customer()
    effects = h.do(Mute("C"))
    assert effects[-1] == SetAudio(
        (LegAudio(h.leg("A"), (), None), LegAudio(h.leg("C"), (h.leg("A"),), None)),
        recorded=(h.leg("A"),),  # what a conference recording would hear: not C
    )


def test_a_repeated_mute_or_unmute_is_refused_and_changes_nothing() -> None:
    h = agent_and_customer()
    assert "member A is not muted" in h.refused(Unmute("A"))
    h.do(Mute("A"))
    assert "member A is already muted" in h.refused(Mute("A"))


def test_a_held_member_can_be_muted_and_stays_muted_once_unheld() -> None:
    h = agent_and_customer()
    h.do(Hold("C"))
    h.do(Mute("C"))
    assert h.status("C") is MemberStatus.ON_HOLD and h.member("C").muted
    h.do(Unhold("C"))
    assert h.member("C").muted
    assert h.event(EventType.MEMBER_UNHELD)["mute"] is True


def test_a_muted_initiator_can_still_transfer_and_stays_muted_in_the_private_room() -> None:
    h = agent_and_customer()
    h.do(Mute("A"))
    h.do(WarmTransfer("B", AGENT, "A"))
    h.answer("B")
    assert h.member("A").muted and h.room("A") == h.room("B") != "main"
    h.do(ResumeCall("A"))
    assert h.member("A").muted and h.room("A") == "main"


def test_a_re_dialed_address_starts_unmuted() -> None:
    h = agent_and_customer()
    h.do(Call("D", AGENT, "A"))
    h.answer("D")
    h.do(Mute("D"))
    h.do(Hangup("D"))
    h.do(Call("D", AGENT, "A"))
    h.answer("D")
    assert not h.member("D").muted


def test_the_mute_flag_survives_a_snapshot_and_an_unmuted_member_dumps_as_before() -> None:
    h = agent_and_customer()
    assert "muted" not in snapshot.dump(h.conf)["members"][0]
    h.do(Mute("C"))
    restored = snapshot.load(snapshot.dump(h.conf))
    assert restored.members["C"].muted and not restored.members["A"].muted
    assert restored.audio_plan() == h.conf.audio_plan()
