"""Where the server may connect on an account's behalf: the destination policy for outgoing HTTP.

Callback URLs (and fetched media) are chosen by account owners, so in a hosted deployment they could
point the server at its own loopback services, the private network or a cloud metadata endpoint
(169.254.169.254). The policy is checked where the connection is made, on the address the host name
resolved to, and the connection goes to that checked address: a name that resolves to a public
address when the URL is saved and to 127.0.0.1 later (DNS rebinding) is still refused. TLS keeps
verifying the certificate against the host name, since httpcore starts TLS with the URL's host.

Profiles:
- `open` (default, self-hosting): every destination is allowed, except the `deny` networks.
- `hosted`: only globally routable unicast addresses are allowed (no loopback, private, link-local,
  shared CGNAT, multicast, reserved or unspecified ranges), except the `allow` networks; `deny`
  networks are refused as well.
An `allow` entry wins over everything else in both profiles.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressProfile(StrEnum):
    OPEN = "open"
    HOSTED = "hosted"


class EgressRefused(httpcore.ConnectError):
    """The destination is outside the policy; httpx reports it as a ConnectError with this message."""


def parse_networks(text: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDR networks from `10.0.0.0/8, 192.168.1.7` (a bare address is a /32 or /128)."""
    items = text.split(",") if isinstance(text, str) else text
    networks: list[IPNetwork] = []
    for item in items:
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"not a network in CIDR notation: {item.strip()!r} ({exc})") from None
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    profile: EgressProfile = EgressProfile.OPEN
    allow: tuple[IPNetwork, ...] = field(default=())
    deny: tuple[IPNetwork, ...] = field(default=())

    @classmethod
    def from_settings(cls, profile: str, allow: str = "", deny: str = "") -> EgressPolicy:
        try:
            chosen = EgressProfile(profile.strip().lower())
        except ValueError:
            names = ", ".join(p.value for p in EgressProfile)
            raise ValueError(f"unknown egress profile {profile!r} (expected one of: {names})") from None
        return cls(chosen, parse_networks(allow), parse_networks(deny))

    @property
    def checks_addresses(self) -> bool:
        """False when every address is allowed, so connections need no resolution of their own."""
        return self.profile is EgressProfile.HOSTED or bool(self.deny)

    def permits(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if any(address in network for network in self.allow):
            return True
        if any(address in network for network in self.deny):
            return False
        if self.profile is EgressProfile.HOSTED:
            return address.is_global and not address.is_multicast
        return True

    async def resolve(self, host: str, port: int) -> str:
        """The first address `host` resolves to that the policy permits; EgressRefused if none does."""
        literal = _literal(host)
        if literal is not None:
            return self._choose(host, [literal])
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        return self._choose(host, _addresses(infos))

    def resolve_blocking(self, host: str, port: int) -> str:
        """`resolve` for a worker thread (the media fetcher's synchronous client)."""
        literal = _literal(host)
        if literal is not None:
            return self._choose(host, [literal])
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        return self._choose(host, _addresses(infos))

    def _choose(self, host: str, candidates: list[IPAddress]) -> str:
        for address in candidates:
            if self.permits(address):
                return str(address)
        shown = ", ".join(sorted({str(a) for a in candidates}))
        raise EgressRefused(f"egress policy ({self.profile.value}) refuses {host} ({shown})")

    def blocking_client(self, **options: Any) -> httpx.Client:
        """A synchronous httpx client bound to this policy, for worker threads."""
        pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=GuardedBlockingBackend(self),
        )
        transport = httpx.HTTPTransport(trust_env=False)
        transport._pool = pool  # httpx takes no network backend; see GuardedTransport
        return httpx.Client(transport=transport, trust_env=False, **options)

    def transport(self, **options: Any) -> httpx.AsyncHTTPTransport:
        """An httpx transport whose every connection goes through this policy."""
        return GuardedTransport(self, **options)

    def client(self, limits: httpx.Limits | None = None, **options: Any) -> httpx.AsyncClient:
        """An httpx client bound to this policy (proxies from the environment are ignored)."""
        return httpx.AsyncClient(transport=self.transport(limits=limits), trust_env=False, **options)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _addresses(infos: list[Any]) -> list[IPAddress]:
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


OPEN: Final = EgressPolicy()  # self-hosting's default: every destination allowed


class GuardedBlockingBackend(httpcore.NetworkBackend):
    """The synchronous twin of GuardedBackend, for clients that run in worker threads."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        address = self._policy.resolve_blocking(host, port) if self._policy.checks_addresses else host
        return self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise EgressRefused("egress policy refuses unix sockets")


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer with the policy in front: resolve, check, connect to the checked address."""

    def __init__(self, policy: EgressPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await self._policy.resolve(host, port) if self._policy.checks_addresses else host
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("egress policy refuses unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, its connection pool rebuilt on a `GuardedBackend`.

    httpx does not take a network backend as an argument, so the pool it built is replaced by an
    equivalent one (same TLS context and limits) that has the backend; proxies are not supported.
    """

    def __init__(self, policy: EgressPolicy, limits: httpx.Limits | None = None, **options: Any) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(limits=limits, trust_env=False, **options)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )
