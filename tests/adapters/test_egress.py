"""The destination policy, checked on resolved addresses, with a real httpx client and a real receiver."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest

from bridgeline.adapters.egress import EgressPolicy, EgressProfile, parse_networks

HOSTED = EgressPolicy.from_settings("hosted")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared (CGNAT)
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # loopback spelled as IPv4-mapped IPv6
    ],
)
def test_hosted_refuses_non_public_addresses(address: str) -> None:
    assert not HOSTED.permits(ipaddress.ip_address(address))
    assert EgressPolicy().permits(ipaddress.ip_address(address))  # open: self-hosting reaches anything


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111"])
def test_hosted_allows_public_addresses(address: str) -> None:
    assert HOSTED.permits(ipaddress.ip_address(address))


def test_allow_wins_and_deny_applies_in_both_profiles() -> None:
    hosted = EgressPolicy.from_settings("hosted", allow="10.0.0.0/8", deny="8.8.8.0/24")
    assert hosted.permits(ipaddress.ip_address("10.9.9.9"))
    assert not hosted.permits(ipaddress.ip_address("8.8.8.8"))
    assert not hosted.permits(ipaddress.ip_address("192.168.0.1"))
    open_ = EgressPolicy.from_settings("open", deny="169.254.0.0/16, 127.0.0.1")
    assert not open_.permits(ipaddress.ip_address("169.254.169.254"))
    assert not open_.permits(ipaddress.ip_address("127.0.0.1"))
    assert open_.permits(ipaddress.ip_address("127.0.0.2"))


def test_settings_are_checked() -> None:
    assert EgressPolicy.from_settings(" Hosted ").profile is EgressProfile.HOSTED
    with pytest.raises(ValueError, match="unknown egress profile"):
        EgressPolicy.from_settings("paranoid")
    with pytest.raises(ValueError, match="CIDR"):
        parse_networks("10.0.0.0/8, not-a-network")


@pytest.fixture
async def receiver_port() -> AsyncIterator[int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_hosted_client_refuses_loopback_by_address_and_by_name(receiver_port: int) -> None:
    async with HOSTED.client() as client:
        for host in ("127.0.0.1", "localhost"):  # the name is refused for what it resolves to
            with pytest.raises(httpx.ConnectError, match="egress policy"):
                await client.get(f"http://{host}:{receiver_port}/cb")


async def test_allowed_network_is_reached(receiver_port: int) -> None:
    policy = EgressPolicy.from_settings("hosted", allow="127.0.0.0/8")
    async with policy.client() as client:
        response = await client.get(f"http://localhost:{receiver_port}/cb")
    assert (response.status_code, response.text) == (200, "ok")


async def test_resolution_happens_at_connect_time() -> None:
    # What a rebinding name does: the policy asks the resolver when connecting, not when the URL was saved.
    asked: list[str] = []
    loop = asyncio.get_running_loop()
    original = loop.getaddrinfo

    async def resolver(host: str, port: int, **kwargs: object) -> list[tuple[object, ...]]:
        asked.append(host)
        return await original("127.0.0.1", port, **kwargs)  # type: ignore[arg-type]

    loop.getaddrinfo = resolver  # type: ignore[method-assign]
    try:
        with pytest.raises(httpx.ConnectError, match=r"rebind\.example \(127\.0\.0\.1\)"):
            async with HOSTED.client() as client:
                await client.get("http://rebind.example:9/cb")
    finally:
        del loop.getaddrinfo  # type: ignore[method-assign]
    assert asked == ["rebind.example"]
