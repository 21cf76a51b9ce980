"""The asyncio side of SIP over TCP and TLS (RFC 3261 18): listening, dialling, connection reuse.

The pure `SipEndpoint` addresses a stream message to a `Target` (transport, host, port); this shell
keeps one connection per such key. A message for a key with an open connection goes over it (a
response over the connection its request came on, 18.2.2; a request to a peer over the one
already open to it); otherwise the connection is dialled, unless the target is reuse-only (a
request's source, a phone's registration flow), which fails at once. A TLS peer's certificate is
checked against the target's `tls_name` (the domain an RFC 3263 lookup started from), else the
host dialled. Bytes read are cut into
messages by the pure `StreamFramer` and handed up with the connection as their source.

Every failure is a log line and a counter in `stats`, never an exception: a refused or failed
connection (TLS handshake included) is reported to the endpoint (`on_unreachable`) so its
transactions end now; a stream that cannot be framed is reported (`on_stream_error`, which may
answer 400) and closed; a connection idle for `idle_timeout_s` (a Content-Length that promised
more than came, a silent peer) is closed; beyond `max_connections`, new ones are refused.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

import structlog

from bridgeline.adapters.carriers.sip.settings import SipSettings
from bridgeline.adapters.carriers.sip.transport_udp import SipUdpTransport
from bridgeline.sip.stream_framing import PONG, FramingError, FramingLimits, StreamFramer
from bridgeline.sip.transaction import Target, Transport

log = structlog.get_logger(__name__)

READ_CHUNK = 65536
ConnectionKey = tuple[Transport, str, int]


@dataclass(frozen=True, slots=True)
class StreamLimits:
    max_connections: int = 1000  # open plus handshaking, both directions
    idle_timeout_s: float = 600.0  # nothing received for this long: close
    connect_timeout_s: float = 5.0  # TCP connect plus TLS handshake, dialling
    handshake_timeout_s: float = 5.0  # TLS handshake of an accepted connection
    max_write_buffer_bytes: int = 1 << 20  # a peer that does not read: close it
    framing: FramingLimits = field(default_factory=FramingLimits)


@dataclass(eq=False, slots=True)
class _Connection:
    source: Target  # what the endpoint sees as the messages' source, and answers to
    writer: asyncio.StreamWriter | None = None  # None while dialling
    pending: list[bytes] = field(default_factory=list)  # queued while dialling
    task: asyncio.Task[None] | None = None


class SipStreamTransport:
    """All TCP and TLS connections of one endpoint, and its TCP/TLS listeners."""

    def __init__(
        self,
        limits: StreamLimits,
        *,
        on_message: Callable[[bytes, Target], None],
        on_stream_error: Callable[[FramingError, Target], None],
        on_unreachable: Callable[[Target], None],
        server_tls: ssl.SSLContext | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.limits = limits
        self._on_message = on_message
        self._on_stream_error = on_stream_error
        self._on_unreachable = on_unreachable
        self._server_tls = server_tls
        self._client_tls = client_tls
        self._connections: dict[ConnectionKey, _Connection] = {}
        self._handshaking = 0
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats: Counter[str] = Counter()
        self._loop = asyncio.get_running_loop()

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    # --- listening ----------------------------------------------------------------------------

    async def listen(self, transport: Transport, host: str, port: int) -> int:
        """Accept `transport` (TCP or TLS) connections on host:port; returns the bound port.

        Sockets are accepted raw and wrapped here (`connect_accepted_socket`) so that a failed TLS
        handshake raises where it can be logged and counted; asyncio's own TLS server drops it
        silently, and upgrading a stream after accepting it races with the ClientHello."""
        if transport is Transport.TLS and self._server_tls is None:
            raise ValueError("listening on TLS needs a certificate and key")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(512)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listeners.append(listener)
        self._spawn(self._accept_loop(transport, listener))
        return int(listener.getsockname()[1])

    async def _accept_loop(self, transport: Transport, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = await self._loop.sock_accept(listener)
            except OSError as exc:  # EMFILE and the like: wait rather than spin
                log.warning("sip_accept_failed", transport=transport.value, error=_describe(exc))
                await asyncio.sleep(0.1)
                continue
            self._spawn(self._accepted(transport, sock))

    async def _accepted(self, transport: Transport, sock: socket.socket) -> None:
        try:
            peer = sock.getpeername()
        except OSError:
            sock.close()
            return
        host, port = str(peer[0]), int(peer[1])
        if self._count() >= self.limits.max_connections:
            self.stats["connections_refused"] += 1
            log.warning(
                "sip_connection_refused",
                reason="max_connections",
                peer=f"{host}:{port}",
                limit=self.limits.max_connections,
                transport=transport.value,
            )
            sock.close()
            return
        tls = transport is Transport.TLS
        reader = asyncio.StreamReader(limit=READ_CHUNK, loop=self._loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=self._loop)
        self._handshaking += 1
        try:
            stream, _ = await self._loop.connect_accepted_socket(
                lambda: protocol,
                sock,
                ssl=self._server_tls if tls else None,
                ssl_handshake_timeout=self.limits.handshake_timeout_s if tls else None,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            self.stats["tls_handshake_failures" if tls else "connect_failures"] += 1
            log.warning(
                "sip_tls_handshake_failed" if tls else "sip_accept_failed",
                peer=f"{host}:{port}",
                direction="inbound",
                error=_describe(exc),
            )
            sock.close()
            return
        finally:
            self._handshaking -= 1
        writer = asyncio.StreamWriter(stream, protocol, reader, self._loop)
        self.stats["connections_accepted"] += 1
        source = Target(host, port, transport, reuse_only=True)  # its port is not one it listens on
        connection = _Connection(source, writer)
        self._adopt(connection)
        await self._read(connection, reader)

    # --- sending ------------------------------------------------------------------------------

    def send(self, data: bytes, target: Target) -> None:
        """Send over the connection for target, dialling it if allowed; never raises."""
        key = target.connection_key
        connection = self._connections.get(key)
        if connection is not None and connection.writer is not None and connection.writer.is_closing():
            self._forget(connection)  # closed under us: as if it were gone already
            connection = None
        if connection is not None:
            if connection.writer is None:
                connection.pending.append(data)
            else:
                self._write(connection, data)
            return
        if target.reuse_only:
            self.stats["flows_gone"] += 1
            log.warning(
                "sip_connection_gone",
                peer=f"{target.host}:{target.port}",
                transport=target.transport.value,
                action="request_failed",
            )
            self._unreachable(target)
            return
        if target.transport is Transport.TLS and self._client_tls is None:
            self.stats["connect_failures"] += 1
            log.warning(
                "sip_connect_failed",
                peer=f"{target.host}:{target.port}",
                transport="TLS",
                error="no TLS client settings",
            )
            self._unreachable(target)
            return
        if self._count() >= self.limits.max_connections:
            self.stats["connections_refused"] += 1
            log.warning(
                "sip_connection_refused",
                reason="max_connections",
                direction="outbound",
                peer=f"{target.host}:{target.port}",
                limit=self.limits.max_connections,
            )
            self._unreachable(target)
            return
        connection = _Connection(target._replace(reuse_only=False), pending=[data])
        self._connections[key] = connection
        connection.task = self._spawn(self._dial(connection))

    def _write(self, connection: _Connection, data: bytes) -> None:
        writer = connection.writer
        assert writer is not None
        if writer.is_closing():
            return
        if writer.transport.get_write_buffer_size() + len(data) > self.limits.max_write_buffer_bytes:
            self.stats["write_overflows"] += 1
            log.warning(
                "sip_connection_overflow",
                peer=_peer(connection.source),
                action="closed",
                limit=self.limits.max_write_buffer_bytes,
            )
            self._close(connection)
            self._unreachable(connection.source)  # what was to go over it fails now
            return
        writer.write(data)

    async def _dial(self, connection: _Connection) -> None:
        target = connection.source
        tls = target.transport is Transport.TLS
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    target.host,
                    target.port,
                    ssl=self._client_tls if tls else None,
                    # RFC 5922 4.1: the domain that was looked up (DNS), else the host dialled
                    server_hostname=(target.tls_name or target.host) if tls else None,
                    ssl_handshake_timeout=self.limits.connect_timeout_s if tls else None,
                    limit=READ_CHUNK,
                ),
                self.limits.connect_timeout_s,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            handshake = isinstance(exc, ssl.SSLError | ssl.CertificateError)
            self.stats["tls_handshake_failures" if handshake else "connect_failures"] += 1
            log.warning(
                "sip_tls_handshake_failed" if handshake else "sip_connect_failed",
                peer=_peer(target),
                transport=target.transport.value,
                direction="outbound",
                error=_describe(exc),
            )
            self._forget(connection)
            self._unreachable(target)
            return
        self.stats["connections_dialled"] += 1
        connection.writer = writer
        pending, connection.pending = connection.pending, []
        for data in pending:
            self._write(connection, data)
        await self._read(connection, reader)

    # --- receiving ----------------------------------------------------------------------------

    def _adopt(self, connection: _Connection) -> None:
        key = connection.source.connection_key
        old = self._connections.get(key)
        if old is not None:  # the same remote address again: the old one is dead
            self._close(old)
        self._connections[key] = connection

    async def _read(self, connection: _Connection, reader: asyncio.StreamReader) -> None:
        framer = StreamFramer(self.limits.framing)
        source = connection.source
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(READ_CHUNK), self.limits.idle_timeout_s)
                except TimeoutError:
                    self.stats["connections_idle_closed"] += 1
                    log.info(
                        "sip_connection_idle",
                        peer=_peer(source),
                        action="closed",
                        idle_timeout_s=self.limits.idle_timeout_s,
                        unframed_bytes=framer.pending,
                    )
                    return
                except (OSError, ConnectionError, ssl.SSLError) as exc:
                    log.info("sip_connection_lost", peer=_peer(source), error=_describe(exc))
                    return
                if not data:
                    if framer.pending:
                        self.stats["connections_truncated"] += 1
                        log.warning(
                            "sip_connection_truncated", peer=_peer(source), unframed_bytes=framer.pending
                        )
                    return
                for message in framer.feed(data):
                    try:
                        self._on_message(message, source)
                    except Exception:
                        log.exception("sip_stream_message_failed", peer=_peer(source))
                for _ in range(framer.take_pings()):
                    self._write(connection, PONG)  # RFC 5626 keep-alive
                if framer.error is not None:
                    self.stats["framing_errors"] += 1
                    log.warning(
                        "sip_stream_unframeable",
                        peer=_peer(source),
                        kind=framer.error.kind.value,
                        action="closed",
                    )
                    self._on_stream_error(framer.error, source)
                    return
                if connection.writer is None or connection.writer.is_closing():
                    return
        finally:
            self._close(connection)

    # --- closing ------------------------------------------------------------------------------

    def _close(self, connection: _Connection) -> None:
        self._forget(connection)
        if connection.writer is not None and not connection.writer.is_closing():
            connection.writer.close()  # flushes what is buffered (a 400), then closes

    def _forget(self, connection: _Connection) -> None:
        key = connection.source.connection_key
        if self._connections.get(key) is connection:
            del self._connections[key]

    async def close(self) -> None:
        for connection in list(self._connections.values()):
            self._close(connection)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()

    # --- helpers ------------------------------------------------------------------------------

    def _count(self) -> int:
        return len(self._connections) + self._handshaking

    def _unreachable(self, target: Target) -> None:
        # Deferred: we may be inside the endpoint's flush, which must not be re-entered.
        self._loop.call_soon(self._on_unreachable, target)

    def _spawn(self, coro: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _peer(target: Target) -> str:
    return f"{target.transport.value.lower()}:{target.host}:{target.port}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def server_context(
    certificate: str, key: str, ca_file: str | None, *, verify_clients: bool
) -> ssl.SSLContext:
    """TLS for accepted connections: our certificate; client certificates required (and checked
    against ca_file) only with verify_clients, as phones seldom have one."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca_file)
    context.load_cert_chain(certificate, key)
    context.verify_mode = ssl.CERT_REQUIRED if verify_clients else ssl.CERT_NONE
    return context


