"""Warm and cold transfers with real phones: who hears whom at each step, and every leg torn down."""

from __future__ import annotations

import time

from e2ekit import Phlo
from sipaudio import assert_hears
from sipkit import Baresip, Sipp
from siplab import ALL_TONES, CUSTOMER_HOLD, TONE_A, TONE_B, TONE_C, Lab, Peer


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def consult(lab: Lab) -> tuple[Phlo, str, Baresip, Sipp, Sipp, tuple[float, float]]:
    """Agent (baresip) and customer talk; the agent warm-transfers to a target, who answers.
    Returns the PHLO, the conference, the three phones and a stretch of the consultation."""
    agent = lab.baresip("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B)
    target = lab.sipp_phone("target", TONE_C, ring_ms=300)
    lab.capture(agent, customer, target)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[agent.uri])

    lab.mpc(phlo).warm_transfer(agent.uri, target.uri, "agent")
    lab.connected(phlo, target.uri, hears=[agent.uri])
    phlo.wait_member(customer.uri, status="connected", hears=[], music="customer_hold")
    return phlo, view["mpc_uuid"], agent, customer, target, lab.listen()


def assert_consultation(
    lab: Lab, agent: Peer, customer: Peer, target: Peer, window: tuple[float, float]
) -> None:
    """The customer hears hold music; the agent and the target hear only each other."""
    assert_hears(lab.heard(customer, window), [CUSTOMER_HOLD], others(CUSTOMER_HOLD))
    assert_hears(lab.heard(agent, window), [TONE_C], others(TONE_C))
    assert_hears(lab.heard(target, window), [TONE_A], others(TONE_A))


def test_warm_transfer_consults_privately_and_the_agents_hangup_joins_customer_and_target(lab: Lab) -> None:
    phlo, mpc_uuid, agent, customer, target, consulting = consult(lab)

    agent.command("hangup")  # the agent's own phone hangs up: a BYE from the peer
    lab.left(phlo, agent.uri, "remote_hangup")
    lab.connected(phlo, customer.uri, hears=[target.uri])
    lab.connected(phlo, target.uri, hears=[customer.uri])
    joined = lab.listen()

    mpc = lab.mpc(phlo)
    mpc.member(customer.uri).hangup()
    mpc.member(target.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, customer, target)
    lab.assert_quiet_after([agent, customer, target], time.time())

    assert_consultation(lab, agent, customer, target, consulting)
    assert_hears(lab.heard(customer, joined), [TONE_C], others(TONE_C))
    assert_hears(lab.heard(target, joined), [TONE_B], others(TONE_B))
    transfer = phlo.conference(mpc_uuid)["transfers"][0]
    assert (transfer["transfer_state"], transfer["outcome"]) == ("completed", "transferred"), transfer


def test_abort_transfer_hangs_up_the_target_and_brings_the_agent_back(lab: Lab) -> None:
    phlo, mpc_uuid, agent, customer, target, consulting = consult(lab)

    lab.mpc(phlo).member(agent.uri).abort_transfer()
    lab.left(phlo, target.uri, "transfer_aborted")
    target.assert_succeeded()  # it received the BYE
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    back = lab.listen()

    lab.mpc(phlo).member(customer.uri).hangup()
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, customer)
    agent.wait_event("CALL_CLOSED")

    assert_consultation(lab, agent, customer, target, consulting)
    assert_hears(lab.heard(customer, back), [TONE_A], others(TONE_A))
    assert_hears(lab.heard(agent, back), [TONE_B], others(TONE_B))


def test_resume_call_makes_a_three_way_call(lab: Lab) -> None:
    phlo, mpc_uuid, agent, customer, target, consulting = consult(lab)

    lab.mpc(phlo).member(agent.uri).resume_call()
    lab.connected(phlo, customer.uri, hears=[agent.uri, target.uri])
    three = lab.listen()

    for phone in (target, customer, agent):
        lab.mpc(phlo).member(phone.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, customer, target)

    assert_consultation(lab, agent, customer, target, consulting)
    assert_hears(lab.heard(customer, three), [TONE_A, TONE_C], others(TONE_A, TONE_C))
    assert_hears(lab.heard(agent, three), [TONE_B, TONE_C], others(TONE_B, TONE_C))
    assert_hears(lab.heard(target, three), [TONE_A, TONE_B], others(TONE_A, TONE_B))
    transfer = phlo.conference(mpc_uuid)["transfers"][0]
    assert (transfer["transfer_state"], transfer["outcome"]) == ("completed", "three_way"), transfer


def test_cold_transfer_keeps_the_call_until_the_target_answers_then_drops_the_agent(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B)
    target = lab.sipp_phone("target", TONE_C, ring_ms=1500)
    lab.capture(agent, customer, target)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    mpc_uuid = lab.connected(phlo, customer.uri, hears=[agent.uri])["mpc_uuid"]

    lab.mpc(phlo).cold_transfer(agent.uri, target.uri, "agent")
    phlo.wait_member(target.uri, status="dialing", ringing=True)
    ringing = lab.listen(seconds=0.6, settle=0.1)  # the target rings for 1.5 s
    assert phlo.member(target.uri)["status"] == "dialing"
    lab.left(phlo, agent.uri, "transferred")
    agent.wait_event("CALL_CLOSED")  # Bridgeline hung the agent up
    lab.connected(phlo, customer.uri, hears=[target.uri])
    transferred = lab.listen()

    lab.mpc(phlo).member(customer.uri).hangup()
    lab.mpc(phlo).member(target.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, customer, target)

    assert_hears(lab.heard(customer, ringing), [TONE_A], others(TONE_A))
    assert_hears(lab.heard(agent, ringing), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(customer, transferred), [TONE_C], others(TONE_C))
    assert_hears(lab.heard(target, transferred), [TONE_B], others(TONE_B))
