"""SDES-SRTP with the AES-GCM suites of RFC 7714 and real phones: with the default `srtp_suites`
our offers list AEAD_AES_128_GCM first, and baresip (`mediaenc=srtp-mand`), which answers with the
first suite of an offer it supports, encrypts with it. Two such phones dialled by a PHLO hear each
other (their own recordings), the RTP to each carries GCM's 16-byte tag and does not decode as the
tone, and a packet from elsewhere with a made-up tag is dropped."""

from __future__ import annotations

from typing import Any

from sipkit import Ports
from siplab import Lab
from test_sip_srtp import two_srtp_phones_talk

GCM_TAG = 16  # RFC 7714: a 16-byte authentication tag after each packet


def sip_config(ports: Ports) -> dict[str, Any]:
    return {"srtp": "required"}  # and the default suites, GCM first


def test_two_phones_dialled_by_a_run_talk_over_aes_gcm(lab: Lab) -> None:
    two_srtp_phones_talk(lab, "AEAD_AES_128_GCM", GCM_TAG)
