"""The one place that chooses adapters and wires them to the ports."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import resource
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

import httpx
import structlog
import uvicorn
from starlette.types import Receive, Scope, Send

from bridgeline.adapters.carriers.sim.carrier import SimCarrier
from bridgeline.adapters.carriers.sim.phones import PhoneBook
from bridgeline.adapters.console.feed import EventFeed
from bridgeline.adapters.console.hub import EventHub
from bridgeline.adapters.egress import EgressPolicy
from bridgeline.adapters.http.app import BridgelineApi
from bridgeline.adapters.http.auth import Authenticator, AuthSettings
from bridgeline.adapters.http.context import AppContext
from bridgeline.adapters.http.forwarding import Forwarder
from bridgeline.adapters.http.idempotency import IdempotentRequests, RetrySettings
from bridgeline.adapters.http.metrics import Metrics, Source
from bridgeline.adapters.http.server import HttpLimits, guarded_protocol
from bridgeline.adapters.recordings.engine_files import WriterFiles
from bridgeline.adapters.recordings.factory import storage_from_settings
from bridgeline.adapters.recordings.storage import RecordingStorage, prune_recordings
from bridgeline.adapters.recordings.writers import WriterSettings
from bridgeline.adapters.store import PostgresStore, SqlStore, open_store
from bridgeline.adapters.store.notifications import PostgresListener
from bridgeline.adapters.webhooks.dispatcher import WebhookDispatcher
from bridgeline.app.cluster import ClusterNode, ClusterSettings
from bridgeline.app.inbound import InboundRefusal, start_inbound_run
from bridgeline.app.phlos import PhloCache
from bridgeline.app.ports import Carrier, ClusterDirectory, RecordingStore, RetentionStore, Store
from bridgeline.app.recordings import RecordingManager
from bridgeline.app.records import Account
from bridgeline.app.retention import DAY, Pruner
from bridgeline.app.runs import RunService
from bridgeline.app.segments import SegmentSweeper
from bridgeline.app.service import ConferenceService
from bridgeline.config import Credentials, Settings, load_or_create_credentials

if TYPE_CHECKING:  # imported when the sip carrier is chosen: the sim server starts faster without it
    from bridgeline.adapters.carriers.sip.recovery import DialogStore
    from bridgeline.adapters.carriers.sip.shared_registrations import RegistrationBook

# Files the process needs besides HTTP connections: store, SIP and RTP sockets, logs.
FILES_BESIDES_CONNECTIONS = 1024

# Young collections after 50k net allocations instead of 700 (50 requests in flight alone hold more
# than 700 objects), and older generations collected 20 times less often than that, not 10.
GC_THRESHOLDS = (50_000, 20, 20)

log = structlog.get_logger(__name__)

RECORDINGS_STOP_S = 5.0  # at shutdown, at most this long for open recordings' files to be stored

WEBHOOK_COUNTERS = ("attempts", "delivery_latency_seconds", "leases_expired")


@dataclass
class Bridgeline:
    settings: Settings
    credentials: Credentials
    store: Store  # every part: the SQL store (mypy checks it provides them all)
    carrier: Carrier
    conferences: ConferenceService
    runs: RunService
    dispatcher: WebhookDispatcher
    http_client: httpx.AsyncClient
    api: BridgelineApi
    pruner: Pruner
    node: ClusterNode
    forward_client: httpx.AsyncClient  # node to node (internal URLs from the store, not the egress policy)
    cluster_feed: ClusterFeed | None = None
    recordings: RecordingManager | None = None
    recording_files: WriterFiles | None = None

    stopped: bool = False

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        await self.node.stop_heartbeats()  # adopts nothing more
        await self.pruner.stop()
        if self.cluster_feed is not None:
            await self.cluster_feed.stop()
        await self.dispatcher.stop()
        await self.conferences.shutdown()
        await self.carrier.stop()
        await self.stop_recordings()
        await self.node.leave()  # what this node still owns is claimable by the others at once
        await self.http_client.aclose()
        await self.forward_client.aclose()
        await self.store.close()

    async def stop_recordings(self) -> None:
        """Flush and close every open recording file; their rows and Completed events are committed."""
        if self.recording_files is None or self.recordings is None:
            return
        await asyncio.to_thread(self.recording_files.stop)
        try:
            async with asyncio.timeout(RECORDINGS_STOP_S):
                await self.recordings.stop()
        except TimeoutError:  # left 'recording': the next start repairs and finishes them
            log.warning("recordings_not_finished_at_stop", open=self.recordings.recording_count)


@dataclass
class ClusterFeed:
    """Other nodes' commits, on PostgreSQL: their events to this node's hub, their callbacks to this
    node's dispatcher (docs/cluster.md "Events and callbacks across nodes")."""

    feed: EventFeed
    listener: PostgresListener
    reader: SqlStore  # the feed's own connection, so its polls never wait behind the commits

    def start(self) -> None:
        self.feed.start()
        self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()
        await self.feed.stop()
        await self.reader.close()

    def stats(self) -> dict[str, int]:
        return {**self.feed.stats(), **self.listener.stats()}


