"""The sip carrier's background DNS work (RFC 3263), apart from its call handling: keeping a trunk
named by host located, and locating the target of a redirect. A mixin of `SipCarrier`."""

from __future__ import annotations

import asyncio

import structlog

from bridgeline.adapters.carriers.sip.dial_lookup import lookup_for
from bridgeline.adapters.carriers.sip.dns_resolver import DnsFailure, SipResolver
from bridgeline.adapters.carriers.sip.settings import SipSettings
from bridgeline.adapters.carriers.sip.transport_udp import SipUdpTransport
from bridgeline.sip import events as sip
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.locate import LocateRequest, RecordType
from bridgeline.sip.transaction import Destination, Transport

log = structlog.get_logger("bridgeline.adapters.carriers.sip.carrier")


class CarrierLookups:
    settings: SipSettings
    endpoint: SipEndpoint
    resolver: SipResolver
    supported_transports: tuple[Transport, ...]
    _families: tuple[RecordType, ...]
    _transport: SipUdpTransport | None

    async def _locate_trunk(self, where: LocateRequest, interval: float) -> None:
        """A trunk proxy named by host: its OPTIONS keepalive goes to the servers DNS gives for it,
        and INVITEs from their hosts are the trunk's; looked up again every interval (from the
        cache while the records live)."""
        while True:
            try:
                servers = self.resolver.cached(where)
                if servers is None:
                    servers = await self.resolver.locate(where, shared=False)
            except DnsFailure as exc:
                log.warning("sip_trunk_dns_failed", host=where.host, reason=exc.reason)
                servers = []  # each due ping is a miss until the name resolves again
            if self._transport is not None:
                self.endpoint.set_trunk_servers(servers, self._transport.now)
                self._transport.flush()  # arms the ping
            await asyncio.sleep(interval)

    async def _look_up_redirect(self, event: sip.TargetLookupNeeded) -> None:
        """A 3xx contact named by host (allowed by `redirects.allowed_targets`): its servers, or
        none, go back to the endpoint, which calls them or moves on."""
        where = lookup_for(str(event.uri), self.settings, self.supported_transports, self._families)
        servers: list[Destination] = []
        if where is not None:
            try:
                cached = self.resolver.cached(where)
                servers = cached if cached is not None else await self.resolver.locate(where)
            except DnsFailure as exc:
                log.warning(
                    "sip_dns_failed", leg_id=event.leg_id, host=where.host, reason=exc.reason, redirect=True
                )
        if not servers:
            log.info("sip_redirect_unresolved", leg_id=event.leg_id, target=str(event.uri))
        if self._transport is not None:
            self.endpoint.resume_redirect(event.leg_id, servers, self._transport.now)
            self._transport.flush()
