"""The sip carrier dialling names (RFC 3263) with a real nameserver (dnsmasq on 127.0.0.1), on the
server's event loop (uvloop): a name seen recently is dialled with no await (the INVITE is on the
wire when dial returns, as for an IP address); a leg hung up while its lookup runs sends nothing and
holds no port; IPv6 (AAAA records and `[::1]` literals) when the server listens on ::1; an address
our socket cannot reach is a transport error, not a 32 s timeout."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvloop
from dnskit import Dnsmasq, SilentNameserver, host, srv

from bridgeline.adapters.carriers.sip.carrier import SipCarrier
from bridgeline.adapters.carriers.sip.settings import DnsSettings, RtpSettings, SipSettings, TrunkSettings
from bridgeline.app.ports import LegRequest
from bridgeline.core.commands import LegFailed, LegSignal
from bridgeline.core.model import LeaveReason, Role
from bridgeline.sip.message import Request, make_response, parse_message

Signals = list[tuple[str, LegSignal]]
Peers = tuple[socket.socket, socket.socket]


def udp_socket(family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    sock.setblocking(False)
    return sock


@pytest.fixture
def peers() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two servers of the trunk (priority 10 and 20), sockets read by the test."""
    first, second = udp_socket(), udp_socket()
    with first, second:
        yield first, second


def free_port(family: socket.AddressFamily = socket.AF_INET) -> int:
    with udp_socket(family) as sock:
        port: int = sock.getsockname()[1]
        return port


def free_rtp_range(host: str, size: int = 6) -> str:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        low = free_port(family) & ~1
        socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(size)]
        try:
            for offset, sock in enumerate(socks):
                sock.bind((host, low + offset))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return f"{low}-{low + size - 1}"
    raise RuntimeError("no free RTP range")


async def started(settings: SipSettings) -> tuple[SipCarrier, Signals]:
    carrier = SipCarrier(settings)
    signals: Signals = []
    carrier.bind(lambda conference_id, signal: signals.append((conference_id, signal)))
    await carrier.start()
    return carrier, signals


def request(leg_id: str, to: str = "+14155550123") -> LegRequest:
    return LegRequest("conf-1", leg_id, to, Role.CUSTOMER, None, 30.0)


