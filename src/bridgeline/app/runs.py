"""PHLO runs: fill the definition's templates from the payload and start the MPC conference."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import structlog

from bridgeline.app.ports import Store
from bridgeline.app.records import EventRecord, PhloRecord, RunRecord, RunStatus
from bridgeline.app.service import ConferenceMeta, ConferenceService
from bridgeline.core.address import InvalidAddress, classify
from bridgeline.core.conference import Conference
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import Role
from bridgeline.phlo.definition import PhloDefinition, SettingError, resolve_dials, resolve_settings
from bridgeline.phlo.template import TemplateError

log = structlog.get_logger(__name__)


class RunService:
    def __init__(
        self,
        store: Store,
        conferences: ConferenceService,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self._store = store
        self._conferences = conferences
        self._clock = clock
        self._new_id = new_id
        self._tasks: set[asyncio.Task[None]] = set()
        # Runs whose conference this process started, as stored: only RunService writes runs,
        # so the conference's end can update them without reading them back.
        self._running: dict[str, RunRecord] = {}
        conferences.listeners.append(self._on_conference_events)

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
        # The run is stored before the conference starts, so the end of the conference always finds it.
        await self._store.create_run(run)
        self._running[run.run_id] = run
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
            self._running.pop(run.run_id, None)
            failed = replace(
                run, status=RunStatus.FAILED, message=exc.message, conference_ids=(), updated_at=self._clock()
            )
            await self._store.update_run(failed)
            raise
        except BaseException:
            self._running.pop(run.run_id, None)  # e.g. a failed commit: the run stays as stored
            raise
        return run

    def _on_conference_events(
        self, meta: ConferenceMeta, conf: Conference, events: list[EventRecord]
    ) -> None:
        if conf.live or meta.run_id is None:
            return
        task = asyncio.ensure_future(self._finish_run(meta.run_id, conf))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_run(self, run_id: str, conf: Conference) -> None:
        try:
            run = self._running.pop(run_id, None) or await self._store.get_run(run_id)
            if run is None:
                return
            connected = any(m.connected_at is not None for m in conf.members.values())
            status = RunStatus.COMPLETED if connected else RunStatus.FAILED
            reason = conf.end_reason.value if conf.end_reason else "ended"
            message = f"{run.message}; conference ended ({reason})"
            await self._store.update_run(
                replace(run, status=status, message=message, updated_at=self._clock())
            )
        except Exception:
            log.exception("run_update_failed", run_id=run_id)
