"""A real SQLite store per test, migrated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridgeline.adapters.store import SqlStore, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = open_store(f"sqlite:///{tmp_path / 'bl.db'}")
    await store.migrate()
    yield store
    await store.close()