def cluster_feed(
    settings: Settings, store: Store, hub: EventHub, dispatcher: WebhookDispatcher
) -> ClusterFeed | None:
    """The feed and its LISTEN connection when the store is shared (PostgreSQL), else None: a single
    process hears all its commits itself."""
    if not isinstance(store, PostgresStore):
        return None
    reader = open_store(store.url)
    feed = EventFeed(
        hub,
        reader,
        poll_interval=settings.event_feed_poll_interval,
        max_events=settings.event_feed_max_events,
    )

    def reconnected() -> None:
        feed.poll_soon()
        dispatcher.wake()

    listener = PostgresListener(
        store.url, store.origin, on_commit=feed.notified, on_outbox=dispatcher.wake, on_connected=reconnected
    )
    return ClusterFeed(feed, listener, reader)


def egress_policy(settings: Settings) -> EgressPolicy:
    """Where callbacks and music URLs may lead (docs/security.md)."""
    return EgressPolicy.from_settings(settings.egress_profile, settings.egress_allow, settings.egress_deny)


def make_carrier(
    settings: Settings,
    phone_book: PhoneBook,
    dialogs: DialogStore | None = None,
    registrations: RegistrationBook | None = None,
) -> Carrier:
    """`dialogs`: where the sip carrier keeps answered legs' dialogs (recoverable); `registrations`:
    where it shares its phones' bindings, so that every node on the database can call them."""
    if settings.carrier == "sim":
        return SimCarrier(
            phone_book, answer_delay_ms=settings.sim_answer_delay_ms, playback_ms=settings.sim_playback_ms
        )
    if settings.carrier == "sip":
        from bridgeline.adapters.carriers.sip.carrier import SipCarrier
        from bridgeline.adapters.carriers.sip.music_fetch import MediaLimits
        from bridgeline.adapters.carriers.sip.settings import load_sip_settings

        media = MediaLimits(
            media_dir=settings.media_directory,
            max_bytes=settings.media_max_bytes,
            fetch_timeout_s=settings.media_fetch_timeout_s,
            max_seconds=settings.media_max_seconds,
            cache_bytes=settings.media_cache_bytes,
            egress=egress_policy(settings),
        )
        from bridgeline.adapters.carriers.sip.shared_registrations import SharedRegistrations

        sip = load_sip_settings(settings.sip_config, listen=settings.sip_listen)
        shared = None
        if registrations is not None and sip.registrations.shared:
            shared = SharedRegistrations(registrations, sip.domain)
        # answered legs' dialogs: recoverable; phones' bindings: shared with the other nodes
        return SipCarrier(sip, media=media, dialogs=dialogs, registrations=shared)
    raise ValueError(f"unknown carrier {settings.carrier!r} (available: sim, sip)")


def route_inbound_calls(carrier: Carrier, phlos: PhloCache, runs: RunService, main_auth_id: str) -> None:
    """A call to a configured number starts its PHLO run (sip carrier only); a route that names no
    account runs the main account's PHLO."""
    from bridgeline.adapters.carriers.sip.carrier import SipCarrier
    from bridgeline.adapters.carriers.sip.carrier_legs import InboundCall

    if not isinstance(carrier, SipCarrier):
        return
    sip = carrier

    async def on_inbound(call: InboundCall) -> str | InboundRefusal:
        route = sip.settings.route_for(call.dialed)
        if route is None:
            log.info("inbound_no_route", dialed=call.dialed, caller=call.caller)
            return InboundRefusal.UNROUTABLE
        return await start_inbound_run(
            phlos,
            runs,
            auth_id=route.auth_id or main_auth_id,
            phlo_id=route.phlo_id,
            payload_template=route.payload,
            caller=call.caller,
            dialed=call.dialed,
            role=route.role,
            leg_id=call.leg_id,
        )

    sip.bind_inbound(on_inbound)


