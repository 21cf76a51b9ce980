"""The PHLO cache over a real SQLite store: a PHLO is read and validated once, a deleted one is
forgotten (so the same id created again runs its new definition), and unknown ids are not cached."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridgeline.adapters.store import open_store
from bridgeline.app.phlos import PhloCache
from bridgeline.app.ports import Store
from bridgeline.app.records import PhloRecord

AUTH_ID = "MA00000000000000000A"
OTHER_AUTH_ID = "MA00000000000000000B"


class CountingStore:
    """The real store, counting PHLO reads."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.phlo_reads = 0
        self.gate: asyncio.Event | None = None  # when set, reads wait for it (a slow database)

    async def get_phlo(self, auth_id: str, phlo_id: str) -> PhloRecord | None:
        self.phlo_reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return await self._store.get_phlo(auth_id, phlo_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    real = open_store(f"sqlite:///{tmp_path / 'bl.db'}")
    await real.migrate()
    yield CountingStore(real)
    await real.close()


def phlo(node_name: str, created_at: float, auth_id: str = AUTH_ID) -> PhloRecord:
    definition = {
        "name": "cached",
        "nodes": [{"node_id": "node-1", "name": node_name, "type": "multi_party_call"}],
    }
    return PhloRecord("phlo-1", auth_id, "cached", definition, created_at)


async def test_a_phlo_is_read_and_validated_once(store: CountingStore) -> None:
    await store.create_phlo(phlo("first", 1.0))
    cache = PhloCache(store)  # type: ignore[arg-type]
    first = await cache.get(AUTH_ID, "phlo-1")
    second = await cache.get(AUTH_ID, "phlo-1")
    assert first is not None and first is second
    assert first[1].nodes[0].name == "first"
    assert store.phlo_reads == 1


async def test_a_forgotten_phlo_created_again_gives_its_new_definition(store: CountingStore) -> None:
    await store.create_phlo(phlo("first", 1.0))
    cache = PhloCache(store)  # type: ignore[arg-type]
    assert await cache.get(AUTH_ID, "phlo-1") is not None
    assert await store.delete_phlo(AUTH_ID, "phlo-1")
    cache.forget(AUTH_ID, "phlo-1")
    assert await cache.get(AUTH_ID, "phlo-1") is None
    await store.create_phlo(phlo("second", 2.0))
    entry = await cache.get(AUTH_ID, "phlo-1")
    assert entry is not None and entry[1].nodes[0].name == "second"


async def test_unknown_ids_are_not_cached(store: CountingStore) -> None:
    cache = PhloCache(store)  # type: ignore[arg-type]
    assert await cache.get(AUTH_ID, "phlo-1") is None
    await store.create_phlo(phlo("late", 1.0))
    entry = await cache.get(AUTH_ID, "phlo-1")
    assert entry is not None and entry[1].nodes[0].name == "late"


async def test_a_read_racing_a_delete_is_not_cached(store: CountingStore) -> None:
    await store.create_phlo(phlo("first", 1.0))
    cache = PhloCache(store)  # type: ignore[arg-type]
    store.gate = asyncio.Event()
    reading = asyncio.ensure_future(cache.get(AUTH_ID, "phlo-1"))
    await asyncio.sleep(0)  # the read is now waiting on the database
    cache.forget(AUTH_ID, "phlo-1")  # the delete lands while the read is under way
    store.gate.set()
    assert (await reading) is not None  # the reader still gets what it read...
    store.gate = None
    await cache.get(AUTH_ID, "phlo-1")
    assert store.phlo_reads == 2  # ...but it was not kept: the next get reads again


async def test_two_accounts_each_have_their_own_phlo_under_one_id(store: CountingStore) -> None:
    await store.create_phlo(phlo("mine", 1.0))
    await store.create_phlo(phlo("theirs", 2.0, auth_id=OTHER_AUTH_ID))
    cache = PhloCache(store)  # type: ignore[arg-type]
    mine, theirs = await cache.get(AUTH_ID, "phlo-1"), await cache.get(OTHER_AUTH_ID, "phlo-1")
    assert mine is not None and mine[1].nodes[0].name == "mine"
    assert theirs is not None and theirs[1].nodes[0].name == "theirs"
    cache.forget(OTHER_AUTH_ID, "phlo-1")  # forgetting one account's PHLO keeps the other's
    assert await cache.get(AUTH_ID, "phlo-1") is mine
