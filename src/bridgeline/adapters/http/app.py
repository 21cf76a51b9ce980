"""The ASGI application: route table, authentication, lenient bodies and Plivo's error shape.

No request can produce a traceback: expected failures map to 4xx in Plivo's `{api_id, error}`
shape, and anything unexpected is logged and answered 500 in the same shape.
"""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from bridgeline.adapters.http import console_routes, ext_routes, plivo_routes, recording_routes
from bridgeline.adapters.http.bodies import parse_body, read_body
from bridgeline.adapters.http.context import ApiRequest, AppContext
from bridgeline.adapters.http.errors import ApiError, error_response
from bridgeline.adapters.http.forwarding import Forward
from bridgeline.adapters.http.idempotency import fingerprint, request_key
from bridgeline.adapters.http.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bridgeline.adapters.http.openapi import openapi_document
from bridgeline.adapters.http.routing import Route, Router
from bridgeline.adapters.http.schemas import (
    MemberActionBody,
    MemberRecordingBody,
    MpcActionBody,
    RecordingActionBody,
    RunBody,
    SimPhoneBody,
)
from bridgeline.app import commit_mark
from bridgeline.app.service import ConferenceMoved, NotFound
from bridgeline.core.errors import ActionRefused
from bridgeline.phlo.definition import PhloDefinition

log = structlog.get_logger(__name__)

PHLO = "/v1/phlo/{phlo_id}"
NODE = PHLO + "/{node_type}/{node_id}"
MEMBER = NODE + "/members/{member_address:path}"
PHONE = "/v1/sim/phones/{address:path}"
RECORDING = "/v1/recordings/{recording_id}"


async def health(ctx: AppContext, api: ApiRequest) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(ctx: AppContext, api: ApiRequest) -> Response:
    """For load balancers and the SIP front: 200 while this node may take new work (its lease holds and
    it is not draining), 503 otherwise. /health says only that the process answers."""
    if ctx.ready():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready"}, status_code=503)


async def metrics(ctx: AppContext, api: ApiRequest) -> Response:
    """Prometheus text; server-wide figures, so only the server's main account may read them."""
    if ctx.metrics is None:
        raise ApiError(404, "no such resource: /metrics")
    if api.auth_id != ctx.metrics.reader:
        raise ApiError(403, "metrics are readable by the server's main account only")
    return Response(ctx.metrics.render(), media_type=METRICS_CONTENT_TYPE)


def build_routes() -> list[Route]:
    """Every POST changes state, so every POST honours Idempotency-Key; PUT and DELETE are
    idempotent by their method (docs/semantics.md, "Retries and Idempotency-Key")."""
    p, e, c, r = plivo_routes, ext_routes, console_routes, recording_routes
    return [
        Route("GET", "/health", health, "Liveness check", authenticated=False),
        Route(
            "GET", "/ready", ready, "Readiness: lease held and not draining (Bridgeline)", authenticated=False
        ),
        Route("GET", "/metrics", metrics, "Prometheus metrics, main account only (Bridgeline)"),
        Route(
            "POST",
            "/v1/account/{auth_id}/phlo/{phlo_id}",
            p.run_phlo,
            "Run a PHLO",
            body=RunBody,
            status=201,
            forward=Forward.PLACE,
            idempotent_retries=True,
        ),
        Route("GET", "/v1/phlo", e.list_phlos, "List PHLOs (Bridgeline)"),
        Route(
            "POST",
            "/v1/phlo",
            e.create_phlo,
            "Create a PHLO (Bridgeline)",
            body=PhloDefinition,
            status=201,
            idempotent_retries=True,
        ),
        Route("GET", PHLO, p.get_phlo, "Retrieve a PHLO"),
        Route("DELETE", PHLO, e.delete_phlo, "Delete a PHLO (Bridgeline)"),
        Route("GET", PHLO + "/runs/{run_id}", p.get_run, "Retrieve a PHLO run"),
        Route(
            "GET", NODE + "/instances", e.list_instances, "Live and recent conferences of a node (Bridgeline)"
        ),
        Route("GET", MEMBER, e.get_member, "A member's live state (Bridgeline)", forward=Forward.MEMBER),
        Route(
            "POST",
            MEMBER,
            p.member_action,
            "Member action; also call, warm_transfer, cold_transfer asked by this member (Java's shape); "
            "node_type conference_bridge (legacy): mute, unmute, hangup",
            body=MemberActionBody,
            status=201,
            forward=Forward.MEMBER,
            idempotent_retries=True,
        ),
        Route("GET", NODE, p.get_node, "Retrieve a Multi-Party Call node"),
        Route(
            "POST",
            NODE,
            p.mpc_action,
            "Multi-Party Call action; also resume_call, abort_transfer of the trigger_source (Java, Go)",
            body=MpcActionBody,
            status=201,
            forward=Forward.TRIGGER,
            idempotent_retries=True,
        ),
        Route(
            "POST",
            NODE + "/recording",
            r.conference_recording,
            "Start, stop, pause or resume the conference recording (Bridgeline)",
            body=RecordingActionBody,
            status=201,
            forward=Forward.TRIGGER,
            idempotent_retries=True,
        ),
        Route(
            "POST",
            NODE + "/member_recording/{member_address:path}",
            r.member_recording,
            "Start, stop, pause or resume a member's participant track (Bridgeline)",
            body=MemberRecordingBody,
            status=201,
            forward=Forward.MEMBER,
            idempotent_retries=True,
        ),
        Route("GET", "/v1/recordings", r.list_recordings, "List recordings, newest first (Bridgeline)"),
        Route("GET", RECORDING, r.get_recording, "Retrieve a recording (Bridgeline)"),
        Route(
            "GET",
            RECORDING + "/download",
            r.download_recording,
            "Download a recording's file, Range supported",
        ),
        Route("DELETE", RECORDING, r.delete_recording, "Delete a recording and its file (Bridgeline)"),
        Route(
            "POST",
            PHONE + "/hangup",
            e.hang_up_sim_phone,
            "Make a virtual phone hang up",
            status=201,
            idempotent_retries=True,
        ),
        Route("PUT", PHONE, e.put_sim_phone, "Set how a virtual phone answers", body=SimPhoneBody),
        Route("GET", PHONE, e.get_sim_phone, "A virtual phone's behaviour and calls"),
        Route("GET", "/console", c.console_page, "The live console page (Bridgeline)"),
        Route("GET", "/console/static/{name}", c.console_asset, "Console assets", authenticated=False),
        Route("GET", "/v1/console/state", c.console_state, "Console: PHLOs and conferences (Bridgeline)"),
        Route("GET", "/v1/console/conferences/{mpc_uuid}", c.console_conference, "Console: one conference"),
        Route("GET", "/v1/events/stream", c.event_stream, "Live events, server-sent (Bridgeline)"),
    ]


