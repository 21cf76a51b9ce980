"""RFC 3263 failover over TCP and TLS through the real socket shell on 127.0.0.1: a server that
refuses the connection, or whose certificate does not carry the name that was looked up (RFC 5922
4.1), is left for the next located server at once, not after Timer B."""

from __future__ import annotations

import asyncio
import ssl

import structlog
from test_sip_streams import HOST, SDP, Stack, certs, free_port, idle, logged, stack, until
from tlscerts import CertFiles

from bridgeline.sip.transaction import Target, Transport

__all__ = ["certs", "stack"]  # fixtures


class InviteCatcher:
    """A TCP or TLS server that keeps the head of each message it is sent, and answers nothing."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.heads: list[bytes] = []
        self.port = free_port()

    async def __aenter__(self) -> InviteCatcher:
        self.server = await asyncio.start_server(self._serve, HOST, self.port, ssl=self.tls)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            await reader.read()  # until the client goes
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


async def test_a_refused_tcp_server_is_left_for_the_next_one_at_once(stack: Stack) -> None:
    refusing = free_port()  # nothing listens: the kernel refuses the connection
    async with InviteCatcher() as backup:
        servers = [Target(HOST, refusing, Transport.TCP), Target(HOST, backup.port, Transport.TCP)]
        with structlog.testing.capture_logs() as logs:
            stack.endpoint.dial(
                "leg",
                "sip:bob@pbx.test",
                caller_id=None,
                offer_sdp=SDP,
                now=stack.udp.now,
                destinations=servers,
            )
            stack.udp.flush()
            await until(lambda: bool(backup.heads))  # within 3 s; Timer B would take 32
        assert backup.heads[0].startswith(b"INVITE sip:bob@pbx.test SIP/2.0\r\n")
        assert b"Via: SIP/2.0/TCP " in backup.heads[0]
        assert stack.endpoint.stats["failovers.transport_error"] == 1
        assert stack.streams.stats["connect_failures"] == 1 and logged(logs, "sip_connect_failed")
        assert stack.events == []  # the leg goes on at the second server
        assert stack.endpoint.hangup("leg", stack.udp.now)
        stack.udp.flush()


async def test_a_tls_server_is_checked_against_the_name_looked_up(stack: Stack, certs: CertFiles) -> None:
    """The certificate names 127.0.0.1 and localhost: dialled for the domain "wrong.test" it fails
    the handshake (the leg moves on), dialled for "localhost" it is accepted."""
    good = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    good.load_cert_chain(str(certs.certificate), str(certs.key))
    async with InviteCatcher(good) as server:
        servers = [
            Target(HOST, server.port, Transport.TLS, tls_name="wrong.test"),
            Target(HOST, server.port, Transport.TLS, tls_name="localhost"),
        ]
        with structlog.testing.capture_logs() as logs:
            stack.endpoint.dial(
                "leg",
                "sips:bob@pbx.test",
                caller_id=None,
                offer_sdp=SDP,
                now=stack.udp.now,
                destinations=servers,
            )
            stack.udp.flush()
            await until(lambda: bool(server.heads))
        assert server.heads[0].startswith(b"INVITE sips:bob@pbx.test SIP/2.0\r\n")
        [failed] = logged(logs, "sip_tls_handshake_failed")
        assert "wrong.test" in failed["error"]  # the name checked, not the address dialled
        assert stack.streams.stats["tls_handshake_failures"] == 1
        assert stack.endpoint.stats["failovers.transport_error"] == 1 and stack.events == []
        assert stack.endpoint.hangup("leg", stack.udp.now)
        stack.udp.flush()
    await until(lambda: idle(stack))
