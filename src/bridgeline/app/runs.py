"""PHLO runs: fill the definition's templates from the payload and start the MPC conference."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog

from bridgeline.app.commit_mark import mark_committed
from bridgeline.app.ports import ConferenceHistory, RunStore
from bridgeline.app.records import ConferenceStatus, PhloRecord, RunEnd, RunRecord, RunStatus
from bridgeline.app.service import ConferenceService, run_end_of
from bridgeline.core import snapshot
from bridgeline.core.address import InvalidAddress, classify
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import Role
from bridgeline.phlo.definition import PhloDefinition, resolve_dials, resolve_settings
from bridgeline.phlo.template import SettingError, TemplateError

log = structlog.get_logger(__name__)


class RunService:
    def __init__(
        self,
        store: RunStore,
        history: ConferenceHistory,
        conferences: ConferenceService,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._store = store
        self._history = history  # to see whether a running run's conferences are over
        self._conferences = conferences
        self._clock = clock
        self._new_id = new_id

    async def run(
        self,
        auth_id: str,
        phlo: PhloRecord,
        definition: PhloDefinition,
        payload: dict[str, Any],
        *,
        answered: tuple[str, Role, str] | None = None,
    ) -> RunRecord:
        """Start a run. Raises ActionRefused (HTTP 400) when the payload cannot fill the PHLO.

        `answered` is an inbound caller already on the line (address, role, leg id): the run
        adopts that leg instead of dialing the address, and dials the other parties.
        """
        now = self._clock()
        run = RunRecord(
            run_id=self._new_id(),
            phlo_id=phlo.phlo_id,
            auth_id=auth_id,
            payload=payload,
            status=RunStatus.COMPLETED,
            message="",
            conference_ids=(),
            created_at=now,
            updated_at=now,
        )
        if definition.run is None and answered is not None:
            raise ActionRefused(f"PHLO '{phlo.name}' defines no run steps to connect an inbound call")
        if definition.run is None:
            run = replace(
                run, message=f"stopped. PHLO '{phlo.name}' defines no run steps - phlo_run_id {run.run_id}"
            )
            await self._store.create_run(run)
            return run
        node = definition.run_node()
        try:
            settings = resolve_settings(node, payload)
            dials = resolve_dials(definition.run, payload)
            if answered is not None:
                dials = [(address, role) for address, role in dials if address != answered[0]]
            for address, _ in dials:
                classify(address)
        except (TemplateError, SettingError, InvalidAddress) as exc:
            raise ActionRefused(f"invalid run payload: {exc}") from exc
        conference_id = self._new_id()
        first = (
            ", ".join(a for a, _ in (dials[:1] if definition.run.mode == "sequential" else dials)) or "nobody"
        )
        run = replace(
            run,
            status=RunStatus.RUNNING,
            conference_ids=(conference_id,),
            message=(
                f"'{node.name}' ({node.node_id}) with phlo_run_uuid: {run.run_id} executed: "
                f"conference {conference_id} started, dialing {first}"
            ),
        )
        # The run is stored before the conference starts: the conference's last commit finishes it.
        await self._store.create_run(run)
        mark_committed()  # a failure from here on leaves the run stored: its 500 must not say otherwise
        try:
            await self._conferences.start_conference(
                auth_id=auth_id,
                phlo_id=phlo.phlo_id,
                node_id=node.node_id,
                run_id=run.run_id,
                settings=settings,
                dials=dials,
                sequential=definition.run.mode == "sequential",
                conference_id=conference_id,
                answered=[] if answered is None else [answered],
            )
        except ActionRefused as exc:
            failed = replace(
                run, status=RunStatus.FAILED, message=exc.message, conference_ids=(), updated_at=self._clock()
            )
            await self._store.update_run(failed)
            raise
        return run

    async def reconcile(self, started_before: float) -> int:
        """Finish the runs a crash left `running` though their conference is over; how many were.

        A run ends in its conference's last commit, but a store written by an earlier version (or a run
        whose conference was never committed) can hold such runs. A run with no stored conference is
        failed only if it was created before `started_before`: another process may be starting it now.
        """
        finished = 0
        for run in await self._store.running_runs():
            records = [await self._history.get_conference(cid) for cid in run.conference_ids]
            if any(r is not None and r.status is ConferenceStatus.LIVE for r in records):
                continue  # still live: restored, and its end will finish the run
            now = self._clock()
            ended = [r for r in records if r is not None]
            if ended and len(ended) == len(records):
                end = run_end_of(snapshot.load(ended[-1].state["core"]), run.run_id, now)
            elif run.created_at < started_before:
                end = RunEnd(run.run_id, RunStatus.FAILED, "; the server stopped before the conference", now)
            else:
                continue
            if await self._store.end_run(end):
                finished += 1
                log.info("run_reconciled", run_id=run.run_id, status=end.status.value)
        return finished
