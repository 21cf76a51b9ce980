"""`SipEndpoint`: the sans-I/O SIP user agent of the call server (RFC 3261 UAC + UAS + registrar).

Driven like aioquic's connection: feed it `receive_datagram(data, addr, now)` (a UDP datagram,
or a whole message framed from a TCP/TLS stream with its source a `Target`) and
`handle_timer(now)`, call its commands, then drain `datagrams_to_send()` to the sockets (a plain
address is UDP, a `Target` names its connection) and `next_event()` to the application, and
sleep until `get_timer()`. The socket shell reports `transport_failed` and `stream_error`. It
owns no socket, clock, thread or global randomness; media ports are chosen by the caller and
only appear in SDP.

Commands: `dial`, `hangup`, `answer_incoming`, `ring_incoming`, `reject_incoming`, `lookup`.
Events: see `events`. Malformed input never raises: it is answered (400 when possible) or
dropped, and counted in `stats`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from random import Random

from .call_leg import LegState
from .dialog import DialogId
from .endpoint_core import ACCEPT, ALLOW, EndpointCore
from .events import EndpointConfig, EndpointEvent, EndReason, LegEnded
from .in_dialog import InDialog
from .inbound import Inbound
from .keepalive import TrunkKeepalive
from .malformed import bad_request, bad_stream_request
from .message import MAX_MESSAGE_SIZE, Method, is_keepalive, new_tag
from .option_tags import unsupported_tags
from .outbound import Outbound
from .recovery import RECOVERY_TIMER, Recoveries
from .registrar import Binding
from .reliable_provisional import PRACK_TIMER, ReliableProvisionals
from .saved_dialog import SavedDialog
from .sdp import SessionDescription
from .session_timer import Refusal, SessionTimers
from .stream_framing import FramingError
from .transaction import (
    AckReceived,
    Destination,
    Event,
    FinalReceived,
    MessageDiscarded,
    ProvisionalReceived,
    RequestReceived,
    StrayResponse,
    Terminated,
    TimedOut,
    address_of,
)
from .uri import SipURI

_KNOWN_METHODS = frozenset(m.value for m in Method)
_NO_DIALOG_METHODS = frozenset({"BYE", "INFO", "UPDATE", "PRACK", "REFER"})  # only make sense in a dialog


class SipEndpoint:
    def __init__(self, config: EndpointConfig, rng: Random) -> None:
        self._core = core = EndpointCore(config, rng)
        core.reliable = ReliableProvisionals(core)
        core.session_timers = SessionTimers(core)
        core.recoveries = Recoveries(core)
        self._outbound = Outbound(core)
        self._inbound = Inbound(core)
        self._in_dialog = InDialog(core, self._inbound.answer)
        self._keepalive = TrunkKeepalive(core)  # OPTIONS pings of the trunk proxy, when configured
        self.last_error: str | None = None  # repr of the last internal error, for diagnosis

    @property
    def config(self) -> EndpointConfig:
        return self._core.config

    @property
    def stats(self) -> Counter[str]:
        """received, keepalives, parse_errors, oversized, requests, responses, stray_responses,
        bad_requests (answered 400 after a semantic error), malformed_answered (400 salvaged from
        an unparseable datagram), responses_sent, responses_sent.<status>, internal_errors..."""
        return self._core.stats

    @property
    def responses_sent_by_status(self) -> dict[int, int]:
        prefix = "responses_sent."
        return {int(k[len(prefix) :]): v for k, v in self._core.stats.items() if k.startswith(prefix)}

    # --- outputs ------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Destination]]:
        return self._core.tl.datagrams_to_send()

    def next_event(self) -> EndpointEvent | None:
        return self._core.events.popleft() if self._core.events else None

    def get_timer(self) -> float | None:
        core = self._core
        best = core.tl.get_timer()  # asked after every datagram: heaps, no scans on this path
        for deadline in (
            core.leg_deadlines.get_timer(),
            core.ext_deadlines.get_timer(),
            core.registrar.next_expiry(),
            core.auth.next_expiry(),
            self._keepalive.get_timer(),
        ):
            if deadline is not None and (best is None or deadline < best):
                best = deadline
        return best

    # --- inputs -------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Destination, now: float) -> None:
        stats = self._core.stats
        stats["received"] += 1
        if len(data) > MAX_MESSAGE_SIZE:
            stats["oversized"] += 1  # RFC 3261 18.1.1: 513 is for what we could not take; UDP drops
            return
        if is_keepalive(data):
            stats["keepalives"] += 1
            return
        try:
            self._core.tl.receive_datagram(data, addr, now)
            self._pump(now, data, addr)
        except Exception as exc:  # the last line of defence: one bad datagram must not kill the loop
            self._internal_error(exc)

    def handle_timer(self, now: float) -> None:
        core = self._core
        try:
            core.tl.handle_timer(now)
            self._pump(now)
            while (leg := core.leg_deadlines.pop_due(now)) is not None:
                if leg.outbound:
                    self._outbound.on_deadline(leg, now)
                else:
                    self._inbound.on_deadline(leg, now)
            while (due := core.ext_deadlines.pop_due(now)) is not None:
                leg, kind = due
                if core.legs.get(leg.leg_id) is not leg:
                    continue
                if kind == PRACK_TIMER:
                    core.reliable.on_timer(leg, now)
                elif kind == RECOVERY_TIMER:
                    core.recoveries.on_timer(leg, now)
                else:
                    core.session_timers.on_timer(leg, now)
            for event in core.registrar.expire(now):
                core.emit(event)
            core.auth.expire(now)
            self._keepalive.handle_timer(now)
            self._pump(now)
        except Exception as exc:
            self._internal_error(exc)

    def transport_failed(self, destination: Destination, now: float) -> None:
        """What was sent to `destination` could not be delivered (RFC 3261 17.1.4, 18.4: a UDP
        send refused by the OS; TCP/TLS: connection refused, TLS handshake failed, a registration
        flow gone): its transactions end, and a dial there moves on to its next server (RFC 3263
        4.3) or fails with 503 (8.1.3.1) at once instead of waiting for Timer B."""
        try:
            self._core.tl.transport_failed(destination, now)
            self._pump(now)
        except Exception as exc:
            self._internal_error(exc)

    def stream_error(self, error: FramingError, source: Destination, now: float) -> None:
        """A TCP/TLS stream could not be framed (the shell closes the connection): counted, and a
        request whose head was read is answered 400 with the reason."""
        stats = self._core.stats
        stats["stream_errors"] += 1
        stats[f"stream_{error.kind.value}"] += 1
        if error.head is None:
            return
        answer = bad_stream_request(error.head, error.reason, source, new_tag(self._core.rng))
        if answer is not None:
            stats["responses_sent"] += 1
            stats[f"responses_sent.{answer[0].status}"] += 1
            self._core.tl.send_stateless(*answer)

    def _internal_error(self, exc: Exception) -> None:
        self._core.stats["internal_errors"] += 1
        self.last_error = repr(exc)

    # --- commands -----------------------------------------------------------------------------

    def dial(
        self,
        leg_id: str,
        target: SipURI | str,
        *,
        caller_id: str | None,
        offer_sdp: SessionDescription,
        now: float,
        caller_name: str | None = None,
        destinations: Sequence[Destination] = (),
        stored: Binding | None = None,
    ) -> None:
        """Call target: a SipURI (direct), a registered account name, or an E.164 number (via the
        trunk). The outcome arrives as events. Raises ValueError for a leg id in use or a caller
        id that cannot be a SIP user part. `stored`: the account's binding as another node keeps
        it (shared registrations), used when it has none registered here.

        `destinations`: the servers located for the target (RFC 3263, done by the caller: the
        endpoint does no DNS), best first; the INVITE goes to the first and fails over to the
        next (`EndpointConfig.failover`). Empty: the target's own address, or the trunk's proxy."""
        self._outbound.dial(
            leg_id,
            target,
            caller_id=caller_id,
            offer_sdp=offer_sdp,
            now=now,
            caller_name=caller_name,
            destinations=destinations,
            stored=stored,
        )
        self._pump(now)

    def resume_redirect(self, leg_id: str, destinations: Sequence[Destination], now: float) -> None:
        """Answer a `TargetLookupNeeded`: the servers found for the redirect target, best first
        (empty: none). Ignored for a leg that is gone or not waiting."""
        leg = self._core.legs.get(leg_id)
        if leg is None or not leg.outbound:
            return
        try:
            self._outbound.resume_redirect(leg, destinations, now)
            self._pump(now)
        except Exception as exc:
            self._internal_error(exc)

    def hangup(self, leg_id: str, now: float) -> bool:
        """End a leg: CANCEL (outbound, unanswered), 480 (inbound, unanswered) or BYE. False for
        a leg that is unknown or already ending; its terminal event is on its way."""
        core = self._core
        leg = core.legs.get(leg_id)
        if leg is None or leg.state is LegState.TERMINATING or leg.hangup_requested:
            return False
        if leg.state in (LegState.CALLING, LegState.PROCEEDING):
            self._outbound.hangup(leg, now)
        elif leg.state is LegState.INCOMING:
            self._inbound.reject(leg, 480, now)
        else:
            core.send_bye(leg, LegEnded(leg_id, EndReason.LOCAL), now)
        self._pump(now)
        return True

    def forget(self, leg_id: str) -> bool:
        """Drop a leg without a word to its peer (no BYE, no event): another node took its call over.
        False for a leg that is unknown."""
        core = self._core
        leg = core.legs.get(leg_id)
        if leg is None:
            return False
        for key in list(leg.keys):
            core.tl.abandon(key)  # nothing more goes out for it: the new owner speaks for the call
        core.drop(leg)
        return True

    def answer_incoming(self, leg_id: str, answer_sdp: SessionDescription, now: float) -> bool:
        """200 OK with answer_sdp. False if the call is gone (cancelled meanwhile) or answered."""
        leg = self._core.legs.get(leg_id)
        done = leg is not None and not leg.outbound and self._inbound.answer(leg, answer_sdp, now)
        self._pump(now)
        return done

    def ring_incoming(self, leg_id: str, now: float, early_sdp: SessionDescription | None = None) -> bool:
        """180 Ringing, or 183 Session Progress when early_sdp is given."""
        leg = self._core.legs.get(leg_id)
        done = leg is not None and not leg.outbound and self._inbound.ring(leg, now, early_sdp)
        self._pump(now)
        return done

    def reject_incoming(
        self, leg_id: str, status: int, now: float, headers: Iterable[tuple[str, str]] = ()
    ) -> bool:
        """Refuse an inbound call with a 3xx-6xx status (and extra headers, e.g. Retry-After);
        LegEnded(leg_id, "local") follows."""
        if not 300 <= status <= 699:
            raise ValueError(f"cannot reject with {status}")
        leg = self._core.legs.get(leg_id)
        done = leg is not None and not leg.outbound and self._inbound.reject(leg, status, now, headers)
        self._pump(now)
        return done

    def answer_refer(self, leg_id: str, status: int, now: float, reason: str | None = None) -> bool:
        """Answer a `TransferRequested`: 202 (then NOTIFY "100 Trying") or a 3xx-6xx refusal with
        `reason` as its phrase. False if the leg or its REFER is gone."""
        done = self._in_dialog.refer.answer(leg_id, status, reason, now)
        self._pump(now)
        return done

    def notify_refer(
        self, leg_id: str, status: int, now: float, reason: str | None = None, *, final: bool = True
    ) -> bool:
        """Report an accepted transfer's progress to the referrer (NOTIFY, message/sipfrag)."""
        done = self._in_dialog.refer.notify(leg_id, status, reason, now, final=final)
        self._pump(now)
        return done

    def set_trunk_servers(self, servers: Sequence[Destination], now: float) -> None:
        """The servers located (RFC 3263) for a trunk proxy named by host: where its OPTIONS
        keepalive goes (keepalive.py), and the hosts whose INVITEs are the trunk's. An empty list
        (the name did not resolve) keeps the hosts last located trusted."""
        self._keepalive.set_servers(servers, now)
        if servers:
            self._core.trunk_hosts = frozenset(address_of(dest)[0] for dest in servers)

    @property
    def trunk_up(self) -> bool:
        """False once the trunk missed `keepalive_down_after` OPTIONS pings in a row (keepalive.py)."""
        return self._keepalive.up

    # --- recovery (recovery.py, saved_dialog.py) --------------------------------------------------

    def recover(self, leg_id: str, saved: SavedDialog, offer_sdp: SessionDescription, now: float) -> None:
        """Take back a saved answered leg: its dialog, and a re-INVITE offering `offer_sdp` (see
        `saved_dialog.recovery_offer`). `LegRecovered` or `LegEnded(RECOVERY_FAILED)` follows.
        Raises ValueError for a leg id in use or a dialog already live here."""
        self._core.recoveries.recover(leg_id, saved, offer_sdp, now)
        self._pump(now)

    def expect_recoveries(self, dialog_ids: Iterable[DialogId], now: float) -> None:
        """Saved dialogs that may be recovered here soon: until then (at most one transaction
        timeout, 64*T1) their requests are held unanswered instead of getting 481."""
        self._core.recoveries.expect(dialog_ids, now + self._core.config.timers.timeout)

    def forget_recoveries(self, dialog_ids: Iterable[DialogId]) -> None:
        """These saved dialogs will not be recovered here: 481 for their requests from now on."""
        self._core.recoveries.forget(dialog_ids)

    def saved_dialog(self, leg_id: str) -> SavedDialog | None:
        """The leg's dialog as a plain value, once it is confirmed with a session; else None."""
        leg = self._core.legs.get(leg_id)
        return None if leg is None else self._core.recoveries.export(leg)

    def take_changed_dialogs(self) -> list[str]:
        """Legs whose `saved_dialog` may have changed since the last call (answered, CSeq, target,
        route set or session); each is listed once however many changes it had."""
        changed = [leg_id for leg_id in self._core.changed if leg_id in self._core.legs]
        self._core.changed.clear()
        return changed

    def lookup(self, username: str, now: float) -> SipURI | None:
        """The URI an account is reachable at now (its freshest registration), or None."""
        return self._core.registrar.lookup(username, now)

    def state_sizes(self) -> dict[str, int]:
        """How much the endpoint remembers; all zero when idle (monitoring and leak tests)."""
        core = self._core
        return {
            "legs": len(core.legs),
            "transactions_by_leg": len(core.by_txn),
            "dialogs": len(core.by_dialog),
            "transactions": len(core.tl),
            "bindings": len(core.registrar),
            "nonces": len(core.auth),
            "extension_timers": len(core.ext_deadlines),
            "expected_recoveries": core.recoveries.expected(),
            "changed_dialogs": len(core.changed),
            "keepalive_pings": self._keepalive.sizes(),
        }

    # --- transaction-layer events ---------------------------------------------------------------

    def _pump(self, now: float, data: bytes | None = None, source: Destination | None = None) -> None:
        while (event := self._core.tl.next_event()) is not None:
            self._dispatch(event, now, data, source)

    def _dispatch(self, event: Event, now: float, data: bytes | None, source: Destination | None) -> None:
        core = self._core
        if isinstance(event, ProvisionalReceived | FinalReceived | TimedOut | Terminated) and (
            self._keepalive.owns(event.key)
        ):
            self._keepalive.on_event(event)
            return
        if isinstance(event, RequestReceived):
            core.stats["requests"] += 1
            self._on_request(event, now)
        elif isinstance(event, ProvisionalReceived | FinalReceived):
            core.stats["responses"] += 1
            self._on_response(event, now)
        elif isinstance(event, AckReceived):
            self._in_dialog.on_ack(event.request, now)
        elif isinstance(event, TimedOut):
            self._on_timeout(event, now)
        elif isinstance(event, Terminated):
            self._on_terminated(event)
        elif isinstance(event, StrayResponse):
            core.stats["stray_responses"] += 1
        elif isinstance(event, MessageDiscarded):
            core.stats["parse_errors"] += 1
            if data is not None and source is not None:
                answer = bad_request(data, source, new_tag(core.rng))
                if answer is not None:
                    core.stats["malformed_answered"] += 1
                    core.stats["responses_sent"] += 1
                    core.stats[f"responses_sent.{answer[0].status}"] += 1
                    core.tl.send_stateless(*answer)

    def _on_request(self, event: RequestReceived, now: float) -> None:
        core, request = self._core, event.request
        method = request.method
        try:
            if method == "CANCEL":
                self._inbound.on_cancel(event, now)
            elif unknown := unsupported_tags(request, core.supported):
                # RFC 3261 8.2.2.3: an extension we do not implement (or have switched off).
                core.respond(request, 420, now, headers=[("Unsupported", ", ".join(unknown))])
            elif request.to_addr.tag is not None:
                self._in_dialog.on_request(event, now)
            elif not isinstance(request.uri, SipURI):
                core.respond(request, 416, now)
            elif method == "INVITE":
                self._on_invite(event, now)
            elif method == "REGISTER":
                self._inbound.on_register(event, now)
            elif method == "OPTIONS":
                core.respond(request, 200, now, headers=[("Allow", ALLOW), ("Accept", ACCEPT)])
            elif method in _NO_DIALOG_METHODS:
                core.respond(request, 481, now)
            elif method in _KNOWN_METHODS:
                core.respond(request, 405, now, headers=[("Allow", ALLOW)])
            else:
                core.respond(request, 501, now, headers=[("Allow", ALLOW)])
        except ValueError as exc:  # SipParseError, DialogError, SdpParseError...: a bad request
            core.stats["bad_requests"] += 1
            self.last_error = repr(exc)
            core.respond(request, 400, now)

    def _on_invite(self, event: RequestReceived, now: float) -> None:
        """A new INVITE: its session timer values are checked first (RFC 4028 8.1: 422 or 400)."""
        core = self._core
        agreement = core.session_timers.negotiate(event.request)
        if isinstance(agreement, Refusal):
            core.stats["session_timer_refusals"] += 1
            status, reason = agreement.status, agreement.reason
            core.respond(event.request, status, now, headers=agreement.headers, reason=reason)
            return
        self._inbound.on_invite(event, now)
        leg = core.leg_for_key(event.key)
        if leg is not None and leg.invite is event.request:
            leg.session_agreement = agreement
            core.reliable.start_uas(leg)

    def _on_response(self, event: ProvisionalReceived | FinalReceived, now: float) -> None:
        core = self._core
        leg = core.leg_for_key(event.key)
        response = event.response
        if leg is not None and core.session_timers.owns(leg, event.key):
            core.session_timers.on_response(leg, response, now)
            return
        if leg is not None and core.recoveries.owns(leg, event.key):
            core.recoveries.on_response(leg, response, now)
            return
        if leg is None or not leg.outbound or event.key != leg.invite_key:
            # A BYE finishing, or a CANCEL's answer (the INVITE gets its own final response).
            if leg is not None and response.status >= 200 and response.cseq.method == "BYE":
                self._core.finish(leg, leg.outcome or LegEnded(leg.leg_id, EndReason.LOCAL))
            return
        if isinstance(event, ProvisionalReceived):
            if core.reliable.on_provisional(leg, response, now):
                self._outbound.on_provisional(leg, response, now)
            return
        if response.status == 422 and core.session_timers.retry_too_small(leg, response, now):
            return
        was_confirmed = leg.state is LegState.CONFIRMED
        self._outbound.on_final(leg, response, now)
        if not was_confirmed and leg.state is LegState.CONFIRMED and response.status < 300:
            core.session_timers.start_outbound(leg, response, now)

    def _on_timeout(self, event: TimedOut, now: float) -> None:
        leg = self._core.leg_for_key(event.key)
        if leg is None:
            return
        if self._core.session_timers.owns(leg, event.key):
            self._core.session_timers.on_timeout(leg, now)  # RFC 4028 10: our refresh went unanswered
        elif self._core.recoveries.owns(leg, event.key) and leg.media is None:
            self._core.recoveries.on_timeout(leg, now)  # Timer B or a transport error: the peer is gone
        elif event.timer == "B" and event.key == leg.invite_key:
            self._outbound.on_timeout(leg, now)
        elif event.timer == "transport" and event.key == leg.invite_key and leg.outbound:
            self._outbound.on_transport_error(leg, now)
        elif event.timer in ("F", "transport") and leg.state is LegState.TERMINATING:
            self._core.finish(leg, leg.outcome or LegEnded(leg.leg_id, EndReason.LOCAL))
        elif event.timer == "L" and leg.state is LegState.CONFIRMED:
            # Our 2xx (to an INVITE or re-INVITE) was never ACKed: RFC 3261 13.3.1.4 says to end
            # the session with a BYE.
            self._core.send_bye(leg, LegEnded(leg.leg_id, EndReason.TIMEOUT), now)

    def _on_terminated(self, event: Terminated) -> None:
        core = self._core
        leg = core.leg_for_key(event.key)
        core.by_txn.pop(event.key, None)
        if leg is None:
            return
        leg.keys.discard(event.key)
        if leg.outbound and event.key == leg.invite_key:
            self._outbound.on_invite_gone(leg)
