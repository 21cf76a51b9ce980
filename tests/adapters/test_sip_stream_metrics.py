"""The TCP/TLS counters reach /metrics: each is in the sip carrier's stats and declared a counter,
and the connection figures come from the stream transport and the endpoint."""

from __future__ import annotations

import asyncio
import socket

from bridgeline.adapters.carriers.sip.carrier import SipCarrier
from bridgeline.adapters.carriers.sip.carrier_stats import SIP_COUNTERS
from bridgeline.adapters.carriers.sip.settings import SipSettings

STREAM_FIGURES = {
    "connections_open",
    "connections_accepted",
    "connections_dialled",
    "connections_refused",
    "connect_failures",
    "tls_handshake_failures",
    "connections_idle_closed",
    "connections_truncated",
    "stream_framing_errors",
    "flows_gone",
    "write_overflows",
    "transport_failures",
}


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_stream_counters_are_exported() -> None:
    carrier = SipCarrier(SipSettings())
    stats = carrier.stats()
    assert STREAM_FIGURES.issubset(stats) and (STREAM_FIGURES - {"connections_open"}).issubset(SIP_COUNTERS)
    assert all(stats[name] == 0 for name in STREAM_FIGURES)


async def test_started_carrier_counts_connections() -> None:
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    settings = SipSettings.model_validate(
        {"listen": f"127.0.0.1:{udp}", "tcp": {"listen": f"127.0.0.1:{tcp}"}, "rtp": {"ports": "47000-47009"}}
    )
    carrier = SipCarrier(settings)
    await carrier.start()
    try:
        assert carrier._streams is not None
        with socket.create_connection(("127.0.0.1", tcp)):  # the TCP listener is up
            for _ in range(100):
                if carrier.stats()["connections_accepted"] == 1:
                    break
                await asyncio.sleep(0.01)
        assert carrier.stats()["connections_accepted"] == 1
        carrier._streams.stats["tls_handshake_failures"] += 2
        carrier.endpoint.stats["transport_failures"] += 1
        stats = carrier.stats()
        assert stats["tls_handshake_failures"] == 2 and stats["transport_failures"] == 1
    finally:
        await carrier.stop()
    await asyncio.sleep(0)
