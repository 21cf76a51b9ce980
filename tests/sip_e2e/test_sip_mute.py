"""Real phones and mute: while the agent is muted nobody hears its tone and it still hears the
others; with two phones left the customer hears silence (no music); after unmute all is heard again.
The same in a warm transfer's private room, and the mute kept when the agent resumes the call.
Each phone plays a tone of its own; what each one receives is checked by its spectrum."""

from __future__ import annotations

from sipaudio import assert_hears, assert_silent
from siplab import ALL_TONES, CUSTOMER_HOLD, TONE_A, TONE_B, TONE_C, Lab
from test_sip_transfers import assert_consultation, consult


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def test_a_muted_phone_is_heard_by_nobody_and_still_hears_the_others(lab: Lab) -> None:
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

    mpc.member(agent.uri).mute()  # the Python SDK's Member.mute()
    phlo.wait_member(agent.uri, mute=True)
    lab.connected(phlo, customer.uri, hears=[second.uri])
    three_muted = lab.listen()
    mpc.member(second.uri).hangup()
    lab.connected(phlo, customer.uri, hears=[])
    two_muted = lab.listen()
    mpc.member(agent.uri).unmute()
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    unmuted = lab.listen()

    for phone in (customer, agent):
        mpc.member(phone.uri).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], customer, second)

    # Three phones (the mixer): the muted agent hears both, the others hear only each other.
    assert_hears(lab.heard(agent, three_muted), [TONE_B, TONE_C], others(TONE_B, TONE_C))
    assert_hears(lab.heard(customer, three_muted), [TONE_C], others(TONE_C))
    assert_hears(lab.heard(second, three_muted), [TONE_B], others(TONE_B))
    # Two phones (one source each): the customer hears silence, the muted agent still hears it.
    assert_silent(lab.heard(customer, two_muted))
    assert_hears(lab.heard(agent, two_muted), [TONE_B], others(TONE_B))
    # Unmuted: heard again.
    assert_hears(lab.heard(customer, unmuted), [TONE_A], others(TONE_A))
    assert_hears(lab.heard(agent, unmuted), [TONE_B], others(TONE_B))


def test_a_muted_agent_consulting_privately_is_heard_by_nobody_and_stays_muted_back_in_the_call(
    lab: Lab,
) -> None:
    phlo, mpc_uuid, agent, customer, target, consulting = consult(lab)
    mpc = lab.mpc(phlo)
    mpc.member(agent.uri).mute()
    phlo.wait_member(agent.uri, mute=True)
    lab.connected(phlo, target.uri, hears=[])
    muted_consulting = lab.listen()
    mpc.member(agent.uri).resume_call()
    lab.connected(phlo, customer.uri, hears=[target.uri])
    lab.connected(phlo, agent.uri, hears=[customer.uri, target.uri])
    three_way_muted = lab.listen()

    for phone in (target, customer, agent):
        mpc.member(phone.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, customer, target)

    assert_consultation(lab, agent, customer, target, consulting)  # before the mute
    assert_silent(lab.heard(target, muted_consulting))
    assert_hears(lab.heard(agent, muted_consulting), [TONE_C], others(TONE_C))
    assert_hears(lab.heard(customer, muted_consulting), [CUSTOMER_HOLD], others(CUSTOMER_HOLD))
    assert_hears(lab.heard(agent, three_way_muted), [TONE_B, TONE_C], others(TONE_B, TONE_C))
    assert_hears(lab.heard(customer, three_way_muted), [TONE_C], others(TONE_C))
    assert_hears(lab.heard(target, three_way_muted), [TONE_B], others(TONE_B))