def client_context(
    ca_file: str | None, *, verify_peers: bool, certificate: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """TLS for connections we dial: the peer's certificate checked against ca_file (else the
    system's CAs) and its name against the host we dialled, unless verify_peers is off. Our own
    certificate is offered when configured (peers that verify clients ask for it)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    if not verify_peers:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if certificate is not None and key is not None:
        context.load_cert_chain(certificate, key)
    return context


async def start_streams(settings: SipSettings, udp: SipUdpTransport) -> SipStreamTransport:
    """TCP and TLS for the endpoint behind `udp`: dialling always works; listening where the
    settings say. Raises (the server does not start) for unreadable TLS files or a busy port."""
    tls, limits = settings.tls, settings.connections
    server_tls = None
    if tls.certificate is not None and tls.key is not None:
        server_tls = server_context(tls.certificate, tls.key, tls.ca_file, verify_clients=tls.verify_clients)
    client_tls = client_context(
        tls.ca_file, verify_peers=tls.verify_peers, certificate=tls.certificate, key=tls.key
    )
    streams = SipStreamTransport(
        StreamLimits(
            max_connections=limits.max_connections,
            idle_timeout_s=limits.idle_timeout_s,
            connect_timeout_s=limits.connect_timeout_s,
            handshake_timeout_s=limits.handshake_timeout_s,
            max_write_buffer_bytes=limits.max_write_buffer_bytes,
            framing=limits.framing,
        ),
        on_message=udp.receive_stream,
        on_stream_error=udp.stream_error,
        on_unreachable=udp.unreachable,
        server_tls=server_tls,
        client_tls=client_tls,
    )
    udp.streams = streams
    try:
        for transport, (host, port) in settings.stream_addresses.items():
            await streams.listen(transport, host, port)
            log.info("sip_listening", host=host, port=port, transport=transport.value)
    except BaseException:
        await streams.close()
        raise
    return streams
