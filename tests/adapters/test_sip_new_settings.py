"""The SIP YAML's NAT, REFER and trunk keepalive settings: defaults, what they become for the endpoint
and the carrier, and bad values refused at load time."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bridgeline.adapters.carriers.sip.settings import load_sip_settings
from bridgeline.sip.refer_policy import LegKind


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "sip.yaml"
    path.write_text(text)
    return load_sip_settings(path)


def test_public_address_for_sip_and_sdp_while_binding_locally(tmp_path: Path) -> None:
    path = tmp_path / "sip.yaml"
    path.write_text(
        "listen: 127.0.0.1:5070\npublic_address: 198.51.100.7\nrtp: {public_host: 198.51.100.7}\n"
    )
    settings = load_sip_settings(path)
    config = settings.endpoint_config()
    assert (config.local_address, config.public_address) == (("127.0.0.1", 5070), ("198.51.100.7", 5070))
    assert (settings.rtp.host, settings.rtp.sdp_host) == ("127.0.0.1", "198.51.100.7")
    assert "198.51.100.7" in settings.local_hosts()
    path.write_text("public_address: '198.51.100.7:15060'\n")
    assert load_sip_settings(path).endpoint_config().public_address == ("198.51.100.7", 15060)
    default = load_sip_settings(None)
    assert default.endpoint_config().public_address is None and default.rtp.sdp_host == "127.0.0.1"


def test_refer_defaults_allow_endpoints_only_from_endpoints() -> None:
    policy = load_sip_settings(None).refer_policy()
    assert policy.enabled and policy.endpoints
    assert (policy.number_prefixes, policy.hosts, policy.transferors) == ((), frozenset(), {LegKind.ENDPOINT})


def test_trunk_keepalive_defaults_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "sip.yaml"
    path.write_text("trunk: {proxy: '10.1.2.3:5080', domain: t.example}\n")
    trunk = load_sip_settings(path).endpoint_config().trunk
    assert trunk is not None
    assert (trunk.keepalive_interval, trunk.keepalive_timeout, trunk.keepalive_down_after) == (30.0, 5.0, 3)
    path.write_text("trunk: {proxy: '10.1.2.3', domain: t, keepalive_s: 0}\n")
    trunk = load_sip_settings(path).endpoint_config().trunk
    assert trunk is not None and trunk.keepalive_interval == 0


@pytest.mark.parametrize(
    "text",
    [
        "public_address: 'a b'\n",
        "public_address: '198.51.100.7:0'\n",
        "refer: {allowed: ['sip:x@y']}\n",
        "refer: {transferors: [everyone]}\n",
        "refer: {enabled: maybe}\n",
        "trunk: {proxy: p, domain: d, keepalive_s: -1}\n",
        "trunk: {proxy: p, domain: d, keepalive_s: 2, keepalive_timeout_s: 3}\n",
        "trunk: {proxy: p, domain: d, down_after: 0}\n",
    ],
)
def test_bad_values_are_refused_at_load(tmp_path: Path, text: str) -> None:
    with pytest.raises((ValidationError, ValueError)):
        load(tmp_path, text)
