"""PHLO runs with real parts (SQLite store, sim carrier): what a run stores, and that the run
kept in memory until its conference ends never serves stale data."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bridgeline.adapters.carriers.sim.carrier import SimCarrier
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
    return RunService(store, store, conferences), conferences


async def test_the_conference_s_last_commit_completes_its_run(store: CountingStore) -> None:
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

    # Finished by the commit that ended the conference (one transaction), not by a later task.
    finished = await store._store.get_run(run.run_id)
    assert finished is not None and finished.status is RunStatus.COMPLETED
    assert finished.message.startswith(f"{run.message}; conference ended (")
    assert store.run_reads == reads  # the run was not read back to be finished


async def test_reconcile_leaves_live_and_recent_runs_alone(store: CountingStore) -> None:
    runs, conferences = await services(store)
    record = phlo(AGENT, 1.0)
    definition = PhloDefinition.model_validate(record.definition)
    run = await runs.run(AUTH_ID, record, definition, {}, answered=(CALLER, Role.CUSTOMER, "in-1"))
    young = dataclasses.replace(run, run_id="young", conference_ids=("not-yet-committed",), created_at=1e12)
    await store.create_run(young)
    assert await runs.reconcile(started_before=1e11) == 0
    for run_id in (run.run_id, "young"):
        stored = await store.get_run(run_id)
        assert stored is not None and stored.status is RunStatus.RUNNING
    await conferences.shutdown()
