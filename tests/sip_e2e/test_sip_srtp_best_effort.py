"""Best-effort SRTP (`srtp: offered`) with real phones: one PHLO run dials a baresip with
`mediaenc=srtp` (it answers our RTP/AVP offer's a=crypto with a key of its own) and a plain sipp
phone (it ignores the crypto lines). The two hear each other; the capture shows SRTP to baresip
(AES-GCM, our first suite: its tag after every packet) and plain G.711 of baresip's tone to sipp."""

from __future__ import annotations

from typing import Any

from sipaudio import assert_hears
from sipkit import Ports
from siplab import ALL_TONES, TONE_A, TONE_B, Lab
from test_sip_srtp import assert_not_g711_of, assert_suite, hang_up_all, recorded, srtp_phone
from test_sip_srtp_gcm import GCM_TAG


def sip_config(ports: Ports) -> dict[str, Any]:
    return {"srtp": "offered"}


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def test_an_srtp_phone_and_a_plain_phone_share_a_call(lab: Lab) -> None:
    agent = srtp_phone(lab, "agent", TONE_A, mediaenc="srtp")
    customer = lab.sipp_phone("customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()

    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, agent.uri, hears=[customer.uri])
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    talking = lab.listen(1.5)
    hang_up_all(lab, phlo, view["mpc_uuid"], agent.uri, customer.uri)
    agent.wait_event("CALL_CLOSED")
    customer.assert_succeeded()

    assert_hears(recorded(agent), [TONE_B], others(TONE_B))
    assert_suite(agent, "AEAD_AES_128_GCM")  # the first of our default suites, offered on RTP/AVP too
    assert_not_g711_of(lab, agent, TONE_B, talking, tag=GCM_TAG)
    assert_hears(lab.heard(customer, talking), [TONE_A], others(TONE_A))  # plain: decodable
