"""uvicorn's httptools protocol with the limits an open network needs, and Plivo-shaped refusals.

uvicorn bounds neither the size of a request's head nor the time a client may take to send it,
and answers malformed requests in plain text. This subclass adds, per connection:
- a cap on open connections (one more is answered 503 and closed at once);
- bounds on the request target (414), the head's size and field count (431) and the body (413),
  counted on the raw bytes as they arrive, so an oversized head is refused after at most one read
  beyond its limit instead of being buffered whole;
- deadlines: a first byte within the idle timeout, the whole head within the header timeout and
  the whole request within the request timeout (408). Once a request has been read, its response
  may last as long as it needs: the console's event streams live on; but a client that leaves
  it unread until the buffers are full is closed after the write timeout. Deadlines are numbers a
  sweep checks every SWEEP_SECONDS, so each is enforced up to that much late, never early;
- malformed HTTP answered `{"api_id", "error"}` with the right status.
After a refusal the connection is half-closed and what the client still sends is read and dropped
for a short linger, so it sees the answer instead of a reset; then it is closed.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from bridgeline.adapters.http.errors import new_api_id

SWEEP_SECONDS = 0.25  # how often deadlines are checked: a deadline is enforced at most this late
LINGER_SECONDS = 2.0  # how long a refused client may go on sending before the socket is closed
REQUEST_LINE_OVERHEAD = 16  # method, spaces, "HTTP/1.1", CRLF around the target
HEADER_OVERHEAD = 4  # ": " and CRLF around each field


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int = 1000
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    max_url_bytes: int = 8 * 1024
    max_body_bytes: int = 1024 * 1024
    idle_timeout: float = 5.0
    header_timeout: float = 10.0
    request_timeout: float = 30.0
    write_timeout: float = 30.0


@dataclass(slots=True)
class EdgeCounters:
    """What the edge refused and how many connections are open (for /metrics)."""

    open_connections: int = 0
    idle_closed: int = 0  # connections closed for sending nothing within the idle timeout
    stalled_closed: int = 0  # connections closed for leaving their answers unread
    refused: Counter[str] = field(default_factory=Counter)  # by HTTP status

    def stats(self) -> dict[str, int | dict[str, int]]:
        return {
            "open_connections": self.open_connections,
            "idle_closed": self.idle_closed,
            "stalled_closed": self.stalled_closed,
            "refused": dict(self.refused),
        }


class Phase(Enum):
    IDLE = "idle"  # between requests: the next byte starts one
    HEAD = "head"  # request line and headers
    BODY = "body"


class Refused(Exception):
    """Raised inside a parser callback to stop parsing; the answer is `status` with `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_bytes(status: int, message: str, extra_headers: bytes = b"") -> bytes:
    """A complete HTTP/1.1 response in Plivo's error shape that closes the connection."""
    body = orjson.dumps({"api_id": new_api_id(), "error": message})
    head = (
        b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n" % len(body)
        + extra_headers
    )
    return STATUS_LINE[status] + head + b"\r\n" + body


def parser_refusal(exc: httptools.HttpParserError) -> Refused:
    """What to answer a request the parser rejected (llhttp names the fault)."""
    reason = str(exc) or type(exc).__name__
    if reason.lower() == "invalid http version":
        return Refused(505, f"unsupported HTTP version: {reason}")
    return Refused(400, f"malformed HTTP request: {reason}")


class DeadlineSweep:
    """One server's connection deadlines, checked every SWEEP_SECONDS: a request only stores a number,
    instead of arming and cancelling a timer per phase (that cost a tenth of a trivial request)."""

    def __init__(self) -> None:
        self._watched: set[GuardedHttpProtocol] = set()
        self._handle: asyncio.TimerHandle | None = None

    def watch(self, connection: GuardedHttpProtocol) -> None:
        self._watched.add(connection)
        if self._handle is None:
            self._handle = connection.loop.call_later(SWEEP_SECONDS, self._sweep, connection.loop)

    def forget(self, connection: GuardedHttpProtocol) -> None:
        self._watched.discard(connection)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection in [c for c in self._watched if c.deadline <= now]:
            connection.deadline = math.inf
            connection.expired()
        self._handle = loop.call_later(SWEEP_SECONDS, self._sweep, loop) if self._watched else None


class GuardedHttpProtocol(HttpToolsProtocol):
    """One connection; `limits`, `counters` and `sweep` are bound per server by `guarded_protocol`."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    counters: ClassVar[EdgeCounters] = EdgeCounters()
    sweep: ClassVar[DeadlineSweep] = DeadlineSweep()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn's timer between requests (typed int there; call_later takes a float)
        self.timeout_keep_alive = self.limits.idle_timeout  # type: ignore[assignment]
        self._phase = Phase.IDLE
        self._head_bytes = 0  # raw bytes received while reading the current head
        self._body_bytes = 0
        self._started = 0.0
        self.deadline = math.inf  # loop time by which the current phase must end (DeadlineSweep)
        self._linger: asyncio.TimerHandle | None = None
        self._write_stall: asyncio.TimerHandle | None = None
        self._refused = False

    # --- connection ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.counters.open_connections += 1
        if len(self.connections) > self.limits.max_connections:
            self.connections.discard(self)
            self._refuse(Refused(503, "too many open connections; try again later"), b"retry-after: 1\r\n")
            return
        self.deadline = self.loop.time() + self.limits.idle_timeout
        self.sweep.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.counters.open_connections -= 1
        self.sweep.forget(self)
        if self._linger is not None:
            self._linger.cancel()
        self._stop_stall_clock()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_stall is None:
            self._write_stall = self.loop.call_later(self.limits.write_timeout, self._stalled)

    def _stalled(self) -> None:
        self._write_stall = None
        self.counters.stalled_closed += 1
        self.transport.close()

    def resume_writing(self) -> None:
        self._stop_stall_clock()
        super().resume_writing()

    def _stop_stall_clock(self) -> None:
        if self._write_stall is not None:
            self._write_stall.cancel()
            self._write_stall = None

    def eof_received(self) -> bool | None:  # type: ignore[override]
        return False if self._refused else None  # a refused client that is done sending: close now

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: read and drop
        self._unset_keepalive_if_required()
        if self._phase is not Phase.BODY:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
            if self._phase is Phase.HEAD and self._head_bytes > self.limits.max_header_bytes:
                raise Refused(431, f"request headers too large (limit {self.limits.max_header_bytes} bytes)")
        except Refused as refused:
            self._refuse(refused)
        except httptools.HttpParserUpgrade:
            pass  # no WebSocket (uvicorn runs with ws="none"): the request is served as plain HTTP
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # what a callback raised, when one did
            if isinstance(cause, Refused):
                self._refuse(cause)
            else:  # uvicorn's own callback may fail too: on a URL httptools cannot parse
                self._refuse(parser_refusal(cause if isinstance(cause, httptools.HttpParserError) else exc))

    def send_400_response(self, msg: str) -> None:
        self._refuse(Refused(400, msg))

    # --- parser callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = Phase.HEAD
        self._body_bytes = 0
        self._started = self.loop.time()
        # When this passes during the body, it is moved on to the request's own deadline (expired).
        self.deadline = self._started + min(self.limits.header_timeout, self.limits.request_timeout)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            raise Refused(414, f"request target too long (limit {self.limits.max_url_bytes} bytes)")

    def on_headers_complete(self) -> None:
        # Checked once the head is parsed (no callback per field): until then data_received bounds
        # the raw bytes, so the fields parsed meanwhile are bounded too.
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            raise Refused(431, f"too many request headers (limit {limits.max_headers})")
        size = len(self.url) + REQUEST_LINE_OVERHEAD
        declared = None
        for name, value in self.headers:
            size += len(name) + len(value) + HEADER_OVERHEAD
            if name == b"content-length" and value.isdigit():
                declared = int(value)
        if size > limits.max_header_bytes:
            raise Refused(431, f"request headers too large (limit {limits.max_header_bytes} bytes)")
        if declared is not None and declared > limits.max_body_bytes:
            raise Refused(413, f"request body too large (limit {limits.max_body_bytes} bytes)")
        self._phase = Phase.BODY
        self._head_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            raise Refused(413, f"request body too large (limit {self.limits.max_body_bytes} bytes)")
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = Phase.IDLE
        self.deadline = math.inf  # the response takes what it takes; uvicorn's keep-alive timer follows it
        super().on_message_complete()

    # --- deadlines and refusals -------------------------------------------------------------------
    def expired(self) -> None:
        """The current phase's deadline passed (called by the sweep, or the linger timer)."""
        self._linger = None
        if self._refused:
            self.transport.close()  # the linger is over
        elif self._phase is Phase.IDLE:
            self.counters.idle_closed += 1
            self.transport.close()  # nothing was asked: nothing to answer
        elif self._phase is Phase.HEAD:
            self._refuse(Refused(408, f"request headers not received within {self.limits.header_timeout} s"))
        elif (left := self._started + self.limits.request_timeout - self.loop.time()) > 0:
            self.deadline = self.loop.time() + left  # the head came in time: the body has until then
        else:
            self._refuse(Refused(408, f"request not received within {self.limits.request_timeout} s"))

    def _refuse(self, refused: Refused, extra_headers: bytes = b"") -> None:
        """Answer (unless a response is already under way), stop reading requests, linger, close."""
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self.counters.refused[str(refused.status)] += 1
        cycle = self.cycle  # this request's while its body is read, else the previous one's
        answered = cycle is not None and cycle.response_started
        if answered and (self._phase is Phase.BODY or not cycle.response_complete):
            self.transport.close()  # an answer is out (or under way): a second one would garble it
            return
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the application stops waiting for this request's body
            cycle.message_event.set()
        self.transport.write(error_bytes(refused.status, refused.message, extra_headers))
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.deadline = math.inf
        self._linger = self.loop.call_later(LINGER_SECONDS, self.expired)


def guarded_protocol(limits: HttpLimits) -> type[GuardedHttpProtocol]:
    """The protocol class to pass as uvicorn's `http=`, with these limits."""
    bound = {"limits": limits, "counters": EdgeCounters(), "sweep": DeadlineSweep()}
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), bound)
