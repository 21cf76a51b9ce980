"""The `text/event-stream` response that drains one hub subscription.

uvicorn's `send` returns silently once the client has gone, so a second task listens for
`http.disconnect` and closes the subscription; otherwise a dead stream would linger until
the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from bridgeline.adapters.console.hub import EventHub, Subscription, sse_message

HEARTBEAT_SECONDS = 15.0
RETRY_MS = 2000  # how soon an EventSource reconnects


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self, hub: EventHub, subscription: Subscription, *, heartbeat: float = HEARTBEAT_SECONDS
    ) -> None:
        # Not Response.__init__: it would announce `content-length: 0` for the empty initial body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),
        ]
        self.hub = hub
        self.subscription = subscription
        self.heartbeat = heartbeat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        subscription = self.subscription
        watcher = asyncio.ensure_future(self._watch_disconnect(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            hello = {"heartbeat_seconds": self.heartbeat, "phlo_id": subscription.phlo_id}
            await self._body(send, f"retry: {RETRY_MS}\n\n".encode() + sse_message("hello", hello))
            while True:
                batch = await subscription.take(self.heartbeat)
                if batch:
                    await self._body(send, b"".join(batch))
                elif subscription.closed:
                    break
                else:
                    await self._body(send, b": heartbeat\n\n")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-write
        finally:
            self.hub.unsubscribe(subscription)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    @staticmethod
    async def _body(send: Send, chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def _watch_disconnect(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.subscription.close()
                return
