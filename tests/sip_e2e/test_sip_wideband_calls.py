"""A G.722 (wideband) baresip phone in a conference with G.711 phones: each hears the others, the
G.722 leg is sent G.722 (RTP payload type 9) and the G.711 legs G.711."""

from __future__ import annotations

import time

from sipaudio import G722_PT, PCMU, assert_hears
from siplab import ALL_TONES, TONE_A, TONE_B, TONE_C, Lab


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def test_a_g722_phone_and_g711_phones_hear_each_other(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A, codecs="G722/16000/1")  # baresip names it by its audio rate
    customer = lab.sipp_phone("customer", TONE_B, ring_ms=200)
    second = lab.baresip("second", TONE_C)  # G.711 (PCMU)
    lab.capture(agent, customer, second)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, agent.uri, hears=[customer.uri])
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    two = lab.listen()
    lab.mpc(phlo).call(agent.uri, second.uri, "agent")
    lab.connected(phlo, second.uri, hears=[agent.uri, customer.uri])
    three = lab.listen()

    for phone in (second, customer, agent):
        lab.mpc(phlo).member(phone.uri).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], customer)
    lab.assert_quiet_after([agent, customer, second], time.time())

    assert {f.payload_type for f in lab.frames(agent) if f.payload_type != 101} == {G722_PT}
    assert {f.payload_type for f in lab.frames(customer) if f.payload_type != 101} == {PCMU}
    assert {f.payload_type for f in lab.frames(second) if f.payload_type != 101} == {PCMU}
    assert_hears(lab.heard(agent, two), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(customer, two), [TONE_A], others(TONE_A))
    assert_hears(lab.heard(agent, three), [TONE_B, TONE_C], others(TONE_B, TONE_C))
    assert_hears(lab.heard(customer, three), [TONE_A, TONE_C], others(TONE_A, TONE_C))
    assert_hears(lab.heard(second, three), [TONE_A, TONE_B], others(TONE_A, TONE_B))
