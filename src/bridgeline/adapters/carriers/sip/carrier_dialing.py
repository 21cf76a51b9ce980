"""The sip carrier's outbound dials, apart from the rest of its call handling: what kind of target a
leg is (an endpoint, a trunk number, a SIP URI), its RTP port, the lookup that may come first (DNS,
RFC 3263, or an endpoint's binding another node stored) and the INVITE with our offer. A mixin of
`SipCarrier`, like carrier_lookups.py: the dial path is long and reads on its own, while the
carrier keeps the leg bookkeeping, the endpoint events, inbound calls and media wiring."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable

import structlog

from bridgeline.adapters.carriers.sip.carrier_legs import SipLeg, caller_user, srtp_config
from bridgeline.adapters.carriers.sip.dial_lookup import lookup_for
from bridgeline.adapters.carriers.sip.dns_resolver import DnsFailure, SipResolver
from bridgeline.adapters.carriers.sip.media_engine import MediaEngine, MediaPortsExhausted
from bridgeline.adapters.carriers.sip.refer_transfers import ReferTransfers
from bridgeline.adapters.carriers.sip.settings import SipSettings
from bridgeline.adapters.carriers.sip.shared_registrations import SharedRegistrations
from bridgeline.adapters.carriers.sip.transport_udp import SipUdpTransport
from bridgeline.app.ports import LegRequest
from bridgeline.core.commands import LegFailed, LegSignal
from bridgeline.core.model import LeaveReason
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.locate import LocateRequest, RecordType
from bridgeline.sip.offer_answer import Codec, make_offer
from bridgeline.sip.refer_policy import LegKind
from bridgeline.sip.registrar import Binding
from bridgeline.sip.transaction import Destination, Transport

# The carrier's logger: these lines were its own before this module was split off.
log = structlog.get_logger("bridgeline.adapters.carriers.sip.carrier")


class CarrierDialing:
    settings: SipSettings
    registrations: SharedRegistrations | None
    endpoint: SipEndpoint
    media: MediaEngine
    refers: ReferTransfers
    resolver: SipResolver
    supported_transports: tuple[Transport, ...]
    _families: tuple[RecordType, ...]
    _transport: SipUdpTransport | None
    _legs: dict[str, SipLeg]
    _session: int
    _codecs: tuple[Codec, ...]
    _dns_failed_dials: int

    @abstractmethod
    def _target(self, to: str) -> str: ...

    @abstractmethod
    def _kind_of(self, target: str) -> LegKind: ...

    @abstractmethod
    def _finish(self, leg_id: str, signal: LegSignal | None) -> None: ...

    @abstractmethod
    def _overloaded(self, leg_id: str, exc: Exception) -> None: ...

    @abstractmethod
    def _spawn(self, coro: Awaitable[None]) -> None: ...

    def dial(self, request: LegRequest) -> None:
        """Open the leg's RTP ports and send the INVITE now, within the service's effects: no await
        between the committed `call` and the INVITE on the wire. Failures come back as LegFailed."""
        leg_id = request.leg_id
        target = self._target(request.to)
        kind = self._kind_of(target)
        self._legs[leg_id] = SipLeg(request.conference_id, kind=kind)
        self.refers.dialing(request.conference_id, request.to, leg_id)
        if kind is LegKind.TRUNK and self.settings.trunk is not None and not self.endpoint.trunk_up:
            log.warning("sip_dial_trunk_down", leg_id=leg_id, to=request.to)  # fail fast, no INVITE
            self._finish(leg_id, LegFailed(leg_id, LeaveReason.FAILED))
            return
        if self._transport is None:
            log.warning("sip_dial_before_start", leg_id=leg_id)
            self._finish(leg_id, LegFailed(leg_id, LeaveReason.FAILED))
            return
        try:
            port = self.media.open_leg(leg_id)
        except (MediaPortsExhausted, OSError) as exc:  # the range, or the open-files limit: overload
            self._overloaded(leg_id, exc)
            self._finish(leg_id, LegFailed(leg_id, LeaveReason.FAILED))  # failed, not the callee's "rejected"
            return
        elsewhere = kind is LegKind.ENDPOINT and self.endpoint.lookup(target, self._transport.now) is None
        if self.registrations is not None and elsewhere:  # registered through another node?
            self._legs[leg_id].resolving = True
            self._spawn(self._resolve_then_dial(request, target, port, None))
            return
        where = lookup_for(target, self.settings, self.supported_transports, self._families)
        if where is None:  # an account, an IP address, or a trunk proxy given as one: no DNS
            self._send_invite(request, target, port, ())
            return
        servers = self.resolver.cached(where)
        if servers is not None:  # looked up recently: the INVITE goes now, as for an IP address
            self._send_invite(request, target, port, servers, where)
            return
        self._legs[leg_id].resolving = True
        self._spawn(self._resolve_then_dial(request, target, port, where))

    async def _resolve_then_dial(
        self, request: LegRequest, target: str, port: int, where: LocateRequest | None
    ) -> None:
        """Look the target up (DNS; or, where is None, an endpoint's binding another node stored),
        then send the INVITE."""
        leg_id = request.leg_id
        servers: list[Destination] | tuple[()] = ()
        stored = None
        try:
            if where is not None:
                servers = await self.resolver.locate(where)
            elif self.registrations is not None:
                stored = await self.registrations.lookup(target)
        except DnsFailure as exc:
            assert where is not None
            self._dns_failed(leg_id, where, exc.reason)
            return
        leg = self._legs.get(leg_id)
        if leg is None or leg.dropped or self._transport is None:
            return  # hung up (ring timeout, API) while we looked it up: drop() already cleaned up
        leg.resolving = False
        self._send_invite(request, target, port, servers, where, stored)

    def _send_invite(
        self,
        request: LegRequest,
        target: str,
        port: int,
        servers: list[Destination] | tuple[()],
        where: LocateRequest | None = None,
        stored: Binding | None = None,
    ) -> None:
        leg_id = request.leg_id
        assert self._transport is not None
        if where is not None and not servers:
            self._dns_failed(
                leg_id,
                where,
                "no usable server (no record, or none for a transport we dial"
                f" ({', '.join(t.value for t in where.supported)}) or our address family)",
            )
            return
        srtp = srtp_config(self.settings.srtp_for_dial(target), self.settings.srtp_suites)
        offer = make_offer(self.settings.rtp.sdp_host, port, self._session, 1, self._codecs, srtp=srtp)
        try:
            self.endpoint.dial(
                leg_id,
                target,
                caller_id=caller_user(request.caller_id),
                offer_sdp=offer,
                now=self._transport.now,
                destinations=servers,
                stored=stored,
            )
        except ValueError as exc:
            log.warning("sip_dial_refused", leg_id=leg_id, to=request.to, error=str(exc))
            self._finish(leg_id, LegFailed(leg_id, LeaveReason.FAILED))
            return
        self._transport.flush()

    def _dns_failed(self, leg_id: str, where: LocateRequest, reason: str) -> None:
        self._dns_failed_dials += 1
        log.warning("sip_dns_failed", leg_id=leg_id, host=where.host, reason=reason)
        leg = self._legs.get(leg_id)
        if leg is not None and not leg.dropped:
            self._finish(leg_id, LegFailed(leg_id, LeaveReason.FAILED))