def route_refer_transfers(carrier: Carrier, conferences: ConferenceService) -> None:
    """A member's phone that sends REFER asks for the API's cold transfer (sip carrier only)."""
    from bridgeline.adapters.carriers.sip.carrier import SipCarrier

    if isinstance(carrier, SipCarrier):
        carrier.bind_transfers(conferences.leg_cold_transfer)


async def build(settings: Settings) -> Bridgeline:
    credentials, _ = load_or_create_credentials(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.store_url)
    await store.migrate()
    if await store.get_account(credentials.auth_id) is None:
        await store.put_account(Account(credentials.auth_id, credentials.auth_token, time.time()))
    # The sim carrier keeps its phones in the store, the SIP carrier its answered legs' dialogs and
    # its phones' registrations.
    carrier = make_carrier(settings, phone_book=store, dialogs=store, registrations=store)
    # Commits are fenced as this node's current epoch (the node registers in start(), before any input).
    conferences = ConferenceService(store, carrier, owner=lambda: node.owner(), public_url=settings.node_url)
    recording_files = WriterFiles(
        settings.recordings_directory, storage_from_settings(settings), WriterSettings.from_settings(settings)
    )
    recordings = RecordingManager(
        store, store, recording_files, carrier, conferences, recorder_node=settings.node_id
    )
    node = ClusterNode(store, store, conferences, cluster_settings(settings, carrier))
    segments = SegmentSweeper(
        store, store, conferences, node_id=settings.node_id, lost_after_s=settings.recording_lost_after_s
    )
    node.after_beat.append(segments.sweep)
    fence_carrier(carrier, node)
    runs = RunService(store, store, conferences)
    phlos = PhloCache(store)  # one cache, so a deleted PHLO is forgotten for API and inbound calls alike
    if settings.carrier == "sip":  # not even imported otherwise: the sim server starts faster without it
        route_inbound_calls(carrier, phlos, runs, credentials.auth_id)
        route_refer_transfers(carrier, conferences)
    egress = egress_policy(settings)
    # Enough pooled connections for every attempt in flight; beyond that httpx would queue them.
    limits = httpx.Limits(max_connections=settings.webhook_max_in_flight, max_keepalive_connections=20)
    http_client = egress.client(follow_redirects=False, limits=limits)

    async def token_for(auth_id: str) -> str | None:
        account = await store.get_account(auth_id)
        return None if account is None else account.auth_token

    dispatcher = WebhookDispatcher(
        store,
        http_client,
        token_for,
        timeout=settings.webhook_timeout,
        per_destination=settings.webhook_per_destination,
        max_in_flight=settings.webhook_max_in_flight,
        poll_interval=settings.webhook_poll_interval,
    )
    conferences.listeners.append(lambda meta, conf, events: dispatcher.wake() if events else None)
    hub = EventHub(
        max_subscribers=settings.sse_max_streams, max_per_account=settings.sse_max_streams_per_account
    )
    feed = cluster_feed(settings, store, hub, dispatcher)
    conferences.listeners.append(hub.publish if feed is None else feed.feed.local_commit)
    await carrier.start()
    # Register with a new epoch and claim back what was live (this node's earlier life, or nobody's).
    restored = await node.start()
    await recordings.recover()  # files a crash left open: repaired, their Completed/Failed committed
    # Runs a crash left running though their conference ended (a minute's grace for other processes).
    await runs.reconcile(started_before=time.time() - 60.0)
    dispatcher.start()
    if feed is not None:
        feed.start()
    pruner = make_pruner(settings, store, recording_retention(settings, store, recording_files.storage))
    pruner.start()
    sim = carrier if isinstance(carrier, SimCarrier) else None
    authenticator = Authenticator(
        store,
        AuthSettings(settings.auth_cache_seconds, settings.auth_failure_rate, settings.auth_failure_burst),
    )
    retries = IdempotentRequests(store, retry_settings(settings))
    metrics = Metrics(reader=credentials.auth_id)
    metrics.add(
        Source("idempotency", retries.stats, counters=frozenset({"requests"}), labels={"requests": "outcome"})
    )
    metrics.add(Source("auth", authenticator.stats, counters=frozenset({"failed", "throttled"})))
    metrics.add(Source("events", hub.stats, counters=frozenset({"refused_streams"})))
    metrics.add(Source("conferences", lambda: {"live": conferences.live_count}))
    metrics.add(Source("node", node.stats, counters=frozenset({"takeovers", "leases_lost"})))
    metrics.add(
        Source(
            "webhooks",
            dispatcher.stats,
            counters=frozenset(WEBHOOK_COUNTERS),
            labels={"attempts": "outcome"},
        )
    )
    if feed is not None:
        feed_counters = {"from_other_nodes", "feed_polls", "feed_failures", "listen_connections"}
        feed_counters.add("notifications_received")
        metrics.add(Source("events", feed.stats, counters=frozenset(feed_counters)))
    if carrier.name == "sip":
        from bridgeline.adapters.carriers.sip.carrier import SipCarrier
        from bridgeline.adapters.carriers.sip.carrier_stats import SIP_COUNTERS

        assert isinstance(carrier, SipCarrier)
        metrics.add(Source("sip", carrier.stats, counters=SIP_COUNTERS))
    forwarder = make_forwarder(settings, store, conferences)
    metrics.add(Source("forwarding", forwarder.stats, counters=frozenset(forwarder.stats())))
    ctx = AppContext(
        phlo_store=store,
        run_store=store,
        history=store,
        conferences=conferences,
        runs=runs,
        authenticator=authenticator,
        phlos=phlos,
        sim=sim,
        retries=retries,
        hub=hub,
        metrics=metrics,
        ready=lambda: node.ready,
        forwarder=forwarder,
        recordings=store,
        recording_files=recording_files,
        public_url=settings.node_url,
    )
    api = BridgelineApi(ctx)
    log.info(
        "bridgeline_started", carrier=carrier.name, store=settings.store_url.split("@")[-1], restored=restored
    )
    return Bridgeline(
        settings,
        credentials,
        store,
        carrier,
        conferences,
        runs,
        dispatcher,
        http_client,
        api,
        pruner,
        node,
        forwarder.client,
        feed,
        recordings,
        recording_files,
    )


