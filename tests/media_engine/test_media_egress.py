"""Music URLs obey the same destination policy as callbacks (adapters/egress.py): a hosted server does
not fetch hold music from its own loopback, on the first request or after a redirect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from media_http import MediaServer, media_server, tone_wav

from bridgeline.adapters.carriers.sip.carrier import SipCarrier
from bridgeline.adapters.carriers.sip.music_fetch import MediaUnavailable, fetch_url
from bridgeline.adapters.egress import EgressPolicy, EgressProfile
from bridgeline.config import Settings
from bridgeline.main import make_carrier

MIB = 1024 * 1024


@pytest.fixture
def http() -> Iterator[MediaServer]:
    with media_server() as server:
        yield server


def test_the_open_policy_fetches_from_loopback(http: MediaServer) -> None:
    assert fetch_url(http.url + "/tone440.wav", MIB, 5.0, EgressPolicy()) == tone_wav(440)


@pytest.mark.parametrize("path", ["/tone440.wav", "/to-tone440"])
def test_the_hosted_policy_refuses_loopback(http: MediaServer, path: str) -> None:
    hosted = EgressPolicy.from_settings("hosted")
    with pytest.raises(MediaUnavailable, match="egress policy"):
        fetch_url(http.url + path, MIB, 5.0, hosted)
    assert http.requests[path] == 0  # refused before connecting


def test_an_allowed_network_wins_over_the_hosted_profile(http: MediaServer) -> None:
    allowed = EgressPolicy.from_settings("hosted", allow="127.0.0.1/32")
    assert fetch_url(http.url + "/to-tone440", MIB, 5.0, allowed) == tone_wav(440)


def test_the_sip_carrier_fetches_under_the_servers_policy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BRIDGELINE_EGRESS_PROFILE", "hosted")
    settings = Settings.from_env(data_dir=tmp_path, carrier="sip", sip_listen="127.0.0.1:5099")
    carrier = make_carrier(settings, phone_book=None)  # type: ignore[arg-type]  # the sip carrier has no phone book
    assert isinstance(carrier, SipCarrier)
    assert carrier.media.media_limits.egress.profile is EgressProfile.HOSTED
