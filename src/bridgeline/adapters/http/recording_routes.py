"""Recordings (issue #13): start/stop/pause/resume in the PHLO style, and recordings as resources.

A recording is the account's own: another account's id answers 404, as a missing one does. The list
is Plivo's shape (`meta` + `objects`, newest first, `limit` at most 20); a download streams the file
with HTTP Range (adapters/recordings/ranges.py decides what a Range header means).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response, StreamingResponse

from bridgeline.adapters.http.context import ApiRequest, AppContext, checked_address, mpc_node, owned_phlo
from bridgeline.adapters.http.errors import ApiError, invalid, new_api_id, ok
from bridgeline.adapters.http.forwarding import FORWARDED_BY
from bridgeline.adapters.http.schemas import MemberRecordingBody, RecordingActionBody
from bridgeline.adapters.recordings.ranges import RangeNotSatisfiable, parse_range
from bridgeline.adapters.recordings.storage import RecordingStorageError
from bridgeline.app.live import recording_urls
from bridgeline.app.ports import RecordingStore
from bridgeline.app.records import RecordingQuery, RecordingRow, RecordingStatus
from bridgeline.app.views import plivo_time
from bridgeline.core.commands import PauseRecording, ResumeRecording, StartRecording, StopRecording
from bridgeline.core.identifiers import is_valid_id

MAX_LIMIT = 20  # Plivo's
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
CHUNK_BYTES = 64 * 1024


def _command(action: str, member: str | None, file_format: str | None) -> Any:
    if action == "start":
        return StartRecording(member, file_format)
    return {"stop": StopRecording, "pause": PauseRecording, "resume": ResumeRecording}[action](member)


async def conference_recording(ctx: AppContext, api: ApiRequest) -> Response:
    phlo, definition = await owned_phlo(ctx, api.auth_id, api.params["phlo_id"])
    node = mpc_node(definition, phlo.phlo_id, api.params["node_type"], api.params["node_id"])
    body = api.parse(RecordingActionBody)
    command = _command(body.action, None, body.file_format)
    mpc_uuid = await ctx.conferences.recording_action(
        api.auth_id, phlo.phlo_id, node.node_id, body.trigger_source, command
    )
    return ok({"api_id": new_api_id(), "error": "", "mpc_uuid": mpc_uuid}, 201)


async def member_recording(ctx: AppContext, api: ApiRequest) -> Response:
    phlo, definition = await owned_phlo(ctx, api.auth_id, api.params["phlo_id"])
    node = mpc_node(definition, phlo.phlo_id, api.params["node_type"], api.params["node_id"])
    address = checked_address("member_address", api.params["member_address"])
    body = api.parse(MemberRecordingBody)
    command = _command(body.action, address, body.file_format)
    mpc_uuid = await ctx.conferences.recording_action(
        api.auth_id, phlo.phlo_id, node.node_id, address, command
    )
    return ok({"api_id": new_api_id(), "error": "", "mpc_uuid": mpc_uuid}, 201)


def recording_object(row: RecordingRow, public_url: str) -> dict[str, Any]:
    """Plivo's recording object, plus Bridgeline's own fields (state, member, size, failure)."""
    download, resource = recording_urls(public_url, row.recording_id)
    end = row.ended_at
    return {
        "recording_id": row.recording_id,
        "recording_url": download,
        "resource_uri": resource,
        "recording_format": row.file_format,
        "recording_type": row.kind,
        "recording_duration_ms": row.duration_ms,
        "recording_start_ms": round(row.started_at * 1000),
        "recording_end_ms": None if end is None else round(end * 1000),
        "add_time": plivo_time(row.started_at),
        "mpc_uuid": row.conference_id,
        "conference_name": row.conference_id,
        "phlo_id": row.phlo_id,
        "node_id": row.node_id,
        "member_address": row.member_address,
        "state": row.state.value,
        "size_bytes": row.size_bytes,
        "failure_reason": row.failure_reason,
        "previous_recording_id": row.previous_recording_id,  # the segment this one continues
    }


def _store(ctx: AppContext) -> RecordingStore:
    if ctx.recordings is None:
        raise ApiError(404, "this server keeps no recordings")
    return ctx.recordings


def _int(api: ApiRequest, name: str, default: int, low: int, high: int) -> int:
    raw = api.request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise invalid(name, f"expects an integer from {low} to {high}.")
    return int(raw)


def _time(api: ApiRequest, name: str) -> float | None:
    """Plivo's add_time filters: `YYYY-MM-DD HH:MM[:SS[.ffffff]]` (UTC), or ISO 8601."""
    raw = api.request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        when = datetime.fromisoformat(raw[:64])
    except ValueError:
        raise invalid(name, "expects a time like 2026-01-31 13:45[:00].") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


