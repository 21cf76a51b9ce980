"""SDES-SRTP with the AES-GCM suites of RFC 7714 and real phones: with the default `srtp_suites`
our offers list AEAD_AES_128_GCM first, and baresip (`mediaenc=srtp-mand`), which answers with the
first suite of an offer it supports, encrypts with it. Two such phones dialled by a PHLO hear each
other (their own recordings), the RTP to each carries GCM's 16-byte tag and does not decode as the
tone, and a packet from elsewhere with a made-up tag is dropped."""

from __future__ import annotations

from typing import Any

from sipaudio import assert_hears
from sipkit import Ports
from siplab import TONE_A, TONE_B, Lab
from test_sip_srtp import (
    assert_not_g711_of,
    assert_suite,
    hang_up_all,
    others,
    recorded,
    spray_forgeries,
    srtp_phone,
)

GCM_TAG = 16  # RFC 7714: a 16-byte authentication tag after each packet


def sip_config(ports: Ports) -> dict[str, Any]:
    return {"srtp": "required"}  # and the default suites, GCM first


def test_two_phones_dialled_by_a_run_talk_over_aes_gcm(lab: Lab) -> None:
    agent = srtp_phone(lab, "agent", TONE_A)
    customer = srtp_phone(lab, "customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()

    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, agent.uri, hears=[customer.uri])
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    dropped_before = lab.server.metrics().get("bridgeline_sip_srtp_auth_failed_total", 0)
    spray_forgeries(lab.server.rtp_range)
    talking = lab.listen(1.5)
    hang_up_all(lab, phlo, view["mpc_uuid"], agent.uri, customer.uri)
    agent.wait_event("CALL_CLOSED")
    customer.wait_event("CALL_CLOSED")

    assert_suite(agent, "AEAD_AES_128_GCM")
    assert_suite(customer, "AEAD_AES_128_GCM")
    assert_hears(recorded(agent), [TONE_B], others(TONE_B))  # decrypted by the phone itself
    assert_hears(recorded(customer), [TONE_A], others(TONE_A))
    assert_not_g711_of(lab, agent, TONE_B, talking, tag=GCM_TAG)
    assert_not_g711_of(lab, customer, TONE_A, talking, tag=GCM_TAG)
    assert lab.server.metrics()["bridgeline_sip_srtp_auth_failed_total"] - dropped_before >= 40
