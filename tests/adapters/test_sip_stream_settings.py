"""The TCP/TLS parts of the SIP YAML: listeners, the trunk's transport, TLS files and verification,
and the connection limits, each with its default; bad combinations are refused at load time."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bridgeline.adapters.carriers.sip.settings import load_sip_settings
from bridgeline.sip.transaction import Target, Transport


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "sip.yaml"
    path.write_text(text)
    return load_sip_settings(path)


def test_defaults_listen_on_udp_only_and_verify_peers(tmp_path: Path) -> None:
    settings = load_sip_settings(None)
    assert settings.stream_addresses == {}
    assert settings.tls.verify_peers is True and settings.tls.verify_clients is False
    limits = settings.connections
    assert (
        limits.max_connections,
        limits.idle_timeout_s,
        limits.max_header_bytes,
        limits.max_body_bytes,
    ) == (
        1000,
        600.0,
        16384,
        32768,
    )


def test_listeners_and_a_tls_trunk(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "tcp: {listen: '127.0.0.1:5070'}\n"
        "tls: {listen: '127.0.0.1', certificate: c.pem, key: k.pem}\n"
        "trunk: {proxy: '10.1.2.3', transport: tls, domain: trunk.example}\n"
        "connections: {max_connections: 5, idle_timeout_s: 30}\n",
    )
    assert settings.stream_addresses == {
        Transport.TCP: ("127.0.0.1", 5070),
        Transport.TLS: ("127.0.0.1", 5061),
    }
    config = settings.endpoint_config()
    assert config.trunk is not None and config.trunk.proxy == Target("10.1.2.3", 5061, Transport.TLS)
    assert config.stream_addresses == settings.stream_addresses
    assert settings.connections.max_connections == 5
    assert load(tmp_path, "trunk: {proxy: '10.1.2.3', domain: t}\n").endpoint_config().trunk.proxy == (
        "10.1.2.3",
        5060,
    )  # UDP stays a plain address


@pytest.mark.parametrize(
    "text",
    [
        "tls: {listen: '127.0.0.1:5061'}\n",  # no certificate and key
        "tls: {verify_clients: true}\n",  # no CA to verify them with
        "trunk: {proxy: '10.1.2.3', transport: sctp, domain: t}\n",
        "connections: {max_connections: 0}\n",
        "connections: {idle_timeout_s: 0}\n",
        "connections: {max_header_bytes: 40000, max_body_bytes: 40000}\n",  # over 64 KiB together
    ],
)
def test_bad_stream_settings_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValidationError):
        load(tmp_path, text)
