"""The SIP YAML's `registrations:` (cluster mode): which proxies' Path a REGISTER keeps, how long a
Path may be, and whether bindings are shared through the store; bad values refused at load time."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bridgeline.adapters.carriers.sip.settings import SipSettings, load_sip_settings


def load(tmp_path: Path, text: str) -> SipSettings:
    path = tmp_path / "sip.yaml"
    path.write_text(text)
    return load_sip_settings(path)


def test_defaults_trust_no_path_and_share_bindings() -> None:
    settings = load_sip_settings(None)
    limits = settings.endpoint_config().registration
    assert limits.path_proxies == frozenset() and limits.max_path == 4
    assert settings.registrations.shared


def test_path_proxies_by_host_or_host_and_port(tmp_path: Path) -> None:
    text = "registrations:\n  path_proxies: ['127.0.0.1:5060', kam.example, '[::1]:5062']\n  max_path: 2\n"
    limits = load(tmp_path, text).endpoint_config().registration
    assert limits.path_proxies == {("127.0.0.1", 5060), ("kam.example", None), ("::1", 5062)}
    assert limits.max_path == 2
    assert not load(tmp_path, "registrations: {shared: false}\n").registrations.shared


@pytest.mark.parametrize(
    "text",
    [
        "registrations: {path_proxies: ['127.0.0.1:0']}",
        "registrations: {path_proxies: ['127.0.0.1:70000']}",
        "registrations: {path_proxies: ['127.0.0.1:x']}",
        "registrations: {path_proxies: [':5060']}",
        "registrations: {max_path: 0}",
        "registrations: {max_path: 17}",
        "registrations: {pathproxies: []}",
    ],
)
def test_bad_values_refuse_to_start(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValidationError):
        load(tmp_path, text + "\n")
