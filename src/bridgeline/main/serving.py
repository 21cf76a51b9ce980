"""Serving the built server over HTTP, and tuning the process for it: uvicorn with the ASGI
lifespan and the drain on SIGTERM, the event loop (uvloop where installed), the open-file limit,
the garbage collector's thresholds and the start-up banner.

Apart from `wiring.py`: what is built does not depend on how it is served (the tests build
servers without serving them)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import resource
import signal
import socket
from collections.abc import Coroutine
from types import FrameType
from typing import Any

import structlog
import uvicorn
from starlette.types import Receive, Scope, Send

from bridgeline.adapters.console.hub import EventHub
from bridgeline.adapters.http.metrics import Source
from bridgeline.adapters.http.server import HttpLimits, guarded_protocol
from bridgeline.config import Settings
from bridgeline.main.wiring import Bridgeline, build

# One logger name for the whole entry point, as when it was one module.
log = structlog.get_logger("bridgeline.main")

# Files the process needs besides HTTP connections: store, SIP and RTP sockets, logs.
FILES_BESIDES_CONNECTIONS = 1024

# Young collections after 50k net allocations instead of 700 (50 requests in flight alone hold more
# than 700 objects), and older generations collected 20 times less often than that, not 10.
GC_THRESHOLDS = (50_000, 20, 20)


class WithLifespan:
    """The API plus ASGI lifespan: uvicorn runs our shutdown before it re-raises SIGTERM/SIGINT."""

    def __init__(self, app: Bridgeline) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app.api(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.app.stop()
                log.info("bridgeline_stopped")
                await send({"type": "lifespan.shutdown.complete"})
                return


class _Server(uvicorn.Server):
    """uvicorn drains open responses before the lifespan shutdown: end the console's streams first.

    The first SIGTERM drains the node first (docs/cluster.md): /ready answers 503 while the conferences
    are handed to other nodes, then the server exits as usual. Another signal exits at once."""

    def __init__(self, config: uvicorn.Config, hub: EventHub | None, app: Bridgeline | None = None) -> None:
        super().__init__(config)
        self.hub = hub
        self.app = app
        self._drain: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self.app is not None and self._drain is None and not self.should_exit:
            self._loop.call_soon_threadsafe(self._start_drain)
            return
        super().handle_exit(sig, frame)

    def _start_drain(self) -> None:
        if self._drain is None:
            self._drain = self._loop.create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        assert self.app is not None
        timeout = self.app.settings.drain_timeout_s
        try:
            await asyncio.wait_for(self.app.node.drain(timeout), timeout + 1.0)
        except Exception as error:  # a drain that fails must not keep the process up
            log.warning("drain_failed", error=repr(error))
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.hub is not None:
            self.hub.close()
        await super().shutdown(sockets)


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop's event loop when it is installed (a dependency where it builds), else on
    asyncio's: uvloop's transports and scheduling take a good share off every request."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


async def serve(settings: Settings) -> None:
    app = await build(settings)
    settle_heap()
    print_banner(app)
    limits = http_limits(settings)
    raise_file_limit(limits.max_connections + FILES_BESIDES_CONNECTIONS)
    protocol = guarded_protocol(limits)
    metrics = app.api.ctx.metrics
    assert metrics is not None  # build() always makes one
    metrics.add(
        Source(
            "http",
            protocol.counters.stats,
            counters=frozenset({"idle_closed", "stalled_closed", "refused"}),
            labels={"refused": "status"},
        )
    )
    config = uvicorn.Config(
        WithLifespan(app),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        access_log=False,
        log_level="warning",
        http=protocol,
        ws="none",  # the API has no WebSocket route; an upgrade request is served as plain HTTP
        server_header=False,  # no "server: uvicorn" banner for scanners
    )
    try:
        await _Server(config, app.api.ctx.hub, app).serve()
    finally:
        await app.stop()


def http_limits(settings: Settings) -> HttpLimits:
    """HttpLimits' fields are the `http_*` settings without their prefix."""
    return HttpLimits(**{f.name: getattr(settings, f"http_{f.name}") for f in dataclasses.fields(HttpLimits)})


def raise_file_limit(wanted: int) -> None:
    """Raise the soft limit on open files towards `wanted` (within the hard limit), so the connection
    cap, not the file limit, is what a flood of connections meets first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("open_file_limit_low", limit=target, wanted=wanted)


def settle_heap() -> None:
    """Keep the cyclic garbage collector's pauses short once the server is built.

    Freeze what start-up allocated (modules, the app, restored state: ~80k objects that live as long
    as the process), so full collections stop re-scanning it; and let far more allocations happen
    between young collections, so a request's short-lived objects die before being promoted. Measured
    under load (docs/optimisations.md): full collections of 30-100 ms made the p99 of actions.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def print_banner(app: Bridgeline) -> None:
    s, c = app.settings, app.credentials
    print(
        f"Bridgeline listening on http://{s.host}:{s.port}/v1  (carrier: {s.carrier})\n"
        f"  BRIDGELINE_AUTH_ID={c.auth_id}\n"
        f"  BRIDGELINE_AUTH_TOKEN={c.auth_token}\n"
        f"  data: {s.data_dir.resolve()}",
        flush=True,
    )
