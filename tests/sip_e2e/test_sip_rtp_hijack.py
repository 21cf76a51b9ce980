"""RTP bleed on a real server: while two real phones talk, a foreign socket sprays G.711 (its own
tone), RTCP and DTMF events at every port of the server's RTP range. The phones keep hearing each
other and nothing of the spray, and the spraying socket receives no audio at all."""

from __future__ import annotations

import time

from rtpspray import Sprayer
from sipaudio import assert_hears
from siplab import ALL_TONES, TONE_A, TONE_B, TONE_D, Lab


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def test_a_foreign_spray_does_not_take_over_a_live_call(lab: Lab) -> None:
    agent = lab.sipp_phone("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    mpc_uuid = lab.connected(phlo, customer.uri, hears=[agent.uri])["mpc_uuid"]
    lab.connected(phlo, agent.uri, hears=[customer.uri])
    time.sleep(0.5)  # both legs have latched to their phones

    with Sprayer(lab.server.rtp_range, TONE_D, seconds=2.0) as sprayer:
        under_attack = lab.listen(seconds=1.2, settle=0.4)
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.mpc(phlo).member(customer.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, agent, customer)

    assert sprayer.received == 0, f"the spraying socket got {sprayer.received} datagrams"
    refused = lab.server.metrics()
    assert refused["bridgeline_sip_rtp_refused_foreign_source_total"] > 0, refused
    assert_hears(lab.heard(agent, under_attack), [TONE_B], others(TONE_B), min_seconds=1.0)
    assert_hears(lab.heard(customer, under_attack), [TONE_A], others(TONE_A), min_seconds=1.0)
    assert lab.server.healthy()
