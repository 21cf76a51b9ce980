"""The media settings reach the media engine: BRIDGELINE_MEDIA_* variables, --media-dir, the default
media directory under the data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridgeline.adapters.carriers.sip.carrier import SipCarrier
from bridgeline.adapters.carriers.sip.music_fetch import MediaLimits
from bridgeline.cli.commands import _parser
from bridgeline.config import Settings
from bridgeline.main import make_carrier


def test_defaults_and_the_media_directory_under_the_data_directory() -> None:
    settings = Settings.from_env(data_dir=Path("/srv/bl"))
    assert settings.media_directory == Path("/srv/bl/media")
    assert (settings.media_max_bytes, settings.media_fetch_timeout_s) == (10 * 1024 * 1024, 10.0)
    assert (settings.media_max_seconds, settings.media_cache_bytes) == (300.0, 64 * 1024 * 1024)


def test_environment_variables_and_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGELINE_MEDIA_DIR", "/env/media")
    monkeypatch.setenv("BRIDGELINE_MEDIA_MAX_BYTES", "1000")
    monkeypatch.setenv("BRIDGELINE_MEDIA_FETCH_TIMEOUT_S", "2.5")
    monkeypatch.setenv("BRIDGELINE_MEDIA_MAX_SECONDS", "30")
    monkeypatch.setenv("BRIDGELINE_MEDIA_CACHE_BYTES", "5000")
    settings = Settings.from_env()
    assert settings.media_directory == Path("/env/media")
    assert (settings.media_max_bytes, settings.media_fetch_timeout_s) == (1000, 2.5)
    assert (settings.media_max_seconds, settings.media_cache_bytes) == (30.0, 5000)
    flag = _parser().parse_args(["serve", "--media-dir", "/flag/media"]).media_dir
    assert Settings.from_env(media_dir=flag).media_directory == Path("/flag/media")  # the flag wins


def test_the_sip_carrier_gets_the_limits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BRIDGELINE_MEDIA_MAX_BYTES", "1234")
    settings = Settings.from_env(data_dir=tmp_path, carrier="sip", sip_listen="127.0.0.1:5099")
    carrier = make_carrier(settings, phone_book=None)  # type: ignore[arg-type]  # the sip carrier has no phone book
    assert isinstance(carrier, SipCarrier)
    assert carrier.media.media_limits == MediaLimits(
        media_dir=tmp_path / "media", max_bytes=1234, fetch_timeout_s=10.0, max_seconds=300.0,
        cache_bytes=64 * 1024 * 1024,
    )  # fmt: skip
