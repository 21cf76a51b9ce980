"""PHLO runs with real parts (SQLite store, sim carrier): what a run stores, and that the run
kept in memory until its conference ends never serves stale data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bridgeline.adapters.carrier_sim import SimCarrier
from bridgeline.adapters.store import open_store
from bridgeline.app.ports import Store
from bridgeline.app.records import PhloRecord, RunRecord, RunStatus
from bridgeline.app.runs import RunService
from bridgeline.app.service import ConferenceService
from bridgeline.core.commands import Hangup
from bridgeline.core.model import Role
from bridgeline.phlo.definition import PhloDefinition

AUTH_ID = "MA00000000000000000A"
CALLER, AGENT = "+14155550100", "+14155550001"


class CountingStore:
    """The real store, counting run reads (a run's end should not need one)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.run_reads = 0

    async def get_run(self, run_id: str) -> RunRecord | None:
        self.run_reads += 1
        return await self._store.get_run(run_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    real = open_store(f"sqlite:///{tmp_path / 'bl.db'}")
    await real.migrate()
    yield CountingStore(real)
    await real.close()


async def settle(predicate: Callable[[], object], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def phlo(dial_to: str, created_at: float) -> PhloRecord:
    definition = {
        "name": "runs",
        "nodes": [{"node_id": "node-1", "name": "Multi-Party Call_1", "type": "multi_party_call"}],
        "run": {"mode": "sequential", "dial": [{"to": dial_to, "role": "agent"}]},
    }
    return PhloRecord("phlo-1", AUTH_ID, "runs", definition, created_at)


async def services(store: CountingStore) -> tuple[RunService, ConferenceService]:
    carrier = SimCarrier(store, answer_delay_ms=0)
    conferences = ConferenceService(store, carrier)
    await carrier.start()
    return RunService(store, conferences), conferences


async def test_the_end_of_the_conference_completes_the_stored_run_without_reading_it(
    store: CountingStore,
) -> None:
    runs, conferences = await services(store)
    record = phlo(AGENT, 1.0)
    definition = PhloDefinition.model_validate(record.definition)
    run = await runs.run(AUTH_ID, record, definition, {}, answered=(CALLER, Role.CUSTOMER, "in-1"))
    stored = await store.get_run(run.run_id)
    assert stored is not None and stored.status is RunStatus.RUNNING
    live = conferences.get_live(run.conference_ids[0])
    assert live is not None
    await settle(lambda: live.conf.members.get(AGENT) and live.conf.members[AGENT].answered)
    reads = store.run_reads
    await conferences.member_action(AUTH_ID, "phlo-1", "node-1", Hangup(AGENT))
    await conferences.member_action(AUTH_ID, "phlo-1", "node-1", Hangup(CALLER))

    finished: list[RunRecord] = []

    async def poll() -> None:
        while True:
            done = await store._store.get_run(run.run_id)
            if done is not None and done.status is not RunStatus.RUNNING:
                finished.append(done)
                return
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), 5)
    assert finished[0].status is RunStatus.COMPLETED
    assert finished[0].message.startswith(f"{run.message}; conference ended (")
    assert store.run_reads == reads  # the run came from memory, not from a read-back