class BridgelineApi:
    """An ASGI app; lifespan is handled by the server that wires it (see main/serving.py)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.router = Router(build_routes())
        self._openapi = openapi_document(self.router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._respond(request)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        path, method = request.url.path, request.method
        if path in ("/openapi.json", "/openapi.json/") and method == "GET":
            return JSONResponse(self._openapi)
        route, params, allowed = self.router.match(method, request.scope["path"])
        mark = commit_mark.start_request()
        try:
            if route is None:
                if allowed:
                    raise ApiError(405, f"method {method} not allowed here", {"Allow": ", ".join(allowed)})
                raise ApiError(404, f"no such resource: {path}")
            if console_routes.cross_origin(request):  # another site using a browser's cached credentials
                raise ApiError(403, "cross-origin requests are refused")
            account = await self.ctx.authenticator.authenticate(request) if route.authenticated else None
            retries = self.ctx.retries
            key = None
            if route.idempotent_retries and account is not None:
                key = request_key(request.headers, retries.settings.max_key_length)
            body: dict[str, Any] = {}
            raw = b""
            if method in ("POST", "PUT"):
                raw = await read_body(request.receive)
                body = parse_body(raw, request.headers.get("content-type", ""))
            # Before the key is claimed: only the node that runs the request claims it.
            if route.forward is not None and self.ctx.forwarder is not None and account is not None:
                forwarded = await self.ctx.forwarder.route(
                    route.forward, request, account.auth_id, params, body, raw
                )
                if forwarded is not None:
                    return forwarded
            api = ApiRequest(request, account, params, body, route.body)
            if key is None:
                return await self._handle(route, api, mark)
            return await retries.respond(
                api.auth_id,
                key,
                fingerprint(method, request.scope["path"], body),
                lambda: self._handle(route, api, mark),
                committed=lambda: mark.committed,
            )
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except ClientDisconnect:  # gone, or refused mid-body by the server (server.py): nobody to answer
            return error_response(400, "the request ended before its body")
        except Exception:
            return self._failed(method, path, mark)

    async def _handle(self, route: Route, api: ApiRequest, mark: commit_mark.CommitMark) -> Response:
        """The route's answer, whatever happens: every failure becomes an answer in Plivo's shape, so an
        Idempotency-Key can keep it."""
        try:
            return await route.handler(self.ctx, api)
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except ActionRefused as exc:
            return error_response(400, exc.message)
        except NotFound as exc:
            return error_response(404, exc.message)
        except ConferenceMoved as exc:  # fenced: another node took it over; a 4xx, as SDKs choke on 5xx
            return error_response(409, exc.message, {"Retry-After": "1"})  # nothing done: a retry runs
        except ValidationError as exc:
            return error_response(400, ext_routes.describe_validation_error(exc))
        except Exception:
            return self._failed(api.request.method, api.request.url.path, mark)

    @staticmethod
    def _failed(method: str, path: str, mark: commit_mark.CommitMark) -> Response:
        if mark.committed:  # e.g. a carrier command failed after the store commit
            log.exception("request_failed_after_commit", method=method, path=path)
            return error_response(
                500, "internal server error; the change was saved but not fully carried out"
            )
        log.exception("request_failed", method=method, path=path)
        return error_response(500, "internal server error; nothing was changed by this request")
