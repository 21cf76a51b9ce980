"""The console's routes: the page and its assets, its initial state, and the live event stream.

The page is guarded by the API's own HTTP Basic auth (the browser prompts on the 401 and then
sends the credentials with the page's same-origin fetches). Because a browser that holds
those credentials would also attach them to requests forged by other sites, `cross_origin`
lets the API refuse any request a browser marks as coming from another origin.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from bridgeline.adapters.console.hub import EventHub, TooManyForAccount, TooManySubscribers
from bridgeline.adapters.console.payloads import conference_entry, delivery_view, event_view
from bridgeline.adapters.console.sse import EventStreamResponse
from bridgeline.adapters.http.context import ApiRequest, AppContext, owned_phlo
from bridgeline.adapters.http.errors import ApiError, ok
from bridgeline.adapters.http.ext_routes import phlo_summary
from bridgeline.app.records import ConferenceRecord, ConferenceStatus, PhloRecord
from bridgeline.app.service import ConferenceMeta
from bridgeline.core import snapshot
from bridgeline.core.conference import Conference
from bridgeline.phlo.definition import PhloDefinition

RECENT_SECONDS = 15 * 60  # ended conferences stay on the console this long
RECENT_PER_NODE = 5
STORED_LIVE_PER_NODE = 200  # other nodes' live conferences shown per PHLO node (newest first)
EVENTS_PER_CONFERENCE = 200
RETRY_AFTER_SECONDS = 5  # when the stream slots are all taken

_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
_PAGE_HEADERS = {
    # Everything the page needs comes from this origin; nothing may frame it.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def cross_origin(request: Request) -> bool:
    """A browser request sent by a page of another origin (Plivo's SDKs send no Origin)."""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site") == "cross-site"
    # Host and port only: behind a TLS-terminating proxy the scheme seen here is not the browser's.
    return urlsplit(origin).netloc != request.headers.get("host", "")


def _asset(name: str) -> tuple[bytes, str] | None:
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in _TYPES or name.startswith("."):
        return None
    path = resources.files("bridgeline.adapters.console").joinpath("static", name)
    if not path.is_file():
        return None
    return path.read_bytes(), _TYPES[suffix]


async def console_page(ctx: AppContext, api: ApiRequest) -> Response:
    found = _asset("console.html")
    assert found is not None, "console.html is missing from the package"
    return Response(found[0], media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def console_asset(ctx: AppContext, api: ApiRequest) -> Response:
    found = _asset(api.params["name"])
    if found is None:
        raise ApiError(404, f"no such console asset: {api.params['name']}")
    body, media_type = found
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    return Response(body, media_type=f"{media_type}; charset=utf-8", headers=headers)


def _hub(ctx: AppContext) -> EventHub:
    if ctx.hub is None:
        raise ApiError(404, "the live console is not enabled on this server")
    return ctx.hub


async def _phlos(ctx: AppContext, api: ApiRequest) -> list[PhloRecord]:
    phlo_id = api.request.query_params.get("phlo_id")
    if phlo_id:
        phlo, _ = await owned_phlo(ctx, api.auth_id, phlo_id)
        return [phlo]
    return await ctx.phlo_store.list_phlos(api.auth_id)


async def _details(
    ctx: AppContext, conf: Conference, record: ConferenceRecord | ConferenceMeta
) -> dict[str, Any]:
    entry = conference_entry(conf, phlo_id=record.phlo_id, node_id=record.node_id, run_id=record.run_id)
    events = await ctx.history.list_events(conf.conference_id)
    entry["events"] = [event_view(e) for e in events[-EVENTS_PER_CONFERENCE:]]
    entry["deliveries"] = [delivery_view(d) for d in await ctx.history.list_deliveries(conf.conference_id)]
    return entry


async def console_state(ctx: AppContext, api: ApiRequest) -> Response:
    """Every PHLO of the account, its nodes, and their live and recently ended conferences."""
    now = time.time()
    phlos = await _phlos(ctx, api)
    conferences: list[dict[str, Any]] = []
    for phlo in phlos:
        for node in PhloDefinition.model_validate(phlo.definition).nodes:
            live = ctx.conferences.live_conferences(api.auth_id, phlo.phlo_id, node.node_id)
            for item in live:
                conferences.append(await _details(ctx, item.conf, item.meta))
            seen = {item.meta.conference_id for item in live}
            # In a cluster, the live conferences other nodes own: their last committed snapshots.
            stored_live = await ctx.history.list_conferences(
                api.auth_id, phlo.phlo_id, node.node_id, live_only=True, limit=STORED_LIVE_PER_NODE
            )
            for record in stored_live:
                if record.conference_id not in seen:
                    seen.add(record.conference_id)
                    conferences.append(await _details(ctx, snapshot.load(record.state["core"]), record))
            records = await ctx.history.list_conferences(
                api.auth_id, phlo.phlo_id, node.node_id, limit=RECENT_PER_NODE
            )
            for record in records:
                recent = record.ended_at is not None and record.ended_at >= now - RECENT_SECONDS
                # A live conference not held here is another node's: its last commit is its state.
                if record.conference_id in seen or (
                    record.status is not ConferenceStatus.LIVE and not recent
                ):
                    continue
                conferences.append(await _details(ctx, snapshot.load(record.state["core"]), record))
    return ok(
        {"server_time": now, "phlos": [phlo_summary(p) for p in phlos], "conferences": conferences},
    )


async def console_conference(ctx: AppContext, api: ApiRequest) -> Response:
    """One conference with its events and callback deliveries (the page polls deliveries here)."""
    mpc_uuid = api.params["mpc_uuid"]
    live = ctx.conferences.get_live(mpc_uuid)
    if live is not None and live.meta.auth_id == api.auth_id:
        return ok(await _details(ctx, live.conf, live.meta))
    record = await ctx.history.get_conference(mpc_uuid)
    if record is None or record.auth_id != api.auth_id:
        raise ApiError(404, f"conference {mpc_uuid} not found")
    return ok(await _details(ctx, snapshot.load(record.state["core"]), record))


async def event_stream(ctx: AppContext, api: ApiRequest) -> Response:
    """Server-sent events: every committed change of the account's conferences, with its view."""
    hub = _hub(ctx)
    phlo_id = api.request.query_params.get("phlo_id") or None
    if phlo_id is not None:
        await owned_phlo(ctx, api.auth_id, phlo_id)
    try:
        subscription = hub.subscribe(api.auth_id, phlo_id)
    except TooManyForAccount as exc:
        raise ApiError(429, str(exc), {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    except TooManySubscribers as exc:
        raise ApiError(503, str(exc), {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
    return EventStreamResponse(hub, subscription)