async def receive(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(3):
        return await loop.sock_recv(sock, 65535)


async def signalled(signals: Signals) -> None:
    async with asyncio.timeout(3):
        while not signals:  # noqa: ASYNC110  # the carrier's sink is a plain callback, not an event
            await asyncio.sleep(0.02)


def answer(sock: socket.socket, data: bytes, status: int, source: tuple[str, int]) -> None:
    invite = parse_message(data)
    assert isinstance(invite, Request)
    sock.sendto(bytes(make_response(invite, status, to_tag="t1")), source)


@contextlib.asynccontextmanager
async def named_trunk(tmp_path: Path, peers: Peers) -> AsyncIterator[tuple[SipCarrier, Signals, Dnsmasq]]:
    first, second = peers
    records = [
        srv("_sip._udp.trunk.test", "a.trunk.test", first.getsockname()[1], 10),
        srv("_sip._udp.trunk.test", "b.trunk.test", second.getsockname()[1], 20),
        host("a.trunk.test", "127.0.0.1"),
        host("b.trunk.test", "127.0.0.1"),
    ]
    with Dnsmasq(records, log=tmp_path / "dnsmasq.log") as dns:
        settings = SipSettings(
            listen=f"127.0.0.1:{free_port()}",
            rtp=RtpSettings(ports=free_rtp_range("127.0.0.1")),
            trunk=TrunkSettings(proxy="trunk.test", domain="carrier.test", keepalive_s=0),  # dials only
            dns=DnsSettings(nameservers=[dns.address]),
        )
        carrier, signals = await started(settings)
        try:
            yield carrier, signals, dns
        finally:
            await carrier.stop()


# Each test runs on uvloop, the loop main/serving.py runs the server on (its sendto differs from asyncio's).


def test_a_cached_name_is_dialled_without_an_await(tmp_path: Path, peers: Peers) -> None:
    async def scenario() -> None:
        async with named_trunk(tmp_path, peers) as (carrier, signals, dns):
            first, _ = peers
            carrier.dial(request("leg-1"))
            with pytest.raises(BlockingIOError):
                first.recv(65535)  # not yet: the servers are being looked up
            assert (await receive(first)).startswith(b"INVITE sip:+14155550123@carrier.test SIP/2.0")
            lookups = carrier.stats()["dns_lookups"]
            asked = len(dns.queries())
            carrier.dial(request("leg-2"))
            assert first.recv(65535).startswith(b"INVITE ")  # on the wire when dial returned
            stats = carrier.stats()
            assert stats["dns_lookups"] == lookups and len(dns.queries()) == asked
            assert stats["dns_cache_hits"] >= 3  # SRV and two A records
            assert signals == []

    uvloop.run(scenario())


def test_a_503_moves_the_call_to_the_next_server(tmp_path: Path, peers: Peers) -> None:
    async def scenario() -> None:
        async with named_trunk(tmp_path, peers) as (carrier, _, _):
            first, second = peers
            carrier.dial(request("leg-1"))
            invite = await receive(first)
            answer(first, invite, 503, carrier.settings.listen_address)
            retry = await receive(second)
            assert retry.startswith(b"INVITE sip:+14155550123@carrier.test SIP/2.0")
            assert b"CSeq: 2 INVITE" in retry
            assert carrier.stats()["failovers"] == 1

    uvloop.run(scenario())


def test_a_leg_hung_up_while_its_name_is_looked_up_sends_nothing() -> None:
    async def scenario(silent: SilentNameserver) -> None:
        settings = SipSettings(
            listen=f"127.0.0.1:{free_port()}",
            rtp=RtpSettings(ports=free_rtp_range("127.0.0.1")),
            dns=DnsSettings(nameservers=[silent.address], timeout_s=0.3),
        )
        carrier, signals = await started(settings)
        try:
            carrier.dial(request("leg-1", "sip:bob@never.test"))
            assert carrier.stats()["rtp_ports_in_use"] == 1
            await asyncio.sleep(0.05)
            carrier.drop("leg-1", LeaveReason.HANGUP)
            assert carrier.stats()["rtp_ports_in_use"] == 0  # freed at once
            await asyncio.sleep(0.6)  # past the lookup's timeout
            assert signals == []  # the conference asked for it: nothing to report
            assert carrier.endpoint.state_sizes()["legs"] == 0
            # Another dial to the same name fails by itself.
            carrier.dial(request("leg-2", "sip:bob@never.test"))
            await signalled(signals)
            assert signals == [("conf-1", LegFailed("leg-2", LeaveReason.FAILED))]
            assert carrier.stats()["dns_failures"] >= 1 and carrier.stats()["rtp_ports_in_use"] == 0
        finally:
            await carrier.stop()

    with SilentNameserver() as silent:
        uvloop.run(scenario(silent))


def test_ipv6_aaaa_targets_and_literals(tmp_path: Path) -> None:
    first, second = udp_socket(socket.AF_INET6), udp_socket(socket.AF_INET6)
    records = [
        srv("_sip._udp.six.test", "a.six.test", first.getsockname()[1], 10),
        srv("_sip._udp.six.test", "b.six.test", second.getsockname()[1], 20),
        host("a.six.test", "::1"),
        host("b.six.test", "127.0.0.1,::1"),  # both families: the IPv6 server uses the AAAA
    ]

    async def scenario(dns: Dnsmasq) -> None:
        port = free_port(socket.AF_INET6)
        settings = SipSettings(
            listen=f"[::1]:{port}",
            rtp=RtpSettings(host="::1", ports=free_rtp_range("::1")),
            trunk=TrunkSettings(proxy="six.test", domain="carrier.test", keepalive_s=0),
            dns=DnsSettings(nameservers=[dns.address]),
        )
        carrier, _ = await started(settings)
        try:
            carrier.dial(request("leg-1"))
            invite = await receive(first)
            assert f"Via: SIP/2.0/UDP [::1]:{port};".encode() in invite
            assert b"c=IN IP6 ::1" in invite and b" IN IP6 ::1\r\n" in invite  # c= and o=
            assert not any("query[A] " in q for q in dns.queries())  # AAAA only
            answer(first, invite, 503, ("::1", port))
            assert (await receive(second)).startswith(b"INVITE ")
            carrier.dial(request("leg-2", f"sip:bob@[::1]:{second.getsockname()[1]}"))
            assert (await receive(second)).startswith(b"INVITE sip:bob@[::1]:")
        finally:
            await carrier.stop()

    with first, second, Dnsmasq(records, log=tmp_path / "dnsmasq.log") as dns:
        uvloop.run(scenario(dns))


def test_an_address_the_socket_cannot_reach_is_a_transport_error() -> None:
    """An IPv6 literal dialled from an IPv4 socket: the send fails at once, so does the leg (it used
    to wait for Timer B, 32 s, while uvloop's ValueError escaped the flush)."""

    async def scenario() -> None:
        rtp = RtpSettings(ports=free_rtp_range("127.0.0.1"))
        carrier, signals = await started(SipSettings(listen=f"127.0.0.1:{free_port()}", rtp=rtp))
        try:
            carrier.dial(request("leg-1", "sip:bob@[::1]:5099"))
            assert signals == [("conf-1", LegFailed("leg-1", LeaveReason.FAILED))]
            assert carrier.stats()["rtp_ports_in_use"] == 0 and carrier.endpoint.state_sizes()["legs"] == 0
        finally:
            await carrier.stop()

    uvloop.run(scenario())
