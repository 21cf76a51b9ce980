"""PostgreSQL LISTEN/NOTIFY between the nodes of one database: the accelerator, never the guarantee.

A commit of a conference NOTIFYs `bridgeline_events` (which account, which conference, which event seqs)
and, when it queued callbacks, `bridgeline_outbox`; PostgreSQL delivers them when the transaction commits,
and only then. `PostgresListener` holds one dedicated connection that LISTENs on both and hands each
notification from another process to a callback. Notifications sent while that connection is down are
lost for good, so every consumer also polls the store (the truth); after each (re)connection the listener
says so (`on_connected`), and the consumers poll at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
import structlog

log = structlog.get_logger(__name__)

EVENTS_CHANNEL = "bridgeline_events"
OUTBOX_CHANNEL = "bridgeline_outbox"
# PostgreSQL refuses a payload of 8000 bytes or more; ours are ids and numbers, far below it.
MAX_PAYLOAD_BYTES = 7999


@dataclass(frozen=True, slots=True)
class CommitNotice:
    """A conference commit of another process: its events `first_seq`..`last_seq` (0, 0: no event, a
    change of the conference's view only)."""

    auth_id: str
    conference_id: str
    first_seq: int
    last_seq: int


def commit_payload(
    origin: str, auth_id: str, conference_id: str, first_seq: int, last_seq: int
) -> str | None:
    """The events channel's payload, or None if it would be too long to send."""
    payload = orjson.dumps({"o": origin, "a": auth_id, "c": conference_id, "f": first_seq, "l": last_seq})
    return payload.decode() if len(payload) <= MAX_PAYLOAD_BYTES else None


def parse_commit(payload: str) -> tuple[str, CommitNotice] | None:
    """(origin, notice) from an events payload; None for anything else (never raises)."""
    try:
        data = orjson.loads(payload)
        notice = CommitNotice(str(data["a"]), str(data["c"]), int(data["f"]), int(data["l"]))
        return str(data["o"]), notice
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class PostgresListener:
    """One LISTEN connection, reconnected with backoff; callbacks run on the event loop, never await."""

    def __init__(
        self,
        url: str,
        own_origin: str,
        *,
        on_commit: Callable[[CommitNotice], None],
        on_outbox: Callable[[], None],
        on_connected: Callable[[], None],
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 5.0,
    ) -> None:
        self._url = url
        self._own_origin = own_origin
        self._on_commit = on_commit
        self._on_outbox = on_outbox
        self._on_connected = on_connected
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._task: asyncio.Task[None] | None = None
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self.connected = False
        self.connections = 0  # successful (re)connections, for /metrics
        self.notifications = 0  # from other processes, both channels

    def stats(self) -> dict[str, int]:
        return {
            "listen_connected": int(self.connected),
            "listen_connections": self.connections,
            "notifications_received": self.notifications,
        }

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="postgres-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()

    async def _run(self) -> None:
        delay = self._reconnect_delay
        while True:
            try:
                await self._listen()
                delay = self._reconnect_delay  # it was up for a while: start the backoff over
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("listen_connection_lost", error=f"{type(error).__name__}: {error}")
            self.connected = False
            await asyncio.sleep(delay)
            delay = min(self._max_reconnect_delay, delay * 2)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as connection:
            self._connection = connection
            await connection.execute(f"LISTEN {EVENTS_CHANNEL}")
            await connection.execute(f"LISTEN {OUTBOX_CHANNEL}")
            self.connected = True
            self.connections += 1
            self._call(self._on_connected)  # what was sent while we were not listening: poll for it
            async for notify in connection.notifies():
                self._dispatch(notify.channel, notify.payload)

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == OUTBOX_CHANNEL:
            if payload != self._own_origin:
                self.notifications += 1
                self._call(self._on_outbox)
            return
        parsed = parse_commit(payload)
        if parsed is None or parsed[0] == self._own_origin:
            return  # our own commit: our listeners have it already
        self.notifications += 1
        notice = parsed[1]
        self._call(lambda: self._on_commit(notice))

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            log.exception("notification_handler_failed")