async def list_recordings(ctx: AppContext, api: ApiRequest) -> Response:
    params = api.request.query_params
    limit = _int(api, "limit", MAX_LIMIT, 1, MAX_LIMIT)
    offset = _int(api, "offset", 0, 0, 1_000_000)
    member = params.get("member") or params.get("member_address") or None
    if member is not None:
        checked_address("member", member)
    conference = params.get("mpc_uuid") or params.get("conference") or None
    if conference is not None and not is_valid_id(conference):
        raise invalid("mpc_uuid")
    query = RecordingQuery(
        api.auth_id,
        conference_id=conference,
        member_address=member,
        started_after=_time(api, "add_time__gt"),
        started_before=_time(api, "add_time__lt"),
        limit=limit,
        offset=offset,
    )
    rows, total = await _store(ctx).list_recordings(query)
    base = str(api.request.url.replace(query=None))
    following = offset + limit
    return ok(
        {
            "meta": {
                "limit": limit,
                "offset": offset,
                "total_count": total,
                "next": f"{base}?limit={limit}&offset={following}" if following < total else None,
                "previous": f"{base}?limit={limit}&offset={max(0, offset - limit)}" if offset else None,
            },
            "objects": [recording_object(r, ctx.public_url) for r in rows],
        }
    )


async def _owned(ctx: AppContext, api: ApiRequest) -> RecordingRow:
    recording_id = api.params["recording_id"]
    row = None
    if is_valid_id(recording_id):
        row = await _store(ctx).get_recording(api.auth_id, recording_id)
    if row is None:
        raise ApiError(404, f"recording {recording_id[:80]!r} not found")
    return row


async def get_recording(ctx: AppContext, api: ApiRequest) -> Response:
    return ok(recording_object(await _owned(ctx, api), ctx.public_url))


def _elsewhere(ctx: AppContext, api: ApiRequest, row: RecordingRow) -> str | None:
    """The node whose disk holds the row's file, when that is not this node (a cluster with local
    storage: a segment recorded before a takeover); a request already carried here is answered here."""
    forwarder, files = ctx.forwarder, ctx.recording_files
    if forwarder is None or files is None or files.storage.shared or FORWARDED_BY in api.request.headers:
        return None
    return None if row.recorder_node == forwarder.node_id else row.recorder_node


async def download_recording(ctx: AppContext, api: ApiRequest) -> Response:
    row = await _owned(ctx, api)
    if row.state is RecordingStatus.COMPLETED and (node := _elsewhere(ctx, api, row)) and ctx.forwarder:
        return await ctx.forwarder.to_node(node, api.request, f"the file of recording {row.recording_id}")
    files = ctx.recording_files
    if row.state is not RecordingStatus.COMPLETED or row.location is None or files is None:
        raise ApiError(404, f"recording {row.recording_id} has no file to download (state: {row.state})")
    try:
        total = await files.size(row.location)
    except (RecordingStorageError, ValueError):
        raise ApiError(404, f"the file of recording {row.recording_id} is gone") from None
    headers = {"Accept-Ranges": "bytes"}
    try:
        wanted = parse_range(api.request.headers.get("range"), total)
    except RangeNotSatisfiable as exc:
        raise ApiError(416, str(exc), {"Content-Range": exc.content_range}) from None
    start, end, status = (0, total - 1, 200) if wanted is None else (wanted.start, wanted.end, 206)
    if wanted is not None:
        headers["Content-Range"] = wanted.content_range
    headers["Content-Length"] = str(end - start + 1)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in files.read_range(row.location or "", start, end):
            yield chunk

    media_type = CONTENT_TYPES.get(row.file_format, "application/octet-stream")
    return StreamingResponse(body(), status_code=status, headers=headers, media_type=media_type)


async def delete_recording(ctx: AppContext, api: ApiRequest) -> Response:
    row = await _owned(ctx, api)
    if row.state is RecordingStatus.RECORDING:
        raise ApiError(409, f"recording {row.recording_id} is still being recorded: stop it first")
    if row.location is not None and (node := _elsewhere(ctx, api, row)) and ctx.forwarder:
        return await ctx.forwarder.to_node(node, api.request, f"the file of recording {row.recording_id}")
    if row.location is not None and ctx.recording_files is not None:
        await ctx.recording_files.delete(row.location)
    await _store(ctx).delete_recording(api.auth_id, row.recording_id)
    return ok({"recording_id": row.recording_id, "message": "recording deleted"})
