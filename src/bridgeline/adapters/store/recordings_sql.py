"""Recording rows (the app's `RecordingStore` port, issue #13) on both SQL dialects.

A mixin of `SqlStore`, like sip_registrations.py, so the store's core file does not grow. Every
read is scoped to the account: another account's recording is simply not found.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from bridgeline.adapters.store.sql import Params, Row
from bridgeline.app.records import RECORDER_LOST, RecordingEnd, RecordingQuery, RecordingRow, RecordingStatus

_COLUMNS = (
    "recording_id",
    "auth_id",
    "conference_id",
    "phlo_id",
    "node_id",
    "member_address",
    "kind",
    "file_format",
    "state",
    "started_at",
    "ended_at",
    "duration_ms",
    "size_bytes",
    "location",
    "failure_reason",
    "recorder_node",
    "previous_recording_id",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM recordings"
INSERT_RECORDING = (
    f"INSERT INTO recordings ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
FINISH_RECORDING = (
    "UPDATE recordings SET state = ?, ended_at = ?, duration_ms = ?, size_bytes = ?, location = ?,"
    " failure_reason = ? WHERE recording_id = ? AND (state = 'recording' OR failure_reason = ?)"
)
# Left 'recording' by a crash, or given up on while this node was down (its file may be here still).
SELECT_UNFINISHED = (
    f"{_SELECT} WHERE (state = 'recording' OR (failure_reason = ? AND location IS NULL))"
    " AND recorder_node = ? ORDER BY started_at"
)
SELECT_ONE = f"{_SELECT} WHERE auth_id = ? AND recording_id = ?"
DELETE_ONE = "DELETE FROM recordings WHERE auth_id = ? AND recording_id = ?"
DELETE_AT = "DELETE FROM recordings WHERE location = ? AND state <> 'recording'"


def _filters(query: RecordingQuery) -> tuple[str, list[object]]:
    clauses: list[str] = ["auth_id = ?"]
    params: list[object] = [query.auth_id]
    if query.conference_id is not None:
        clauses.append("conference_id = ?")
        params.append(query.conference_id)
    if query.member_address is not None:
        clauses.append("member_address = ?")
        params.append(query.member_address)
    if query.started_after is not None:
        clauses.append("started_at > ?")
        params.append(float(query.started_after))
    if query.started_before is not None:
        clauses.append("started_at < ?")
        params.append(float(query.started_before))
    return " WHERE " + " AND ".join(clauses), params


def _row(row: Row) -> RecordingRow:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["state"] = RecordingStatus(values["state"])
    for key in ("duration_ms", "size_bytes"):
        if values[key] is not None:
            values[key] = int(values[key])
    return RecordingRow(**values)


class RecordingRows:
    """`RecordingStore` over the store's primitives."""

    @abstractmethod
    async def _read(self, query: str, params: Params = ()) -> list[Row]: ...

    @abstractmethod
    async def _write_statements(self, statements: Sequence[tuple[str, Params]]) -> list[int]: ...

    async def add_recording(self, row: RecordingRow) -> None:
        values = tuple(getattr(row, c) for c in _COLUMNS)
        values = tuple(v.value if isinstance(v, RecordingStatus) else v for v in values)
        await self._write_statements([(INSERT_RECORDING, values)])

    async def finish_recording(self, end: RecordingEnd) -> bool:
        params = (
            end.state.value,
            float(end.ended_at),
            end.duration_ms,
            end.size_bytes,
            end.location,
            end.failure_reason,
            end.recording_id,
            RECORDER_LOST,  # given up on, then finished by its node after all: the row tells the truth
        )
        (count,) = await self._write_statements([(FINISH_RECORDING, params)])
        return count == 1

    async def unfinished_recordings(self, node_id: str) -> list[RecordingRow]:
        return [_row(r) for r in await self._read(SELECT_UNFINISHED, (RECORDER_LOST, node_id))]

    async def recordings_by_id(self, recording_ids: Sequence[str]) -> dict[str, RecordingRow]:
        if not recording_ids:
            return {}
        marks = ", ".join("?" for _ in recording_ids)
        rows = await self._read(f"{_SELECT} WHERE recording_id IN ({marks})", tuple(recording_ids))
        return {row.recording_id: row for row in map(_row, rows)}

    async def get_recording(self, auth_id: str, recording_id: str) -> RecordingRow | None:
        rows = await self._read(SELECT_ONE, (auth_id, recording_id))
        return _row(rows[0]) if rows else None

    async def list_recordings(self, query: RecordingQuery) -> tuple[list[RecordingRow], int]:
        where, params = _filters(query)
        page = await self._read(
            f"{_SELECT}{where} ORDER BY started_at DESC, recording_id LIMIT ? OFFSET ?",
            (*params, int(query.limit), int(query.offset)),
        )
        (total,) = (await self._read(f"SELECT COUNT(*) FROM recordings{where}", tuple(params)))[0]
        return [_row(r) for r in page], int(total)

    async def delete_recordings_at(self, locations: Sequence[str]) -> int:
        if not locations:
            return 0
        counts = await self._write_statements([(DELETE_AT, (location,)) for location in locations])
        return sum(counts)

    async def delete_recording(self, auth_id: str, recording_id: str) -> bool:
        (count,) = await self._write_statements([(DELETE_ONE, (auth_id, recording_id))])
        return count == 1
