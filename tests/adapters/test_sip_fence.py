"""A node whose lease does not hold sends no SIP (issue #12, docs/cluster.md): every message, UDP or
TCP/TLS, leaves through the UDP transport's send step, which asks the fence first."""

from __future__ import annotations

import asyncio
import random
import socket

from bridgeline.adapters.carriers.sip.transport_udp import SipUdpTransport
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import EndpointConfig, EndpointEvent


def options(port: int, branch: str) -> bytes:
    return (
        f"OPTIONS sip:bridgeline@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{branch}\r\n"
        f"From: <sip:probe@127.0.0.1:{port}>;tag=probe\r\nTo: <sip:bridgeline@127.0.0.1>\r\n"
        f"Call-ID: fence-{branch}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def test_nothing_is_sent_while_fenced_and_answers_resume_after() -> None:
    loop = asyncio.get_running_loop()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    peer_port = peer.getsockname()[1]
    events: list[EndpointEvent] = []
    endpoint = SipEndpoint(EndpointConfig(("127.0.0.1", 0), "fence"), random.Random(1))
    transport = await SipUdpTransport.listen(endpoint, events.append, "127.0.0.1", 0)
    fenced = [True]
    transport.fenced = lambda: fenced[0]
    assert transport._transport is not None
    ours = transport._transport.get_extra_info("sockname")[:2]
    try:
        peer.sendto(options(peer_port, "fenced"), ours)
        await asyncio.sleep(0.2)
        assert transport.fenced_drops >= 1
        try:
            peer.recvfrom(65535)
            raise AssertionError("a fenced node answered")
        except BlockingIOError:
            pass  # nothing came
        fenced[0] = False
        peer.sendto(options(peer_port, "renewed"), ours)
        data = await asyncio.wait_for(loop.sock_recv(peer, 65535), 2.0)
        assert data.startswith(b"SIP/2.0 200")
    finally:
        transport.close()
        peer.close()