def make_forwarder(
    settings: Settings, directory: ClusterDirectory, conferences: ConferenceService
) -> Forwarder:
    """Requests for another node's conference go to its owner; new runs to the least loaded node."""
    client = httpx.AsyncClient(timeout=settings.forward_timeout_s, follow_redirects=False, trust_env=False)
    return Forwarder(
        node_id=settings.node_id,
        directory=directory,
        is_local=lambda *key: conferences.find(*key) is not None,
        client=client,
        retry_for_s=settings.forward_retry_s,
        nodes_ttl_s=settings.node_heartbeat_s,
    )


def cluster_settings(settings: Settings, carrier: Carrier) -> ClusterSettings:
    sip_address = None
    if carrier.name == "sip":
        from bridgeline.adapters.carriers.sip.carrier import SipCarrier

        assert isinstance(carrier, SipCarrier)
        host, port = carrier.settings.listen_address
        sip_address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return ClusterSettings(
        node_id=settings.node_id,
        internal_url=settings.node_url,
        sip_address=sip_address,
        lease_s=settings.node_lease_s,
        heartbeat_s=settings.node_heartbeat_s,
    )


def fence_carrier(carrier: Carrier, node: ClusterNode) -> None:
    """The SIP carrier sends no RTP and no SIP while the node's lease does not hold locally."""
    if carrier.name == "sip":
        from bridgeline.adapters.carriers.sip.carrier import SipCarrier

        assert isinstance(carrier, SipCarrier)
        carrier.fence(node.fenced)


def retry_settings(settings: Settings) -> RetrySettings:
    return RetrySettings(
        ttl_s=settings.idempotency_ttl_s,
        max_key_length=settings.idempotency_key_max_length,
        lock_s=settings.idempotency_lock_s,
    )


def make_pruner(
    settings: Settings, store: RetentionStore, prune_recordings: Callable[[], Awaitable[int]] | None = None
) -> Pruner:
    return Pruner(
        store,
        conference_retention=settings.retention_days * DAY,
        run_retention=settings.run_retention_days * DAY,
        idempotency_retention=settings.idempotency_ttl_s,
        batch=settings.prune_batch,
        interval=settings.prune_interval,
        prune_recordings=prune_recordings,
    )


def recording_retention(
    settings: Settings, rows: RecordingStore, storage: RecordingStorage
) -> Callable[[], Awaitable[int]] | None:
    """Recordings older than `recordings_retention_days`: their files (by age), then their rows; None
    when recordings are kept forever."""
    days = settings.recordings_retention_days
    if days <= 0:
        return None

    async def prune() -> int:
        deleted = await prune_recordings(storage, days, datetime.now(UTC))
        return await rows.delete_recordings_at(deleted)

    return prune


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
