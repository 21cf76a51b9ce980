"""Real phones and mute: while the agent is muted nobody hears its tone and it still hears the
others; with two phones left the customer hears silence (no music); after unmute all is heard again.
Each phone plays a tone of its own; what each one receives is checked by its spectrum."""

from __future__ import annotations

from sipaudio import assert_hears, assert_silent
from siplab import ALL_TONES, TONE_A, TONE_B, TONE_C, Lab


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
