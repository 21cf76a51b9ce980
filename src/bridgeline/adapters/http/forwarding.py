"""Carrying a request to the node that owns its conference, and placing new runs by load.

Every node answers the whole API. A member or MPC action names its conference only through an address
(`trigger_source`, `member_address`); when no live conference of this node holds it, the store's
directory says which conference does and which node owns it, and the request is replayed there as it
came (same method, path, body and credentials: the owner authenticates it again). One hop only: a
request that already carries `FORWARDED_BY` is handled where it lands, so two nodes that disagree for a
moment can never bounce it between them (a client that sets the header itself only opts out of
forwarding).

While the owner is gone (killed, partitioned) the conference has no node to answer for it until another
takes it over. The forwarder keeps trying, re-reading the directory, for `retry_for_s` (more than a lease
plus a takeover scan), then answers 503 with Retry-After. Every forwarded request carries an
`Idempotency-Key` (the client's, or one made here once per request), so a retry after an answer was lost
acts once.

New runs go to the live node with the fewest legs (then conferences, then this node on a tie), from a
node list read at most once per `nodes_ttl_s`; a node that cannot be reached runs it here instead.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import httpx
import structlog
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from bridgeline.adapters.http.errors import ApiError
from bridgeline.app.ports import ClusterDirectory
from bridgeline.app.records import NodeRecord, NodeState

log = structlog.get_logger(__name__)

FORWARDED_BY = "x-bridgeline-forwarded-by"  # the node that forwarded this request (one hop only)
ANSWERED_BY = "x-bridgeline-node"  # which node answered a forwarded request
IDEMPOTENCY_KEY = "idempotency-key"
# Request headers worth carrying to the owner; hop-by-hop and connection headers are not.
_CARRIED = ("authorization", "content-type", "accept", "user-agent", IDEMPOTENCY_KEY)
# Response headers worth carrying back; the rest (length, encoding, connection) the server redoes.
_RETURNED = ("content-type", "retry-after", "allow", "www-authenticate")
# A file's download (`to_node`) also carries the range asked for and answered, and its length.
_FILE_CARRIED = (*_CARRIED, "range")
_FILE_RETURNED = (*_RETURNED, "content-range", "accept-ranges", "content-length", "content-encoding")


class Forward(StrEnum):
    """How a route finds the node that should answer it."""

    TRIGGER = "trigger"  # MPC action: the conference holding the body's trigger_source
    MEMBER = "member"  # member route: the conference holding the path's member_address
    PLACE = "place"  # a new run: the least loaded live node


LocalLookup = Callable[[str, str, str, str], bool]
"""(auth_id, phlo_id, node_id, address) -> True when a live conference of this node holds it."""


@dataclass
class Forwarder:
    node_id: str  # this server node
    directory: ClusterDirectory
    is_local: LocalLookup
    client: httpx.AsyncClient
    retry_for_s: float = 8.0
    retry_pause_s: float = 0.2
    nodes_ttl_s: float = 1.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _nodes: list[NodeRecord] = field(default_factory=list)
    _nodes_read_at: float = float("-inf")
    _stats: dict[str, int] = field(
        default_factory=lambda: {"forwarded": 0, "forward_retries": 0, "forward_failed": 0, "placed": 0}
    )

    def stats(self) -> Mapping[str, int]:
        return self._stats

    async def route(
        self,
        kind: Forward,
        request: Request,
        auth_id: str,
        params: Mapping[str, str],
        body: Mapping[str, object],
        raw: bytes,
    ) -> Response | None:
        """The owner's answer, or None when this node should answer itself."""
        if FORWARDED_BY in request.headers:
            return None
        if kind is Forward.PLACE:
            return await self._place(request, raw)
        address = params.get("member_address") if kind is Forward.MEMBER else body.get("trigger_source")
        phlo_id, node_id = params.get("phlo_id", ""), params.get("node_id", "")
        if not isinstance(address, str) or not address:
            return None  # the handler words the error
        if self.is_local(auth_id, phlo_id, node_id, address):
            return None
        return await self._to_owner(request, raw, (auth_id, phlo_id, node_id, address))

    # ----------------------------------------------------------------- to the owner
    async def _to_owner(
        self, request: Request, raw: bytes, key: tuple[str, str, str, str]
    ) -> Response | None:
        headers = _carried_headers(request, self.node_id)
        deadline = self.clock() + self.retry_for_s
        while True:
            held = await self.directory.address_owner(*key)  # one store read
            if held is None:
                return None  # no live conference holds it anywhere: the local answer (404/400) is right
            conference_id, owner = held.conference_id, held.node
            if owner is not None and owner.node_id != self.node_id:
                try:
                    return await self._send(owner, request, raw, headers)
                except httpx.TransportError as exc:
                    log.warning(
                        "forward_failed", node=owner.node_id, conference_id=conference_id, error=repr(exc)
                    )
            elif owner is not None:
                # This node owns it: it took it over meanwhile, or lost it and the store does not say so yet.
                # Either way the answer is this node's own (the conference, or "not in a live conference").
                return None
            # The owner is unreachable, or the conference is between owners: wait for the takeover.
            if self.clock() >= deadline:
                self._stats["forward_failed"] += 1
                raise ApiError(
                    503,
                    f"the node that runs conference {conference_id} cannot be reached; retry shortly",
                    {"Retry-After": "1"},
                )
            self._stats["forward_retries"] += 1
            await self.sleep(self.retry_pause_s)

    async def _send(
        self, owner: NodeRecord, request: Request, raw: bytes, headers: dict[str, str]
    ) -> Response:
        answer = await self.client.request(
            request.method, _url_at(owner, request), content=raw, headers=headers
        )
        self._stats["forwarded"] += 1
        returned = {name: answer.headers[name] for name in _RETURNED if name in answer.headers}
        returned[ANSWERED_BY] = owner.node_id
        return Response(answer.content, status_code=answer.status_code, headers=returned)

    # ----------------------------------------------------------------- a node's own files
    async def to_node(self, node_id: str, request: Request, what: str) -> Response:
        """Replay a bodiless request (a recording's download or delete) at `node_id`, whose disk holds
        `what`, and stream its answer back; 503 with Retry-After while that node is not up."""
        node = next((n for n in await self.directory.live_nodes() if n.node_id == node_id), None)
        unreachable = ApiError(
            503, f"{what} is on node {node_id}, which is not up; retry later", {"Retry-After": "5"}
        )
        if node is None:
            raise unreachable
        headers = {name: request.headers[name] for name in _FILE_CARRIED if name in request.headers}
        headers[FORWARDED_BY] = self.node_id
        outgoing = self.client.build_request(request.method, _url_at(node, request), headers=headers)
        try:
            answer = await self.client.send(outgoing, stream=True)
        except httpx.TransportError as exc:
            log.warning("forward_failed", node=node_id, error=repr(exc))
            raise unreachable from None
        self._stats["forwarded"] += 1
        returned = {name: answer.headers[name] for name in _FILE_RETURNED if name in answer.headers}
        returned[ANSWERED_BY] = node_id
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers=returned,
            background=BackgroundTask(answer.aclose),
        )

    # ----------------------------------------------------------------- placement
    async def _place(self, request: Request, raw: bytes) -> Response | None:
        target = choose_node(await self._live_nodes(), self.node_id)
        if target is None or target.node_id == self.node_id:
            return None
        try:
            response = await self._send(target, request, raw, _carried_headers(request, self.node_id))
        except httpx.ConnectError as exc:  # never reached it: nothing ran there, so run it here
            log.warning("placement_unreachable", node=target.node_id, error=repr(exc))
            self._nodes_read_at = float("-inf")
            return None
        self._stats["placed"] += 1
        return response

    async def _live_nodes(self) -> list[NodeRecord]:
        now = self.clock()
        if now - self._nodes_read_at >= self.nodes_ttl_s:
            self._nodes = await self.directory.live_nodes()
            self._nodes_read_at = now
        return self._nodes


def choose_node(nodes: list[NodeRecord], local_node: str) -> NodeRecord | None:
    """The live, not draining node with the fewest legs, then conferences; this node wins a tie."""
    candidates = [n for n in nodes if n.state == NodeState.UP]
    if not candidates:
        return None
    return min(
        candidates, key=lambda n: (n.live_legs, n.live_conferences, n.node_id != local_node, n.node_id)
    )


def _url_at(node: NodeRecord, request: Request) -> httpx.URL:
    # The path as it came (still percent-encoded), so the node decodes exactly what this one did.
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    target = raw_path.decode("latin-1")
    if request.url.query:
        target += "?" + request.url.query
    return httpx.URL(node.internal_url.rstrip("/") + "/").join(target.lstrip("/"))


def _carried_headers(request: Request, node_id: str) -> dict[str, str]:
    headers = {name: request.headers[name] for name in _CARRIED if name in request.headers}
    # One key for every attempt at this request: the owner acts once even if an answer is lost.
    headers.setdefault(IDEMPOTENCY_KEY, f"forwarded-{uuid.uuid4()}")
    headers[FORWARDED_BY] = node_id
    return headers
