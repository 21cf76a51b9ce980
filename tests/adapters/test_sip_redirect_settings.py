"""The `redirects` section of the SIP YAML: its default allow-list is the trunk, and bad entries
are refused at load time."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bridgeline.adapters.carriers.sip.settings import load_sip_settings


def test_default_follows_only_to_the_trunk(tmp_path: Path) -> None:
    path = tmp_path / "sip.yaml"
    path.write_text("trunk: {proxy: '10.1.2.3:5080', domain: Trunk.Example}\n")
    policy = load_sip_settings(path).endpoint_config().redirects
    assert policy.max_redirects == 3
    assert policy.allowed_targets == {"trunk.example", "10.1.2.3"}
    assert load_sip_settings(None).endpoint_config().redirects.allowed_targets == frozenset()


def test_allow_list_and_limit_are_read(tmp_path: Path) -> None:
    path = tmp_path / "sip.yaml"
    path.write_text("redirects: {max: 1, allowed_targets: ['127.0.0.1:5099', 'pbx.example']}\n")
    policy = load_sip_settings(path).endpoint_config().redirects
    assert (policy.max_redirects, policy.allowed_targets) == (1, frozenset({"127.0.0.1:5099", "pbx.example"}))


@pytest.mark.parametrize("section", ["{max: -1}", "{max: 11}", "{allowed_targets: ['a:b:c']}"])
def test_bad_redirect_settings_are_refused(tmp_path: Path, section: str) -> None:
    path = tmp_path / "sip.yaml"
    path.write_text(f"redirects: {section}\n")
    with pytest.raises(ValidationError):
        load_sip_settings(path)
