"""The wiring that only matters when several nodes share one database (docs/cluster.md): other
nodes' commits fed to this node's event hub and webhook dispatcher, requests forwarded to the
node that owns a conference, and the node's own cluster settings.

Apart from `wiring.py`, which calls these while it builds the server, so that the single-process
path reads without them."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from bridgeline.adapters.console.feed import EventFeed
from bridgeline.adapters.console.hub import EventHub
from bridgeline.adapters.http.forwarding import Forwarder
from bridgeline.adapters.store import PostgresStore, SqlStore, open_store
from bridgeline.adapters.store.notifications import PostgresListener
from bridgeline.adapters.webhooks.dispatcher import WebhookDispatcher
from bridgeline.app.cluster import ClusterSettings
from bridgeline.app.ports import Carrier, ClusterDirectory, Store
from bridgeline.app.service import ConferenceService
from bridgeline.config import Settings


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
