"""The one place that chooses adapters and wires them to the ports: `build()` makes the running
server (`Bridgeline`) from the settings, and `Bridgeline.stop()` takes it down in order.

What carrier is chosen is `carriers.py`, what a cluster adds is `cluster.py`, and how the built
server is served over HTTP is `serving.py`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import structlog

from bridgeline.adapters.carriers.sim.carrier import SimCarrier
from bridgeline.adapters.console.hub import EventHub
from bridgeline.adapters.http.app import BridgelineApi
from bridgeline.adapters.http.auth import Authenticator, AuthSettings
from bridgeline.adapters.http.context import AppContext
from bridgeline.adapters.http.idempotency import IdempotentRequests, RetrySettings
from bridgeline.adapters.http.metrics import Metrics, Source
from bridgeline.adapters.recordings.engine_files import WriterFiles
from bridgeline.adapters.recordings.factory import storage_from_settings
from bridgeline.adapters.recordings.storage import RecordingStorage, prune_recordings
from bridgeline.adapters.recordings.writers import WriterSettings
from bridgeline.adapters.store import open_store
from bridgeline.adapters.webhooks.dispatcher import WebhookDispatcher
from bridgeline.app.cluster import ClusterNode
from bridgeline.app.phlos import PhloCache
from bridgeline.app.ports import Carrier, RecordingStore, RetentionStore, Store
from bridgeline.app.recordings import RecordingManager
from bridgeline.app.records import Account
from bridgeline.app.retention import DAY, Pruner
from bridgeline.app.runs import RunService
from bridgeline.app.segments import SegmentSweeper
from bridgeline.app.service import ConferenceService
from bridgeline.config import Credentials, Settings, load_or_create_credentials
from bridgeline.main.carriers import (
    egress_policy,
    fence_carrier,
    make_carrier,
    route_inbound_calls,
    route_refer_transfers,
)
from bridgeline.main.cluster import ClusterFeed, cluster_feed, cluster_settings, make_forwarder

# One logger name for the whole entry point, as when it was one module.
log = structlog.get_logger("bridgeline.main")

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
        holder=node.owner,
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
    counters = frozenset({"takeovers", "leases_lost", "delivery_leases_released"})
    metrics.add(Source("node", node.stats, counters=counters))
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
