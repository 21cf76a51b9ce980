"""Fixtures of the CLI suite: the same real server as the console suite (see tests/console/livekit)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
if str(HERE.parent / "console") not in sys.path:
    sys.path.insert(0, str(HERE.parent / "console"))

from livekit import api, no_server_tracebacks, server  # noqa: E402

__all__ = ["api", "no_server_tracebacks", "server"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)
