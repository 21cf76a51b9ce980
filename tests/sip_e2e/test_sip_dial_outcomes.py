"""Dials that are never answered (busy, declined, ring timeout, hung up while ringing) and the
voicemail drop, against real SIP peers: the reason each member leaves with, and what the peer saw."""

from __future__ import annotations

import time

import pytest
from sipaudio import assert_hears
from siplab import ALL_TONES, TONE_A, TONE_B, VOICEMAIL, WAIT, Lab


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


@pytest.mark.parametrize(
    ("final_status", "reason"),
    [
        ("486 Busy Here", "busy"),
        ("603 Decline", "rejected"),
        ("480 Temporarily Unavailable", "no_answer"),
        ("404 Not Found", "failed"),
    ],
)
def test_a_phone_that_refuses_the_call_leaves_with_the_reason(
    lab: Lab, final_status: str, reason: str
) -> None:
    agent = lab.baresip("agent", TONE_A)
    refusing = lab.sipp(
        "refusing", "uas_reject.xml", substitutions={"FINAL_STATUS": final_status}, ring_ms=300
    )
    lab.capture(agent)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=refusing.uri)
    mpc_uuid = lab.connected(phlo, agent.uri)["mpc_uuid"]

    phlo.wait_member(refusing.uri, status="dialing", ringing=True)
    lab.left(phlo, refusing.uri, reason)
    refusing.assert_succeeded()  # it rang, refused, and got the ACK for its final response
    alone = lab.listen()
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid)
    agent.wait_event("CALL_CLOSED")

    assert refusing.received() == ["INVITE", "ACK"], refusing.received()
    assert_hears(lab.heard(agent, alone), [WAIT], others(WAIT))


def test_ring_timeout_cancels_the_dial(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A)
    never = lab.sipp("never", "uas_ring.xml")
    phlo = lab.create_phlo(ring_timeout=1.5)
    lab.run(phlo, agent=agent.uri, customer=never.uri)
    mpc_uuid = lab.connected(phlo, agent.uri)["mpc_uuid"]

    phlo.wait_member(never.uri, status="dialing", ringing=True)
    lab.left(phlo, never.uri, "no_answer")
    never.assert_succeeded()  # CANCEL answered 200, INVITE answered 487, ACK received
    assert never.received() == ["INVITE", "CANCEL", "ACK"], never.received()
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid)


def test_member_hangup_while_ringing_cancels_the_dial(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A)
    ringing = lab.sipp("ringing", "uas_ring.xml")
    phlo = lab.create_phlo(ring_timeout=30)
    lab.run(phlo, agent=agent.uri, customer=ringing.uri)
    mpc_uuid = lab.connected(phlo, agent.uri)["mpc_uuid"]
    phlo.wait_member(ringing.uri, status="dialing", ringing=True)

    lab.mpc(phlo).member(ringing.uri).hangup()
    lab.left(phlo, ringing.uri, "hangup")
    ringing.assert_succeeded()
    assert ringing.received() == ["INVITE", "CANCEL", "ACK"], ringing.received()
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid)


def test_voicemail_drop_plays_the_message_then_hangs_up(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    mpc_uuid = lab.connected(phlo, customer.uri, hears=[agent.uri])["mpc_uuid"]

    lab.mpc(phlo).member(customer.uri).voicemail_drop()
    playing = lab.listen(seconds=1.0, settle=0.2)  # the message (a tone spec) plays for 2 s
    lab.left(phlo, customer.uri, "voicemail_dropped")
    customer.assert_succeeded()  # the leg got its BYE once the message had played
    ended_at = time.time()
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid)
    lab.assert_quiet_after([customer], ended_at + 0.2)

    assert_hears(lab.heard(customer, playing), [VOICEMAIL], others(VOICEMAIL))
    assert_hears(lab.heard(agent, playing), [WAIT], others(WAIT))
    assert customer.received()[-1] == "BYE", customer.received()
