"""The SRTP settings of the SIP YAML: the policy per endpoint, trunk and default, which one a dial
or an inbound call gets, YAML's unquoted `off`, and the suites we offer and accept."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bridgeline.adapters.carriers.sip.carrier_legs import srtp_config
from bridgeline.adapters.carriers.sip.settings import SipSettings, load_sip_settings
from bridgeline.sip.sdes import CryptoSuite, SrtpPolicy

CONFIG = """
srtp: off
endpoints:
  alice: alice-secret
  bob: {password: bob-secret, srtp: required}
  carol: {password: carol-secret}
trunk:
  proxy: 192.0.2.7:5060
  domain: trunk.example
  srtp: offered
"""


def settings(tmp_path: Path, text: str = CONFIG) -> SipSettings:
    path = tmp_path / "sip.yaml"
    path.write_text(text)
    return load_sip_settings(path)


def test_each_call_gets_the_policy_of_what_it_reaches(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert s.srtp is SrtpPolicy.OFF  # YAML's unquoted off is false: read as the policy meant
    assert s.srtp_for_dial("bob") is SrtpPolicy.REQUIRED
    assert s.srtp_for_dial("alice") is SrtpPolicy.OFF and s.srtp_for_dial("carol") is SrtpPolicy.OFF
    assert s.srtp_for_dial("+14155550100") is SrtpPolicy.OFFERED  # through the trunk
    assert s.srtp_for_dial("sip:someone@198.51.100.1") is SrtpPolicy.OFF
    assert s.srtp_for_inbound("bob", "203.0.113.9") is SrtpPolicy.REQUIRED
    assert s.srtp_for_inbound(None, "192.0.2.7") is SrtpPolicy.OFFERED
    assert s.srtp_for_inbound(None, "203.0.113.9") is SrtpPolicy.OFF
    assert s.endpoint_config().accounts == {
        "alice": "alice-secret",
        "bob": "bob-secret",
        "carol": "carol-secret",
    }


def test_the_default_covers_endpoints_and_trunk_without_their_own(tmp_path: Path) -> None:
    s = settings(
        tmp_path, CONFIG.replace("\nsrtp: off\n", "\nsrtp: required\n").replace("  srtp: offered\n", "")
    )
    assert s.srtp_for_dial("alice") is SrtpPolicy.REQUIRED
    assert s.srtp_for_dial("+14155550100") is SrtpPolicy.REQUIRED
    assert s.srtp_for_inbound(None, "192.0.2.7") is SrtpPolicy.REQUIRED
    assert SipSettings().srtp is SrtpPolicy.OFF


@pytest.mark.parametrize("bad", ["srtp: maybe", "srtp: true", "endpoints: {bob: {password: x, srtp: on}}"])
def test_a_bad_policy_stops_the_server(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValidationError):
        settings(tmp_path, bad)


def test_the_suites_default_to_all_with_gcm_first_and_can_be_narrowed(tmp_path: Path) -> None:
    assert SipSettings().srtp_suites == (
        CryptoSuite.AEAD_AES_128_GCM,
        CryptoSuite.AEAD_AES_256_GCM,
        CryptoSuite.AES_CM_128_HMAC_SHA1_80,
        CryptoSuite.AES_CM_128_HMAC_SHA1_32,
    )
    narrowed = settings(tmp_path, "srtp_suites: [AES_CM_128_HMAC_SHA1_32, AEAD_AES_256_GCM]\n")
    assert narrowed.srtp_suites == (CryptoSuite.AES_CM_128_HMAC_SHA1_32, CryptoSuite.AEAD_AES_256_GCM)
    config = srtp_config(SrtpPolicy.REQUIRED, narrowed.srtp_suites)
    assert [(c.suite, len(c.key)) for c in config.offer_lines()] == [
        (CryptoSuite.AES_CM_128_HMAC_SHA1_32, 30),
        (CryptoSuite.AEAD_AES_256_GCM, 44),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "srtp_suites: []",
        "srtp_suites: [AEAD_AES_128_GCM, AEAD_AES_128_GCM]",
        "srtp_suites: [AES_256_CM_HMAC_SHA1_80]",
        "srtp_suites: AEAD_AES_128_GCM",
    ],
)
def test_bad_suites_stop_the_server(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValidationError):
        settings(tmp_path, bad + "\n")
