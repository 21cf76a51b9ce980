"""Real phones in a conference: they hear each other, a third one joins, hold and unhold."""

from __future__ import annotations

import time

from sipaudio import assert_hears
from siplab import AGENT_HOLD, ALL_TONES, CUSTOMER_HOLD, TONE_A, TONE_B, TONE_C, WAIT, Lab


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def test_run_dials_two_phones_that_hear_each_other(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B, ring_ms=200)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()

    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, agent.uri, hears=[customer.uri])
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    talking = lab.listen()

    lab.mpc(phlo).member(agent.uri).hangup()
    lab.left(phlo, agent.uri, "hangup")
    lab.connected(phlo, customer.uri, hears=[])
    alone = lab.listen()
    lab.mpc(phlo).member(customer.uri).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], customer)
    agent.wait_event("CALL_CLOSED")
    lab.assert_quiet_after([agent, customer], time.time())

    assert_hears(lab.heard(agent, talking), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(customer, talking), [TONE_A], others(TONE_A))
    assert_hears(lab.heard(customer, alone), [WAIT], others(WAIT))


def test_call_adds_a_third_phone_and_everybody_hears_the_other_two(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B)
    second = lab.sipp_phone("second", TONE_C, ring_ms=300)
    lab.capture(agent, customer, second)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[agent.uri])

    lab.mpc(phlo).call(agent.uri, second.uri, "agent")
    lab.connected(phlo, second.uri, hears=[agent.uri, customer.uri])
    three = lab.listen()

    for phone in (second, customer, agent):
        lab.mpc(phlo).member(phone.uri).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], customer, second)
    lab.assert_quiet_after([agent, customer, second], time.time())

    assert_hears(lab.heard(agent, three), [TONE_B, TONE_C], others(TONE_B, TONE_C))
    assert_hears(lab.heard(customer, three), [TONE_A, TONE_C], others(TONE_A, TONE_C))
    assert_hears(lab.heard(second, three), [TONE_A, TONE_B], others(TONE_A, TONE_B))


def test_hold_plays_the_role_music_to_the_held_phone_and_nobody_hears_it(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B)
    second = lab.sipp_phone("second", TONE_C)
    lab.capture(agent, customer, second)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[agent.uri])
    mpc = lab.mpc(phlo)
    mpc.call(agent.uri, second.uri, "agent")
    lab.connected(phlo, second.uri, hears=[agent.uri, customer.uri])

    mpc.member(customer.uri).hold()
    phlo.wait_member(customer.uri, status="on_hold")
    customer_held = lab.listen()
    mpc.member(customer.uri).unhold()
    lab.connected(phlo, customer.uri, hears=[agent.uri, second.uri])
    all_three = lab.listen()
    mpc.member(agent.uri).hold()
    phlo.wait_member(agent.uri, status="on_hold")
    agent_held = lab.listen()
    mpc.member(agent.uri).unhold()
    lab.connected(phlo, agent.uri, hears=[customer.uri, second.uri])
    back = lab.listen()

    for phone in (second, customer, agent):
        mpc.member(phone.uri).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], customer, second)

    assert_hears(lab.heard(customer, customer_held), [CUSTOMER_HOLD], others(CUSTOMER_HOLD))
    assert_hears(lab.heard(agent, customer_held), [TONE_C], others(TONE_C))
    assert_hears(lab.heard(second, customer_held), [TONE_A], others(TONE_A))
    for window in (all_three, back):
        assert_hears(lab.heard(customer, window), [TONE_A, TONE_C], others(TONE_A, TONE_C))
        assert_hears(lab.heard(agent, window), [TONE_B, TONE_C], others(TONE_B, TONE_C))
        assert_hears(lab.heard(second, window), [TONE_A, TONE_B], others(TONE_A, TONE_B))
    assert_hears(lab.heard(agent, agent_held), [AGENT_HOLD], others(AGENT_HOLD))
    assert_hears(lab.heard(customer, agent_held), [TONE_C], others(TONE_C))
    assert_hears(lab.heard(second, agent_held), [TONE_B], others(TONE_B))
