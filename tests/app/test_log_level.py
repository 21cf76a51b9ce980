"""The log level is a setting with a closed set of names (the e2e tests check what each level shows)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bridgeline.cli import main
from bridgeline.logs import log_level


def test_log_levels_by_name() -> None:
    assert log_level("DEBUG") == logging.DEBUG
    assert log_level("warning") == logging.WARNING
    with pytest.raises(ValueError, match="unknown log level"):
        log_level("loud")


def test_serve_refuses_an_unknown_log_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--data-dir", str(tmp_path), "--log-level", "loud"]) == 2
    assert "unknown log level 'loud'" in capsys.readouterr().err
