"""The asyncio side of the SIP endpoint: one UDP socket and one timer, nothing else.

The pure `SipEndpoint` decides everything; this adapter feeds it datagrams and the loop's
monotonic clock, sends what it produced, re-arms a single `call_at` for its next deadline,
and hands its events to the carrier (the aioquic `asyncio/protocol.py` shape). Messages for a
TCP/TLS `Target` go to `streams` (transport_stream.py), which feeds what it reads back through
`receive_stream`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import structlog

from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import EndpointEvent
from bridgeline.sip.stream_framing import FramingError
from bridgeline.sip.transaction import Target

if TYPE_CHECKING:
    from bridgeline.adapters.carriers.sip.transport_stream import SipStreamTransport

log = structlog.get_logger(__name__)

EventHandler = Callable[[EndpointEvent], None]
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
_MAX_FAILOVER_ROUNDS = 8  # sends retried after transport errors in one flush; the rest at the next


class SipUdpTransport(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint, on_event: EventHandler) -> None:
        self.endpoint = endpoint
        self._on_event = on_event
        self._transport: asyncio.DatagramTransport | None = None
        # call_at's handle and the deadline it was armed for: uvloop answers a deadline already
        # due with a plain Handle, which has no when().
        self._timer: asyncio.Handle | None = None
        self._timer_at: float | None = None
        self._loop = asyncio.get_running_loop()
        self.streams: SipStreamTransport | None = None  # TCP/TLS, when configured
        # Where the datagram being sent goes: a failed sendto reaches error_received synchronously
        # without the address (asyncio, and uvloop for OS errors; uvloop raises ValueError for an
        # address it cannot use); the endpoint is told (RFC 3261 18.4) and moves on.
        self._sending_to: tuple[str, int] | None = None
        self._send_failures: list[tuple[str, int]] = []
        self.on_flushed: Callable[[], None] | None = None  # after each batch: the carrier saves dialogs
        # True while the node's lease does not hold (cluster): nothing leaves, UDP or TCP/TLS, since
        # every SIP message goes out through _send.
        self.fenced: Callable[[], bool] = lambda: False
        self.fenced_drops = 0

    @classmethod
    async def listen(
        cls, endpoint: SipEndpoint, on_event: EventHandler, host: str, port: int
    ) -> SipUdpTransport:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: cls(endpoint, on_event), local_addr=(host, port)
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A burst (a registration storm, a flood of junk) must queue in the kernel rather than
            # be dropped before the endpoint sees it; the default buffer holds ~200 datagrams.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        return protocol

    @property
    def now(self) -> float:
        return self._loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.endpoint.receive_datagram(data, (addr[0], addr[1]), self.now)
        self.flush()

    def receive_stream(self, data: bytes, source: Target) -> None:
        """A whole message framed from a TCP/TLS connection."""
        self.endpoint.receive_datagram(data, source, self.now)
        self.flush()

    def stream_error(self, error: FramingError, source: Target) -> None:
        self.endpoint.stream_error(error, source, self.now)
        self.flush()

    def unreachable(self, target: Target) -> None:
        self.endpoint.transport_failed(target, self.now)
        self.flush()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: retransmission timers handle it.
        log.debug("sip_socket_error", error=str(exc), destination=self._sending_to)
        if self._sending_to is not None:
            self._send_failures.append(self._sending_to)

    def flush(self) -> None:
        """Send what the endpoint produced, deliver its events, and re-arm the timer."""
        for _ in range(_MAX_FAILOVER_ROUNDS):
            self._send()
            if not self._send_failures:
                break
            failed, self._send_failures = self._send_failures, []
            for destination in dict.fromkeys(failed):
                self.endpoint.transport_failed(destination, self.now)  # next server, or the leg fails
        while (event := self.endpoint.next_event()) is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("sip_event_handler_failed", kind=type(event).__name__)
        if self.on_flushed is not None:
            self.on_flushed()
        self._arm()

    def _send(self) -> None:
        outgoing = self.endpoint.datagrams_to_send()
        if outgoing and self.fenced():
            self.fenced_drops += len(outgoing)
            return
        for data, destination in outgoing:
            if isinstance(destination, Target):  # TCP/TLS: failures come back through `unreachable`
                if self.streams is not None:
                    self.streams.send(data, destination)
                else:
                    log.warning("sip_stream_transport_off", transport=destination.transport.value)
                    self._loop.call_soon(self.unreachable, destination)
                continue
            if self._transport is None:
                continue
            host, port = destination
            self._sending_to = (host, port)
            try:
                self._transport.sendto(data, (host, port))
            except ValueError as exc:  # uvloop: an address of the other family, or a name
                self.error_received(exc)
            finally:
                self._sending_to = None

    def _arm(self) -> None:
        deadline = self.endpoint.get_timer()
        if self._timer is not None:
            if deadline is not None and self._timer_at == deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._fire)
            self._timer_at = deadline

    def _fire(self) -> None:
        self._timer = None
        self.endpoint.handle_timer(self.now)
        self.flush()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
