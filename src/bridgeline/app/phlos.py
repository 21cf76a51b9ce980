"""Validated PHLO definitions, cached: an API request or an inbound call reads no PHLO row and
re-validates nothing once its PHLO has been seen."""

from __future__ import annotations

from bridgeline.app.ports import PhloStore
from bridgeline.app.records import PhloRecord
from bridgeline.phlo.definition import PhloDefinition


class PhloCache:
    """Validated PHLO definitions by (auth_id, phlo_id), so a request reads no row and validates nothing.

    PHLO ids are per account: two accounts may each have a PHLO "support", so every key carries the
    account. A PHLO never changes once created; the only way a key can come to mean another definition
    is a delete and a new create, and deletes go through `forget`. Misses (unknown ids) are not cached.
    """

    MAX_ENTRIES = 4096

    def __init__(self, store: PhloStore) -> None:
        self._store = store
        self._entries: dict[tuple[str, str], tuple[PhloRecord, PhloDefinition]] = {}
        self._forgets = 0  # a read that raced with a delete must not cache what it read

    async def get(self, auth_id: str, phlo_id: str) -> tuple[PhloRecord, PhloDefinition] | None:
        key = (auth_id, phlo_id)
        entry = self._entries.get(key)
        if entry is not None:
            return entry
        forgets = self._forgets
        phlo = await self._store.get_phlo(auth_id, phlo_id)
        if phlo is None:
            return None
        entry = (phlo, PhloDefinition.model_validate(phlo.definition))
        if forgets != self._forgets:
            return entry
        if len(self._entries) >= self.MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]  # the oldest entry
        self._entries[key] = entry
        return entry

    def forget(self, auth_id: str, phlo_id: str) -> None:
        self._forgets += 1
        self._entries.pop((auth_id, phlo_id), None)
