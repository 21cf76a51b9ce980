"""Fan-out of committed conference changes to the live console's event streams.

`EventHub.publish` is a ConferenceService listener: it runs synchronously right after each
commit, so it never awaits, never raises and never waits for a client. Each subscription
has a bounded buffer; a client that falls that far behind is dropped (told so, then its
stream ends) and reloads its state when it reconnects, instead of slowing the server down.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any, Protocol

import structlog

from bridgeline.adapters.console.payloads import conference_entry, event_view
from bridgeline.app.records import EventRecord
from bridgeline.core.conference import Conference

log = structlog.get_logger(__name__)

DEFAULT_BUFFER = 1000  # messages; a conference commit is a handful of them
DEFAULT_MAX_SUBSCRIBERS = 64  # on the server
DEFAULT_MAX_PER_ACCOUNT = 8  # so that one account cannot take every slot


class ConferenceInfo(Protocol):
    """Whose conference it is: the live one's ConferenceMeta, or its stored ConferenceRecord (the event
    feed's, for a conference of another node)."""

    @property
    def conference_id(self) -> str: ...
    @property
    def auth_id(self) -> str: ...
    @property
    def phlo_id(self) -> str: ...
    @property
    def node_id(self) -> str: ...
    @property
    def run_id(self) -> str | None: ...


def sse_message(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event; JSON has no raw newlines, so one `data:` line suffices."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Subscription:
    """One client's view of the hub: the messages not yet sent, bounded."""

    def __init__(self, auth_id: str, phlo_id: str | None, limit: int) -> None:
        self.auth_id = auth_id
        self.phlo_id = phlo_id
        self.limit = limit
        self.closed = False
        self.overflowed = False
        self._items: deque[bytes] = deque()
        self._ready = asyncio.Event()

    def wants(self, meta: ConferenceInfo) -> bool:
        return meta.auth_id == self.auth_id and self.phlo_id in (None, meta.phlo_id)

    def offer(self, messages: list[bytes]) -> None:
        if self.closed:
            return
        if len(self._items) + len(messages) > self.limit:
            self.overflowed = True
            self._items.clear()
            self._items.append(sse_message("overflow", {"reason": "client too slow; reload the state"}))
            self.close()
            return
        self._items.extend(messages)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def take(self, wait: float) -> list[bytes]:
        """What is buffered, waiting up to `wait` s; [] means nothing came (or closed and drained)."""
        if not self._items and not self.closed:
            try:
                await asyncio.wait_for(self._ready.wait(), wait)
            except TimeoutError:
                return []
        self._ready.clear()
        items = list(self._items)
        self._items.clear()
        return items


class TooManySubscribers(Exception):
    """The server's streams are all taken."""


class TooManyForAccount(TooManySubscribers):
    """This account's streams are all taken (others may still open theirs)."""


class EventHub:
    def __init__(
        self,
        *,
        buffer: int = DEFAULT_BUFFER,
        max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS,
        max_per_account: int = DEFAULT_MAX_PER_ACCOUNT,
    ) -> None:
        self._buffer = buffer
        self._max_subscribers = max_subscribers
        self._max_per_account = max_per_account
        self._subscriptions: set[Subscription] = set()
        self._per_account: dict[str, int] = {}
        self._closed = False
        self.refused = 0  # streams refused for a limit (counted for /metrics)

    def stats(self) -> dict[str, int]:
        return {"open_streams": len(self._subscriptions), "refused_streams": self.refused}

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def watches(self, auth_id: str) -> bool:
        """Whether any stream of this account is open (the feed reads nothing for accounts nobody watches)."""
        return auth_id in self._per_account

    def subscribe(self, auth_id: str, phlo_id: str | None = None) -> Subscription:
        if self._per_account.get(auth_id, 0) >= self._max_per_account:
            self.refused += 1
            raise TooManyForAccount(
                f"this account has too many open event streams (limit {self._max_per_account}); close one"
            )
        if len(self._subscriptions) >= self._max_subscribers:
            self.refused += 1
            raise TooManySubscribers(f"too many open event streams on the server ({self._max_subscribers})")
        subscription = Subscription(auth_id, phlo_id, self._buffer)
        if self._closed:
            subscription.close()
        else:
            self._subscriptions.add(subscription)
            self._per_account[auth_id] = self._per_account.get(auth_id, 0) + 1
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        self._forget(subscription)

    def _forget(self, subscription: Subscription) -> None:
        if subscription not in self._subscriptions:
            return
        self._subscriptions.discard(subscription)
        left = self._per_account[subscription.auth_id] - 1
        if left:
            self._per_account[subscription.auth_id] = left
        else:
            del self._per_account[subscription.auth_id]

    def close(self) -> None:
        """End every stream (the server is stopping: open responses would hold its shutdown)."""
        self._closed = True
        for subscription in list(self._subscriptions):
            self.unsubscribe(subscription)

    def publish(self, meta: ConferenceInfo, conf: Conference, events: list[EventRecord]) -> None:
        """After every commit, with the committed state: the ConferenceService listener on a single node,
        called through the event feed (adapters/console/feed.py) in a cluster."""
        try:
            targets = [s for s in self._subscriptions if s.wants(meta)]
            if not targets:
                return
            messages = self._encode(meta, conf, events)
            for subscription in targets:
                subscription.offer(messages)
                if subscription.overflowed:
                    log.warning("console_client_dropped", auth_id=subscription.auth_id)
                    self._forget(subscription)
        except Exception:
            log.exception("console_publish_failed", conference_id=meta.conference_id)

    @staticmethod
    def _encode(meta: ConferenceInfo, conf: Conference, events: list[EventRecord]) -> list[bytes]:
        entry = conference_entry(conf, phlo_id=meta.phlo_id, node_id=meta.node_id, run_id=meta.run_id)
        if not events:  # a change without an event (a dial placed, audio rerouted): the view only
            return [sse_message("conference", {**entry, "event": None})]
        return [sse_message("conference", {**entry, "event": event_view(e)}) for e in events]
