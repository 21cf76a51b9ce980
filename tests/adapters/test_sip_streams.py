"""SIP over TCP and TLS through the real socket shell on 127.0.0.1: connection reuse, and hostile
input (failed TLS handshakes, truncated and unframeable streams, lying Content-Lengths, oversized
heads, too many connections). Each ends with a log line, a counter, no crash and nothing left open."""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
import uvloop

from bridgeline.adapters.carriers.sip.transport_stream import (
    SipStreamTransport,
    StreamLimits,
    client_context,
    server_context,
)
from bridgeline.adapters.carriers.sip.transport_udp import SipUdpTransport
from bridgeline.sip.digest import DigestAuth
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import EndpointConfig, EndpointEvent, FailReason, LegFailed, TrunkConfig
from bridgeline.sip.message import Request, Response, parse_message
from bridgeline.sip.offer_answer import make_offer
from bridgeline.sip.stream_framing import FramingLimits
from bridgeline.sip.transaction import Transport

sys.path.insert(0, str(Path(__file__).parents[1] / "sip_e2e"))
from tlscerts import CertFiles, make_certs

HOST = "127.0.0.1"
SDP = make_offer(HOST, 30000, session_id=1, version=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Stack:
    """An endpoint with its UDP shell and its TCP/TLS shell, as the carrier wires them."""

    def __init__(self, limits: StreamLimits, certs: CertFiles, *, verify_clients: bool = False) -> None:
        self.limits, self.certs, self.verify_clients = limits, certs, verify_clients
        self.tcp_port, self.tls_port = free_port(), free_port()
        self.events: list[EndpointEvent] = []

    async def start(self, trunk: TrunkConfig | None = None) -> None:
        config = EndpointConfig(
            (HOST, free_port()),
            "bridge.test",
            accounts={"alice": "secret"},
            trunk=trunk,
            stream_addresses={Transport.TCP: (HOST, self.tcp_port), Transport.TLS: (HOST, self.tls_port)},
        )
        self.endpoint = SipEndpoint(config, random.Random(5))
        self.udp = await SipUdpTransport.listen(self.endpoint, self.events.append, *config.local_address)
        certs = self.certs
        self.streams = SipStreamTransport(
            self.limits,
            on_message=self.udp.receive_stream,
            on_stream_error=self.udp.stream_error,
            on_unreachable=self.udp.unreachable,
            server_tls=server_context(
                str(certs.certificate), str(certs.key), str(certs.ca), verify_clients=self.verify_clients
            ),
            client_tls=client_context(str(certs.ca), verify_peers=True),
        )
        self.udp.streams = self.streams
        await self.streams.listen(Transport.TCP, HOST, self.tcp_port)
        await self.streams.listen(Transport.TLS, HOST, self.tls_port)

    async def stop(self) -> None:
        await self.streams.close()
        self.udp.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
async def stack(certs: CertFiles, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    limits = getattr(request, "param", None) or StreamLimits(idle_timeout_s=0.5, handshake_timeout_s=1.0)
    the_stack = Stack(limits, certs)
    await the_stack.start()
    yield the_stack
    await the_stack.stop()


def options(branch: str, *, transport: str = "TCP", length: str | None = "0", pad: int = 0) -> bytes:
    head = (
        f"OPTIONS sip:bridgeline@{HOST} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {HOST}:5999;branch=z9hG4bK{branch}\r\n"
        f"From: <sip:probe@{HOST}>;tag=p\r\nTo: <sip:bridgeline@{HOST}>\r\n"
        f"Call-ID: {branch}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
    )
    if pad:
        head += f"X-Pad: {'p' * pad}\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return (head + "\r\n").encode()


async def read_all(reader: asyncio.StreamReader, within: float = 3.0) -> bytes:
    """Everything the server sends until it closes the connection (or resets it: data unread)."""
    try:
        return await asyncio.wait_for(reader.read(), within)
    except ConnectionResetError:
        return b""


async def until(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def logged(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == event]


def idle(stack: Stack) -> bool:
    return stack.streams.open_connections == 0


# --- working paths -----------------------------------------------------------------------------


async def test_requests_on_one_connection_are_answered_over_it(stack: Stack) -> None:
    reader, writer = await asyncio.open_connection(HOST, stack.tcp_port)
    writer.write(options("one") + b"\r\n\r\n" + options("two"))  # a keep-alive ping between them
    answers = b""
    while answers.count(b"SIP/2.0 200 OK") < 2:
        answers += await asyncio.wait_for(reader.read(65536), 3)
    assert b"\r\n\r\n\r\nSIP/2.0" in answers or (
        answers.startswith(b"SIP/2.0") and b"\r\n\r\n\r\n" in answers
    )
    assert stack.streams.stats["connections_accepted"] == 1 and stack.streams.open_connections == 1
    writer.close()
    await until(lambda: idle(stack))


async def test_tls_requests_are_answered(stack: Stack, certs: CertFiles) -> None:
    context = client_context(str(certs.ca), verify_peers=True)
    reader, writer = await asyncio.open_connection(HOST, stack.tls_port, ssl=context, server_hostname=HOST)
    writer.write(options("tls", transport="TLS"))
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert answer.startswith(b"SIP/2.0 200 OK")
    writer.close()
    await until(lambda: idle(stack))


async def test_requests_to_a_peer_reuse_the_connection_to_it(stack: Stack) -> None:
    arrived: list[bytes] = []
    connections: list[int] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while data := await reader.read(65536):
            arrived.append(data)
        writer.close()

    server = await asyncio.start_server(peer, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    now = stack.udp.now
    for leg in ("a", "b", "c"):
        stack.endpoint.dial(
            leg, f"sip:bob@{HOST}:{port};transport=tcp", caller_id=None, offer_sdp=SDP, now=now
        )
    stack.udp.flush()
    await until(lambda: b"".join(arrived).count(b"INVITE sip:bob") == 3)
    assert len(connections) == 1 and stack.streams.stats["connections_dialled"] == 1
    assert b"Via: SIP/2.0/TCP" in b"".join(arrived) and b";transport=tcp>" in b"".join(arrived)
    for leg in ("a", "b", "c"):
        stack.endpoint.hangup(leg, stack.udp.now)
    server.close()
    await stack.streams.close()
    await server.wait_closed()


# --- hostile input -------------------------------------------------------------------------------


async def test_plain_tcp_to_the_tls_port_fails_the_handshake(stack: Stack) -> None:
    with structlog.testing.capture_logs() as logs:
        reader, writer = await asyncio.open_connection(HOST, stack.tls_port)
        writer.write(options("plain"))
        assert await read_all(reader) == b""  # closed without a word
        writer.close()
        await until(lambda: stack.streams.stats["tls_handshake_failures"] == 1)
    [line] = logged(logs, "sip_tls_handshake_failed")
    assert line["direction"] == "inbound" and line["log_level"] == "warning"
    assert idle(stack)


async def test_an_untrusted_client_certificate_fails_the_handshake_when_clients_are_verified(
    certs: CertFiles,
) -> None:
    stack = Stack(StreamLimits(handshake_timeout_s=1.0), certs, verify_clients=True)
    await stack.start()
    try:
        context = client_context(
            str(certs.ca),
            verify_peers=True,
            certificate=str(certs.rogue_certificate),
            key=str(certs.rogue_key),
        )
        with structlog.testing.capture_logs() as logs:
            with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
                reader, writer = await asyncio.open_connection(
                    HOST, stack.tls_port, ssl=context, server_hostname=HOST
                )
                writer.write(options("rogue", transport="TLS"))
                await asyncio.wait_for(reader.readexactly(1), 3)  # TLS 1.3: the refusal comes after
            await until(lambda: stack.streams.stats["tls_handshake_failures"] == 1)
        assert "certificate" in logged(logs, "sip_tls_handshake_failed")[0]["error"].lower()
        assert idle(stack)
        trusted = client_context(
            str(certs.ca), verify_peers=True, certificate=str(certs.certificate), key=str(certs.key)
        )
        reader, writer = await asyncio.open_connection(
            HOST, stack.tls_port, ssl=trusted, server_hostname=HOST
        )
        writer.write(options("trusted", transport="TLS"))
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)).startswith(b"SIP/2.0 200 OK")
        writer.close()
    finally:
        await stack.stop()


async def test_a_stream_closed_mid_message_is_counted_and_dropped(stack: Stack) -> None:
    invite = (
        options("cut").replace(b"OPTIONS", b"INVITE").replace(b"Content-Length: 0", b"Content-Length: 200")
    )
    with structlog.testing.capture_logs() as logs:
        _, writer = await asyncio.open_connection(HOST, stack.tcp_port)
        writer.write(invite + b"v=0\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        await until(lambda: stack.streams.stats["connections_truncated"] == 1)
    [line] = logged(logs, "sip_connection_truncated")
    assert line["unframed_bytes"] == len(invite) + 5
    assert idle(stack) and not any(stack.endpoint.state_sizes().values()) and stack.events == []


async def test_a_content_length_larger_than_sent_waits_then_the_idle_timeout_closes(stack: Stack) -> None:
    with structlog.testing.capture_logs() as logs:
        reader, writer = await asyncio.open_connection(HOST, stack.tcp_port)
        writer.write(options("liar", length="100") + b"only this")
        started = asyncio.get_running_loop().time()
        assert await read_all(reader) == b""  # nothing answered; closed by the idle timeout
        assert asyncio.get_running_loop().time() - started >= 0.4
    assert stack.streams.stats["connections_idle_closed"] == 1
    assert logged(logs, "sip_connection_idle")[0]["unframed_bytes"] > 0
    assert idle(stack) and not any(stack.endpoint.state_sizes().values())
    writer.close()


@pytest.mark.parametrize(
    ("payload", "answer", "kind"),
    [
        (options("ok") + b"garbage\r\n\r\n", b"SIP/2.0 200 OK", "missing_content_length"),
        (
            options("nolen", length=None),
            b"SIP/2.0 400 Missing Content-Length header",
            "missing_content_length",
        ),
        (options("bad", length="x"), b"SIP/2.0 400 Malformed Content-Length header", "bad_content_length"),
        (options("big", length="40000"), b"SIP/2.0 400 Body too large", "body_too_large"),
        (options("head", pad=20000), b"", "header_too_large"),
    ],
    ids=["garbage-after", "no-length", "bad-length", "body-too-large", "head-too-large"],
)
async def test_unframeable_streams_are_answered_when_possible_and_closed(
    stack: Stack, payload: bytes, answer: bytes, kind: str
) -> None:
    with structlog.testing.capture_logs() as logs:
        reader, writer = await asyncio.open_connection(HOST, stack.tcp_port)
        writer.write(payload)
        received = await read_all(reader)
    assert received.startswith(answer) and received.count(b"SIP/2.0 ") == (1 if answer else 0), received
    [line] = logged(logs, "sip_stream_unframeable")
    assert line["kind"] == kind
    assert stack.endpoint.stats[f"stream_{kind}"] == 1 and stack.streams.stats["framing_errors"] == 1
    assert idle(stack) and not any(stack.endpoint.state_sizes().values())
    writer.close()


@pytest.mark.parametrize(
    "stack", [StreamLimits(max_connections=2, idle_timeout_s=5, framing=FramingLimits())], indirect=True
)
async def test_connections_beyond_the_cap_are_refused(stack: Stack) -> None:
    with structlog.testing.capture_logs() as logs:
        kept = [await asyncio.open_connection(HOST, stack.tcp_port) for _ in range(2)]
        await until(lambda: stack.streams.open_connections == 2)
        reader, writer = await asyncio.open_connection(HOST, stack.tcp_port)
        writer.write(options("third"))
        assert await read_all(reader) == b""
    assert stack.streams.stats["connections_refused"] == 1
    assert logged(logs, "sip_connection_refused")[0]["limit"] == 2
    assert stack.streams.open_connections == 2
    for _, kept_writer in kept:
        kept_writer.close()
    writer.close()
    await until(lambda: idle(stack))


@pytest.mark.parametrize(
    "stack",
    [StreamLimits(max_write_buffer_bytes=16384, idle_timeout_s=5, framing=FramingLimits())],
    indirect=True,
)
async def test_a_peer_that_does_not_read_its_answers_is_closed(stack: Stack) -> None:
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads
    client.connect((HOST, stack.tcp_port))
    await until(lambda: stack.streams.open_connections == 1)
    (connection,) = stack.streams._connections.values()
    assert connection.writer is not None
    server_socket = connection.writer.get_extra_info("socket")
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # so our own buffer fills
    with structlog.testing.capture_logs() as logs:
        client.sendall(b"".join(options(f"flood{i}") for i in range(400)))
        await until(lambda: stack.streams.stats["write_overflows"] == 1)
    [line] = logged(logs, "sip_connection_overflow")
    assert line["limit"] == 16384
    await until(lambda: idle(stack))
    client.close()


async def test_a_tls_client_that_never_shakes_hands_is_closed_after_the_handshake_timeout(
    stack: Stack,
) -> None:
    with structlog.testing.capture_logs() as logs:
        reader, writer = await asyncio.open_connection(HOST, stack.tls_port)  # and sends nothing
        started = asyncio.get_running_loop().time()
        assert await read_all(reader) == b""
        assert asyncio.get_running_loop().time() - started >= 0.9  # handshake_timeout_s=1.0
    assert stack.streams.stats["tls_handshake_failures"] == 1
    assert "handshake" in logged(logs, "sip_tls_handshake_failed")[0]["error"].lower()
    assert idle(stack)
    writer.close()


@pytest.mark.parametrize(
    "stack", [StreamLimits(connect_timeout_s=0.5, idle_timeout_s=5, framing=FramingLimits())], indirect=True
)
async def test_a_tls_peer_that_never_answers_the_handshake_fails_the_dial_after_the_connect_timeout(
    stack: Stack,
) -> None:
    accepted: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda r, w: accepted.append(w), HOST, 0)  # never speaks TLS
    port = silent.sockets[0].getsockname()[1]
    with structlog.testing.capture_logs() as logs:
        now = stack.udp.now
        stack.endpoint.dial(
            "leg", f"sip:bob@{HOST}:{port};transport=tls", caller_id=None, offer_sdp=SDP, now=now
        )
        stack.udp.flush()
        await until(lambda: bool(stack.events))
        waited = stack.udp.now - now
    assert stack.events == [LegFailed("leg", 503, FailReason.UNREACHABLE)] and 0.4 <= waited < 2
    assert logged(logs, "sip_connect_failed") or logged(logs, "sip_tls_handshake_failed")
    assert idle(stack) and not any(stack.endpoint.state_sizes().values())
    for writer in accepted:
        writer.close()
    silent.close()
    await silent.wait_closed()


async def test_a_peer_with_an_untrusted_certificate_fails_the_dial_at_once(
    stack: Stack, certs: CertFiles
) -> None:
    rogue_port = free_port()
    rogue = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    rogue.load_cert_chain(str(certs.rogue_certificate), str(certs.rogue_key))
    server = await asyncio.start_server(lambda r, w: w.close(), HOST, rogue_port, ssl=rogue)
    with structlog.testing.capture_logs() as logs:
        stack.endpoint.dial(
            "leg", f"sips:bob@{HOST}:{rogue_port}", caller_id=None, offer_sdp=SDP, now=stack.udp.now
        )
        stack.udp.flush()
        await until(lambda: bool(stack.events))
    assert stack.events == [LegFailed("leg", 503, FailReason.UNREACHABLE)]
    assert stack.streams.stats["tls_handshake_failures"] == 1
    assert "certificate verify failed" in logged(logs, "sip_tls_handshake_failed")[0]["error"]
    assert idle(stack) and not any(stack.endpoint.state_sizes().values())
    server.close()
    await server.wait_closed()


async def test_a_phone_whose_connection_closed_fails_the_call_at_once(stack: Stack) -> None:
    """A phone registered over TCP is reached over its connection only (its port there is not one
    it listens on): once that closed, a call to it fails now, with a clear reason."""
    reader, writer = await asyncio.open_connection(HOST, stack.tcp_port)
    register = (
        options("reg")
        .replace(b"OPTIONS sip:bridgeline@127.0.0.1", b"REGISTER sip:bridge.test")
        .replace(b"To: <sip:bridgeline@127.0.0.1>", b"To: <sip:alice@bridge.test>")
        .replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 REGISTER")
        .replace(
            b"Content-Length: 0", b"Contact: <sip:alice@10.0.0.9:5060;transport=tcp>\r\nContent-Length: 0"
        )
    )
    writer.write(register)
    challenge = parse_message(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3))
    request = parse_message(register)
    assert isinstance(challenge, Response) and challenge.status == 401 and isinstance(request, Request)
    retry = DigestAuth("alice", "secret", random.Random(2)).authorize(request, challenge)
    assert retry is not None
    writer.write(bytes(retry))
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)).startswith(b"SIP/2.0 200 OK")
    writer.close()
    await until(lambda: idle(stack))
    assert stack.endpoint.lookup("alice", stack.udp.now) is not None  # still registered
    with structlog.testing.capture_logs() as logs:
        stack.endpoint.dial("leg", "alice", caller_id=None, offer_sdp=SDP, now=stack.udp.now)
        stack.udp.flush()
        await until(lambda: any(isinstance(e, LegFailed) for e in stack.events))
    assert [e for e in stack.events if isinstance(e, LegFailed)] == [
        LegFailed("leg", 503, FailReason.UNREACHABLE)
    ]
    assert stack.streams.stats["flows_gone"] == 1 and stack.endpoint.stats["transport_failures"] == 1
    [line] = logged(logs, "sip_connection_gone")
    assert line["action"] == "request_failed"
    sizes = stack.endpoint.state_sizes()
    assert sizes["legs"] == sizes["transactions_by_leg"] == 0 and idle(stack)


def test_the_same_on_uvloop(certs: CertFiles) -> None:
    """The server runs on uvloop where it is installed (main/serving.py): TLS accepted and refused, a
    request answered, an unframeable stream closed, on its loop too."""

    async def scenario() -> None:
        stack = Stack(StreamLimits(idle_timeout_s=2, handshake_timeout_s=1.0), certs)
        await stack.start()
        try:
            await test_tls_requests_are_answered(stack, certs)
            await test_plain_tcp_to_the_tls_port_fails_the_handshake(stack)
            await test_unframeable_streams_are_answered_when_possible_and_closed(
                stack, options("nolen", length=None), b"SIP/2.0 400 Missing Content-Length header",
                "missing_content_length",
            )  # fmt: skip
            await test_requests_to_a_peer_reuse_the_connection_to_it(stack)
        finally:
            await stack.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        runner.run(scenario())
