"""The `sip` carrier: real calls through the embedded SIP endpoint and RTP media engine.

It translates between the conference's protocol-neutral leg signals and the SIP endpoint's
events, and tells the media engine where each leg's audio goes. Every leg is torn down on
every path: the media leg is closed when the SIP leg's terminal event arrives.

Two mixins hold what reads on its own: carrier_dialing.py, the outbound dial up to the INVITE
(`dial`, a method of the carrier port), and carrier_lookups.py, the background DNS work.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import structlog

from bridgeline.adapters.carriers.sip.carrier_dialing import CarrierDialing
from bridgeline.adapters.carriers.sip.carrier_legs import (
    E164,
    FAIL_REASONS,
    REFUSAL_STATUS,
    InboundCall,
    InboundHandler,
    SipLeg,
    address_of,
    srtp_config,
    srtp_keys,
)
from bridgeline.adapters.carriers.sip.carrier_lookups import CarrierLookups
from bridgeline.adapters.carriers.sip.carrier_stats import sip_stats
from bridgeline.adapters.carriers.sip.dial_lookup import trunk_lookup
from bridgeline.adapters.carriers.sip.dns_resolver import ResolverConfig, SipResolver
from bridgeline.adapters.carriers.sip.media_engine import MediaEngine, MediaPortsExhausted
from bridgeline.adapters.carriers.sip.music_fetch import MediaLimits
from bridgeline.adapters.carriers.sip.recovery import CallRecovery, CarrierHooks, DialogStore
from bridgeline.adapters.carriers.sip.refer_transfers import ReferTransfers, TransferHandler
from bridgeline.adapters.carriers.sip.settings import SipSettings
from bridgeline.adapters.carriers.sip.shared_registrations import SharedRegistrations
from bridgeline.adapters.carriers.sip.transport_stream import SipStreamTransport, start_streams
from bridgeline.adapters.carriers.sip.transport_udp import SipUdpTransport
from bridgeline.app.inbound import InboundRefusal
from bridgeline.app.ports import LegRequest, RecordingSink, SignalSink
from bridgeline.core.commands import (
    LegAnswered,
    LegDtmf,
    LegFailed,
    LegHungUp,
    LegMediaFailed,
    LegRinging,
    LegSignal,
    PlaybackFinished,
)
from bridgeline.core.effects import MusicSources, SetAudio
from bridgeline.core.model import LeaveReason
from bridgeline.sip import events as sip
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.locate import RecordType
from bridgeline.sip.offer_answer import (
    MediaParams,
    NegotiationError,
    answer_offer,
    codecs_by_name,
    make_offer,
)
from bridgeline.sip.refer_policy import LegKind
from bridgeline.sip.syntax import quotable
from bridgeline.sip.transaction import Transport

log = structlog.get_logger(__name__)

TRUNK_RELOCATE_S = 60.0  # how often a trunk named by host is looked up again when keepalive is off


class SipCarrier(CarrierDialing, CarrierLookups):
    name = "sip"

    def __init__(
        self,
        settings: SipSettings,
        *,
        rng: random.Random | None = None,
        media: MediaLimits | None = None,
        registrations: SharedRegistrations | None = None,  # other nodes' phones (cluster mode)
        dialogs: DialogStore | None = None,  # where answered legs' dialogs are kept (recovery.py)
    ) -> None:
        self.settings = settings
        self.registrations = registrations
        self._rng = rng or random.Random()
        self.endpoint = SipEndpoint(settings.endpoint_config(), self._rng)
        self.media = MediaEngine.for_rtp(settings.rtp, media)
        self._transport: SipUdpTransport | None = None
        self._streams: SipStreamTransport | None = None
        self._legs: dict[str, SipLeg] = {}
        self._fenced: Callable[[], bool] = lambda: False
        self._sink: SignalSink | None = None
        self._inbound: InboundHandler | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._session = self._rng.randrange(1, 2**31)
        self._codecs = codecs_by_name(settings.rtp.codecs)  # + telephone-event, in offer order
        self._ports_exhausted = 0
        self.refers = ReferTransfers(
            self.endpoint,
            settings.refer_policy(),
            local_hosts=settings.local_hosts(),
            accounts=frozenset(settings.endpoints),
            trunk_domain=settings.trunk.domain if settings.trunk else None,
            now=lambda: self._transport.now if self._transport else 0.0,
            flush=lambda: self._transport.flush() if self._transport else None,
            spawn=self._spawn,
        )
        dns = settings.dns
        self.resolver = SipResolver(
            ResolverConfig(
                nameservers=dns.nameserver_addresses(),
                timeout_s=dns.timeout_s,
                cache_max=dns.cache_max,
                negative_ttl_s=dns.negative_ttl_s,
                max_ttl_s=dns.max_ttl_s,
            ),
            self._rng,
        )
        self._dns_failed_dials = 0
        # What our UDP socket can reach: an IPv6 listen address sends to AAAA records only.
        listen_host = settings.listen_address[0]
        self._families = (RecordType.AAAA,) if ":" in listen_host else (RecordType.A,)
        # What DNS may choose for a dial (settings.located_transports: TCP/TLS only when set up).
        self.supported_transports: tuple[Transport, ...] = settings.located_transports
        self.media.on_dtmf(self._on_dtmf)
        hooks = CarrierHooks(
            self._legs, lambda: self._transport, self._signal, self._finish, self._connect_media,
            self._media_unusable, self._spawn, lambda to: self._kind_of(self._target(to)),
        )  # fmt: skip
        self.recovery = CallRecovery(
            self.endpoint, self.media, dialogs, hooks, offer_host=settings.rtp.sdp_host, codecs=self._codecs
        )
        self.media.on_media_failed(
            lambda leg_id, setting, reason: self._report(leg_id, LegMediaFailed(leg_id, setting, reason))
        )

    def stats(self) -> dict[str, int | float]:
        """Numbers for monitoring (/metrics): see carrier_stats.py; the names in SIP_COUNTERS only grow."""
        return sip_stats(
            media=self.media,
            endpoint=self.endpoint,
            streams=self._streams,
            resolver=self.resolver,
            refers=self.refers,
            ports_exhausted=self._ports_exhausted,
            keepalive=bool(self.settings.trunk and self.settings.trunk.keepalive_s),
            dialogs=self.recovery.keeper,
        )

    # ----------------------------------------------------------------- lifecycle
    def bind(self, sink: SignalSink) -> None:
        self._sink = sink

    def bind_inbound(self, handler: InboundHandler) -> None:
        self._inbound = handler

    def bind_transfers(self, handler: TransferHandler) -> None:
        """Who applies the cold transfers members' phones ask for with REFER."""
        self.refers.bind(handler)

    def fence(self, fenced: Callable[[], bool]) -> None:
        """Send no RTP and no SIP, and write no saved dialog, while `fenced()` (the node's lease does
        not hold: docs/cluster.md)."""
        self._fenced = fenced
        self.media.fence(fenced)
        if self.recovery.keeper is not None:
            self.recovery.keeper.fenced = fenced
        if self._transport is not None:
            self._transport.fenced = fenced

    async def start(self) -> None:
        await self.media.start()
        host, port = self.settings.listen_address
        self._transport = await SipUdpTransport.listen(self.endpoint, self._on_event, host, port)
        self._transport.on_flushed = self.recovery.save_changed
        await self.recovery.start(self._transport.now)  # saved dialogs: held until restored
        self._transport.fenced = self._fenced
        self._transport.flush()  # arms the endpoint's first deadline (the trunk's first keepalive)
        log.info("sip_listening", host=host, port=port, rtp=self.settings.rtp.ports)
        self._streams = await start_streams(self.settings, self._transport)  # TCP and TLS
        trunk = self.settings.trunk
        where = trunk_lookup(self.settings, self.supported_transports, self._families)
        if trunk is not None and where is not None:
            self._spawn(self._locate_trunk(where, trunk.keepalive_s or TRUNK_RELOCATE_S))

    async def stop(self) -> None:
        if self._transport is not None:
            now = self._transport.now
            for leg_id in list(self._legs):
                self.endpoint.hangup(leg_id, now)
            self._transport.flush()
        await self.recovery.stop(list(self._legs))  # hung up: nothing to recover
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._streams is not None:
            await self._streams.close()
            self._streams = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        await self.media.stop()
        self._legs.clear()
        if self.registrations is not None:
            await self.registrations.close()

    # ----------------------------------------------------------------- carrier port
    # (dial: carrier_dialing.py)
    def drop(self, leg_id: str, reason: LeaveReason) -> None:
        leg = self._legs.get(leg_id)
        if leg is None:
            return
        leg.dropped = True
        if leg.resolving:  # no INVITE went out: nothing to cancel; the lookup finds the leg gone
            self._finish(leg_id, None)
            return
        if self._transport is not None and self.endpoint.hangup(leg_id, self._transport.now):
            self._transport.flush()
        if leg.answered:
            # RFC 3261 15.1.1: the session is over once the BYE is sent; do not keep sending RTP
            # until its 200 arrives (up to 32 s of Timer F when the peer is gone).
            self.media.close_leg(leg_id)

    def play(self, leg_id: str, media: str | None) -> None:
        leg = self._legs.get(leg_id)
        if leg is None or leg.conference_id is None:
            return
        conference_id = leg.conference_id
        self.media.play(leg_id, media, lambda: self._signal(conference_id, PlaybackFinished(leg_id)))

    def set_audio(self, conference_id: str, audio: SetAudio, music: MusicSources) -> None:
        self.media.set_routes(conference_id, audio.legs, music)
        self.media.set_recorded(conference_id, audio.recorded)

    def start_recording(
        self, conference_id: str, recording_id: str, leg_id: str | None, sink: RecordingSink
    ) -> None:
        self.media.start_recording(conference_id, recording_id, leg_id, sink)

    def stop_recording(self, recording_id: str) -> None:
        self.media.stop_recording(recording_id)

    def flush_recording(self, recording_id: str, then: Callable[[], None]) -> None:
        self.media.flush_recording(recording_id, then)

    def restore(self, request: LegRequest, *, answered: bool) -> None:
        """An answered leg is recovered from its saved dialog (recovery.py); a ringing one is gone."""
        if answered:
            self.recovery.restore(request)
            return
        signal = LegFailed(request.leg_id, LeaveReason.FAILED)
        asyncio.get_running_loop().call_soon(self._signal, request.conference_id, signal)

    def conference_ended(self, conference_id: str) -> None:
        self.media.set_routes(conference_id, (), MusicSources())
        self.media.forget_recorded(conference_id)

    def release_conference(self, conference_id: str) -> None:
        """Another node owns the conference now: forget its legs' dialogs and RTP without a BYE (the new
        owner recovers them from the dialog state kept in the store)."""
        self.media.set_routes(conference_id, (), MusicSources())
        self.media.forget_recorded(conference_id)
        for leg_id, leg in list(self._legs.items()):
            if leg.conference_id == conference_id:
                self.refers.leg_gone(leg_id)
                self.recovery.release(leg_id)  # endpoint and RTP port; its saved dialog stays stored

    def adopt(self, leg_id: str, conference_id: str) -> None:
        """An accepted inbound leg now belongs to a conference."""
        leg = self._legs.get(leg_id)
        if leg is not None:
            leg.conference_id = conference_id

    # ----------------------------------------------------------------- endpoint events
    def _on_event(self, event: sip.EndpointEvent) -> None:
        self.refers.on_event(event)  # a transfer target's progress, NOTIFYed to its referrer
        if isinstance(event, sip.LegRinging):
            self._report(event.leg_id, LegRinging(event.leg_id))
        elif isinstance(event, sip.LegAnswered):
            if not self._connect_media(event.leg_id, event.media):
                self._media_unusable(event.leg_id)
                return
            leg = self._legs.get(event.leg_id)
            if leg is not None:
                leg.answered = True
            self._report(event.leg_id, LegAnswered(event.leg_id))
        elif isinstance(event, sip.LegFailed):
            if event.status == 488:  # the callee refused our offer, or we its answer (e.g. no SRTP keys)
                log.warning("sip_dial_media_not_acceptable", leg_id=event.leg_id, status=488)
            reason = FAIL_REASONS.get(event.reason)
            self._finish(event.leg_id, None if reason is None else LegFailed(event.leg_id, reason))
        elif isinstance(event, sip.LegEnded):
            if event.reason is sip.EndReason.BAD_ANSWER:
                log.warning("sip_ack_answer_unusable", leg_id=event.leg_id, action="bye_sent")
                self._finish(event.leg_id, LegHungUp(event.leg_id, LeaveReason.FAILED))
            elif event.reason is sip.EndReason.SESSION_EXPIRED:
                # RFC 4028: no session refresh in time; the peer (or the path to it) is gone.
                log.warning("sip_session_expired", leg_id=event.leg_id, action="bye_sent")
                self._finish(event.leg_id, LegHungUp(event.leg_id, LeaveReason.FAILED))
            elif event.reason is sip.EndReason.RECOVERY_FAILED:
                log.warning("sip_recovery_failed", leg_id=event.leg_id, action="leg_ended")
                self._finish(event.leg_id, LegHungUp(event.leg_id))
            elif event.reason is sip.EndReason.TIMEOUT:
                log.info("sip_leg_timed_out", leg_id=event.leg_id)  # no ACK, no PRACK, never answered
                self._finish(event.leg_id, LegHungUp(event.leg_id))
            else:
                self._finish(event.leg_id, LegHungUp(event.leg_id))
        elif isinstance(event, sip.MediaUpdated):
            leg = self._legs.get(event.leg_id)
            if leg is not None and leg.awaiting_answer:
                # Late offer: the ACK's answer is the first time we know where to send media.
                leg.awaiting_answer = False
                if not self._connect_media(event.leg_id, event.media):
                    self._media_unusable(event.leg_id)
                return
            try:
                self.media.update_leg(
                    event.leg_id,
                    remote=(event.media.remote_address, event.media.remote_port),
                    send=event.media.direction.sends,
                    srtp=srtp_keys(event.media.srtp),
                )
            except ValueError as exc:  # what offer_answer lets through and the sockets cannot reach
                log.warning("sip_media_unusable", leg_id=event.leg_id, error=str(exc))
                self._media_unusable(event.leg_id)
        elif isinstance(event, sip.LegRecovered):
            self.recovery.on_recovered(event)
        elif isinstance(event, sip.TargetLookupNeeded):
            self._spawn(self._look_up_redirect(event))
        elif isinstance(event, sip.IncomingCall):
            kind = LegKind.TRUNK if event.account is None else LegKind.ENDPOINT  # digest or the trunk
            self._legs[event.leg_id] = SipLeg(None, inbound=True, kind=kind)
            self._spawn(self._incoming(event))
        elif isinstance(event, sip.TransferRequested):
            leg = self._legs.get(event.leg_id)
            if leg is not None and not leg.dropped:
                self.refers.requested(event, leg.conference_id, leg.kind)
            elif self._transport is not None:  # the conference is hanging it up
                self.endpoint.answer_refer(event.leg_id, 403, self._transport.now, "Call is ending")
        elif isinstance(event, sip.TrunkStatus):
            trunk = self.settings.trunk.proxy if self.settings.trunk else None
            if event.up:
                log.info("sip_trunk_up", proxy=trunk)
            else:
                log.warning("sip_trunk_down", proxy=trunk, unanswered_keepalives=event.misses)
        elif isinstance(event, sip.Registered | sip.Unregistered):
            log.info("sip_registration", kind=type(event).__name__, username=event.username)
            if self.registrations is not None:
                self.registrations.record(event)  # for the other nodes

    async def _incoming(self, call: sip.IncomingCall) -> None:
        assert self._transport is not None
        caller = call.account or address_of(call.from_uri)
        try:
            port = self.media.open_leg(call.leg_id)
        except (MediaPortsExhausted, OSError) as exc:
            # An overload, not the caller's fault (RFC 3261 21.5.4): 503, try again later.
            self._overloaded(call.leg_id, exc)
            retry_after = str(self.settings.rtp.overload_retry_after_s)
            self.endpoint.reject_incoming(
                call.leg_id, 503, self._transport.now, [("Retry-After", retry_after)]
            )
            self._finish(call.leg_id, None)
            self._transport.flush()
            return
        params: MediaParams | None = None
        srtp = srtp_config(
            self.settings.srtp_for_inbound(call.account, call.source[0] if call.source else ""),
            self.settings.srtp_suites,
        )
        host = self.settings.rtp.sdp_host
        try:
            if call.offer is None:  # late offer: ours goes in the 200 (rtp.codecs + telephone-event)
                local_sdp = make_offer(host, port, self._session, 1, self._codecs, srtp=srtp)
            else:
                local_sdp, params = answer_offer(
                    call.offer, host, port, self._session, 1, self._codecs, srtp=srtp
                )
        except Exception as exc:
            log.warning("inbound_media_failed", leg_id=call.leg_id, error=str(exc), srtp=srtp.policy.value)
            # A Warning (RFC 3261 20.43) tells the caller why, e.g. that SRTP is required (399), or
            # that its media address is of the IP family our RTP does not speak (301).
            text, code = "no acceptable media", 399
            if isinstance(exc, NegotiationError):
                text, code = str(exc), exc.warning_code
            warning = f'{code} {self.settings.domain} "{quotable(text)}"'
            self.endpoint.reject_incoming(call.leg_id, 488, self._transport.now, [("Warning", warning)])
            self._finish(call.leg_id, None)
            self._transport.flush()
            return
        self.endpoint.ring_incoming(call.leg_id, self._transport.now)
        self._transport.flush()
        decided: str | InboundRefusal = InboundRefusal.UNROUTABLE
        if self._inbound is not None:
            decided = await self._inbound(InboundCall(call.leg_id, caller, call.to_user))
        leg = self._legs.get(call.leg_id)
        if leg is None:
            return  # the caller hung up while we decided
        if isinstance(decided, InboundRefusal):
            self.endpoint.reject_incoming(call.leg_id, REFUSAL_STATUS[decided], self._transport.now)
        else:
            leg.conference_id = decided
            leg.answered = True
            if params is None:
                leg.awaiting_answer = True  # nothing is sent until the ACK's answer is applied
            elif not self._connect_media(call.leg_id, params):
                self.endpoint.reject_incoming(call.leg_id, 488, self._transport.now)
                self._transport.flush()
                return
            self.endpoint.answer_incoming(call.leg_id, local_sdp, self._transport.now)
        self._transport.flush()

    def _overloaded(self, leg_id: str, exc: Exception) -> None:
        self._ports_exhausted += 1
        log.warning("rtp_ports_exhausted", leg_id=leg_id, error=str(exc), count=self._ports_exhausted)

    def _on_dtmf(self, leg_id: str, digit: str) -> None:
        self._report(leg_id, LegDtmf(leg_id, digit))  # the media engine already relayed it

    def _connect_media(self, leg_id: str, params: MediaParams) -> bool:
        """Start the leg's media; False (logged) when the media runtime cannot carry what was
        negotiated, which the caller turns into the end of the call."""
        event_pt = params.telephone_event.payload_type if params.telephone_event else None
        codec = params.codec
        try:
            self.media.connect_leg(
                leg_id,
                remote=(params.remote_address, params.remote_port),
                payload_type=codec.static_payload_type,
                wire_payload_type=codec.payload_type,
                fmtp=codec.fmtp,
                telephone_event_pt=event_pt,
                send=params.direction.sends,
                ptime_ms=params.ptime,
                srtp=srtp_keys(params.srtp),
            )
        except (ValueError, KeyError) as exc:  # KeyError: the leg's ports were closed meanwhile
            log.warning("sip_media_unusable", leg_id=leg_id, codec=codec.encoding, error=str(exc))
            return False
        return True

    def _media_unusable(self, leg_id: str) -> None:
        """A call whose negotiated media we cannot carry: BYE (or CANCEL) it, and the member fails."""
        if self._transport is not None:
            self.endpoint.hangup(leg_id, self._transport.now)
        self._finish(leg_id, LegHungUp(leg_id, LeaveReason.FAILED))

    def _finish(self, leg_id: str, signal: LegSignal | None) -> None:
        """A leg's terminal event: free its media, and tell the conference unless it asked for it."""
        self.media.close_leg(leg_id)
        self.refers.leg_gone(leg_id)
        self.recovery.forget(leg_id)  # its saved dialog is deleted
        leg = self._legs.pop(leg_id, None)
        if leg is None or leg.dropped or signal is None or leg.conference_id is None:
            return
        self._signal(leg.conference_id, signal)

    def _report(self, leg_id: str, signal: LegSignal) -> None:
        leg = self._legs.get(leg_id)
        if leg is not None and leg.conference_id is not None and not leg.dropped:
            self._signal(leg.conference_id, signal)

    def _signal(self, conference_id: str, signal: LegSignal) -> None:
        if self._sink is not None:
            self._sink(conference_id, signal)

    def _target(self, to: str) -> str:
        """`sip:alice@<our domain>` means the registered endpoint alice; other SIP URIs are dialed
        directly, bare usernames go to the registrar, E.164 numbers to the trunk."""
        if to.startswith("sip:") and "@" in to:
            user, _, host = to[4:].partition("@")
            if host.split(";", 1)[0] == self.settings.domain:
                return user
        return to

    def _kind_of(self, target: str) -> LegKind:
        if target in self.settings.endpoints:
            return LegKind.ENDPOINT
        return LegKind.TRUNK if E164.fullmatch(target) else LegKind.URI

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
