"""The server settles its heap once built: start-up objects frozen, young collections spaced out."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bridgeline.main import GC_THRESHOLDS, settle_heap


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settle_heap_freezes_startup_objects_and_spaces_collections(restore_gc: None) -> None:
    survivor = [object()]  # a container alive at start-up, like the built app
    settle_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == GC_THRESHOLDS
    # Frozen objects sit in the permanent generation, which no collection scans.
    assert all(obj is not survivor for obj in gc.get_objects())
