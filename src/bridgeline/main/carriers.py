"""Which carrier places the calls, and how the app is bound to it: the carrier made from the
settings, inbound calls routed to PHLO runs, REFER routed to cold transfers, RTP and SIP fenced
by the node's lease; and the egress policy that its music URLs (and the callbacks) obey.

Apart from `wiring.py` because every SIP-only step here imports the sip carrier lazily: a sim
server never loads it (tests/app/test_startup_imports.py), and these functions are where to look."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from bridgeline.adapters.carriers.sim.carrier import SimCarrier
from bridgeline.adapters.carriers.sim.phones import PhoneBook
from bridgeline.adapters.egress import EgressPolicy
from bridgeline.app.cluster import ClusterNode
from bridgeline.app.inbound import InboundRefusal, start_inbound_run
from bridgeline.app.phlos import PhloCache
from bridgeline.app.ports import Carrier
from bridgeline.app.runs import RunService
from bridgeline.app.service import ConferenceService
from bridgeline.config import Settings

if TYPE_CHECKING:  # imported when the sip carrier is chosen: the sim server starts faster without it
    from bridgeline.adapters.carriers.sip.recovery import DialogStore
    from bridgeline.adapters.carriers.sip.shared_registrations import RegistrationBook

# One logger name for the whole entry point, as when it was one module.
log = structlog.get_logger("bridgeline.main")


def egress_policy(settings: Settings) -> EgressPolicy:
    """Where callbacks and music URLs may lead (docs/security.md)."""
    return EgressPolicy.from_settings(settings.egress_profile, settings.egress_allow, settings.egress_deny)


def make_carrier(
    settings: Settings,
    phone_book: PhoneBook,
    dialogs: DialogStore | None = None,
    registrations: RegistrationBook | None = None,
) -> Carrier:
    """`dialogs`: where the sip carrier keeps answered legs' dialogs (recoverable); `registrations`:
    where it shares its phones' bindings, so that every node on the database can call them."""
    if settings.carrier == "sim":
        return SimCarrier(
            phone_book, answer_delay_ms=settings.sim_answer_delay_ms, playback_ms=settings.sim_playback_ms
        )
    if settings.carrier == "sip":
        from bridgeline.adapters.carriers.sip.carrier import SipCarrier
        from bridgeline.adapters.carriers.sip.music_fetch import MediaLimits
        from bridgeline.adapters.carriers.sip.settings import load_sip_settings

        media = MediaLimits(
            media_dir=settings.media_directory,
            max_bytes=settings.media_max_bytes,
            fetch_timeout_s=settings.media_fetch_timeout_s,
            max_seconds=settings.media_max_seconds,
            cache_bytes=settings.media_cache_bytes,
            egress=egress_policy(settings),
        )
        from bridgeline.adapters.carriers.sip.shared_registrations import SharedRegistrations

        sip = load_sip_settings(settings.sip_config, listen=settings.sip_listen)
        shared = None
        if registrations is not None and sip.registrations.shared:
            shared = SharedRegistrations(registrations, sip.domain)
        # answered legs' dialogs: recoverable; phones' bindings: shared with the other nodes
        return SipCarrier(sip, media=media, dialogs=dialogs, registrations=shared)
    raise ValueError(f"unknown carrier {settings.carrier!r} (available: sim, sip)")


def route_inbound_calls(carrier: Carrier, phlos: PhloCache, runs: RunService, main_auth_id: str) -> None:
    """A call to a configured number starts its PHLO run (sip carrier only); a route that names no
    account runs the main account's PHLO."""
    from bridgeline.adapters.carriers.sip.carrier import SipCarrier
    from bridgeline.adapters.carriers.sip.carrier_legs import InboundCall

    if not isinstance(carrier, SipCarrier):
        return
    sip = carrier

    async def on_inbound(call: InboundCall) -> str | InboundRefusal:
        route = sip.settings.route_for(call.dialed)
        if route is None:
            log.info("inbound_no_route", dialed=call.dialed, caller=call.caller)
            return InboundRefusal.UNROUTABLE
        return await start_inbound_run(
            phlos,
            runs,
            auth_id=route.auth_id or main_auth_id,
            phlo_id=route.phlo_id,
            payload_template=route.payload,
            caller=call.caller,
            dialed=call.dialed,
            role=route.role,
            leg_id=call.leg_id,
        )

    sip.bind_inbound(on_inbound)


def route_refer_transfers(carrier: Carrier, conferences: ConferenceService) -> None:
    """A member's phone that sends REFER asks for the API's cold transfer (sip carrier only)."""
    from bridgeline.adapters.carriers.sip.carrier import SipCarrier

    if isinstance(carrier, SipCarrier):
        carrier.bind_transfers(conferences.leg_cold_transfer)


def fence_carrier(carrier: Carrier, node: ClusterNode) -> None:
    """The SIP carrier sends no RTP and no SIP while the node's lease does not hold locally."""
    if carrier.name == "sip":
        from bridgeline.adapters.carriers.sip.carrier import SipCarrier

        assert isinstance(carrier, SipCarrier)
        carrier.fence(node.fenced)
