"""The `reliable_provisionals` and `session_timers` settings of the SIP YAML: defaults, limits,
and what reaches the endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bridgeline.adapters.carriers.sip.settings import load_sip_settings
from bridgeline.sip.events import SessionTimerSettings


def test_defaults_are_on_and_rfc_compliant() -> None:
    config = load_sip_settings(None).endpoint_config()
    assert config.reliable_provisionals is True
    assert config.session_timers == SessionTimerSettings(True, 1800, 90)


def test_settings_are_read(tmp_path: Path) -> None:
    path = tmp_path / "sip.yaml"
    path.write_text(
        "reliable_provisionals: false\nsession_timers: {enabled: false, session_expires_s: 4, min_se_s: 2}\n"
    )
    config = load_sip_settings(path).endpoint_config()
    assert config.reliable_provisionals is False
    assert config.session_timers == SessionTimerSettings(False, 4, 2)


@pytest.mark.parametrize(
    "section",
    [
        "{session_expires_s: 0}",
        "{min_se_s: 0}",
        "{session_expires_s: 86401}",
        "{min_se_s: 86401}",
        "{session_expires_s: 60, min_se_s: 90}",  # asking for less than we accept
        "{session_expires_s: many}",
        "{refresh: always}",
    ],
)
def test_bad_session_timer_settings_are_refused(tmp_path: Path, section: str) -> None:
    path = tmp_path / "sip.yaml"
    path.write_text(f"session_timers: {section}\n")
    with pytest.raises(ValidationError):
        load_sip_settings(path)
