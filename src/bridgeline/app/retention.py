"""Retention: ended conferences (with their events and deliveries), finished runs, old Idempotency-Keys
and, when a recording retention is set, recordings (their files, then their rows) are deleted once older
than their retention, in small batches, by a background task and by `bridgeline prune`.

Each batch is one short transaction; the task yields between batches, so the event loop never waits
for a long delete. A retention of 0 keeps everything forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from bridgeline.app.ports import RetentionStore

log = structlog.get_logger(__name__)

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Pruned:
    conferences: int = 0
    runs: int = 0
    idempotency_keys: int = 0
    recordings: int = 0


class Pruner:
    def __init__(
        self,
        store: RetentionStore,
        *,
        conference_retention: float = 30 * DAY,
        run_retention: float = 30 * DAY,
        idempotency_retention: float = 0.0,
        batch: int = 200,
        interval: float = 300.0,
        pause: float = 0.01,
        clock: Callable[[], float] = time.time,
        prune_recordings: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        """Retentions in seconds (0 = forever); `pause` is the breath between two batches.

        An Idempotency-Key older than its retention already counts as unknown (the store's claim ignores
        it): pruning only gives the room back."""
        if batch < 1:
            raise ValueError("the prune batch must be at least 1")
        self._store = store
        self._conference_retention = conference_retention
        self._run_retention = run_retention
        self._idempotency_retention = idempotency_retention
        self._batch = batch
        self._interval = interval
        self._pause = pause
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        # Recordings past their retention (files, then rows); None: kept forever.
        self._prune_recordings = prune_recordings

    @property
    def enabled(self) -> bool:
        return (
            self._conference_retention > 0
            or self._run_retention > 0
            or self._idempotency_retention > 0
            or self._prune_recordings is not None
        )

    async def prune_once(self) -> Pruned:
        """Delete everything past its retention now, batch after batch."""
        now = self._clock()
        conferences = await self._in_batches(self._store.prune_conferences, now, self._conference_retention)
        runs = await self._in_batches(self._store.prune_runs, now, self._run_retention)
        keys = await self._in_batches(self._store.prune_idempotency_keys, now, self._idempotency_retention)
        recordings = 0 if self._prune_recordings is None else await self._prune_recordings()
        if conferences or runs or keys or recordings:
            log.info(
                "pruned", conferences=conferences, runs=runs, idempotency_keys=keys, recordings=recordings
            )
        return Pruned(conferences, runs, keys, recordings)

    async def _in_batches(
        self, prune: Callable[[float, int], Awaitable[int]], now: float, retention: float
    ) -> int:
        """Run one store pruning method until a batch comes back short; how many rows went."""
        if retention <= 0:
            return 0
        total = 0
        while (count := await prune(now - retention, self._batch)) > 0:
            total += count
            if count < self._batch:
                break
            await asyncio.sleep(self._pause)  # let the event loop breathe between transactions
        return total

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="pruner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception:
                log.exception("prune_failed")
            await asyncio.sleep(self._interval)
