"""Outbound legs (the UAC side of RFC 3261 sections 13, 9 and 15): route a dial target, send the
INVITE, follow its responses, answer digest challenges once, and cancel or hang up.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .call_leg import CallLeg, LegState, failure_reason, local_codecs
from .dialog import Dialog, DialogError, DialogState, dialog_id_of
from .digest import DigestAuth
from .endpoint_core import ALLOW, EndpointCore, uri_address
from .events import FailReason, LegAnswered, LegFailed, LegRinging, LegTrying, TargetLookupNeeded
from .headers import NameAddress
from .locate import numeric_host
from .message import Request, Response, make_cancel, make_request, new_call_id, new_tag
from .offer_answer import MediaParams, NegotiationError, read_answer
from .redirect import FOLLOWED_STATUSES, redirect_targets, target_key
from .registrar import Binding
from .sdp import SdpParseError, SessionDescription, parse_sdp
from .syntax import Params, SipParseError, quotable
from .transaction import Destination, same_destination
from .uri import URI, SipURI, parse_dial_uri

_E164_RE: Final = re.compile(r"\+?[0-9]{2,20}")
_CALLER_ID_RE: Final = re.compile(r"[A-Za-z0-9+._~-]{1,64}")
MAX_AUTH_ROUNDS: Final = 2  # answer a challenge once, and once more only if the nonce went stale


def is_trunk_number(target: str) -> bool:
    """Whether `dial` sends target to the trunk (when there is one and no account has that name)."""
    return _E164_RE.fullmatch(target) is not None


@dataclass(frozen=True, slots=True)
class Route:
    """Where a dial target goes: Request-URI, To, the first hop, our From host, credentials, and
    the Route set preloaded for it (a registration's Path, RFC 3327)."""

    request_uri: SipURI
    to_uri: SipURI
    destination: Destination
    from_host: str
    auth: DigestAuth | None
    routes: tuple[NameAddress, ...] = ()


class Outbound:
    def __init__(self, core: EndpointCore) -> None:
        self.core = core

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
        core = self.core
        if leg_id in core.legs:
            raise ValueError(f"leg {leg_id!r} already exists")
        trunk = core.config.trunk
        user = caller_id or (trunk.from_user if trunk else core.config.contact_user)
        if not _CALLER_ID_RE.fullmatch(user):
            raise ValueError(f"caller id {user!r} is not usable as a SIP user part")
        route = self._route(target, now, stored)
        if isinstance(route, LegFailed):
            core.emit(LegFailed(leg_id, route.status, route.reason))
            return
        tag = new_tag(core.rng)
        from_addr = NameAddress(SipURI(route.from_host, user=user), caller_name, Params([("tag", tag)]))
        destination = destinations[0] if destinations else route.destination
        invite = make_request(
            "INVITE",
            route.request_uri,
            via=core.via(destination),
            from_addr=from_addr,
            to_addr=NameAddress(route.to_uri),
            call_id=new_call_id(core.rng, core.sent_by[0]),
            cseq=1,
            contact=core.contact_for(destination),
            routes=route.routes,
            headers=[
                *core.ua_headers(),
                ("Allow", ALLOW),
                *core.supported_headers(),  # 100rel, timer (reliable_provisional, session_timer)
                *core.session_timers.invite_headers(),
                ("Content-Type", "application/sdp"),
            ],
            body=bytes(offer_sdp),
        )
        key = core.tl.send_request(invite, destination, now)
        leg = CallLeg(leg_id, True, invite, key, destination, tag, LegState.CALLING, offer_sdp)
        leg.failover = list(destinations[1:])
        if trunk is not None and same_destination(route.destination, trunk.proxy):
            leg.trunk_targets = tuple(destinations)
        leg.auth = route.auth
        leg.codecs = local_codecs(offer_sdp)
        if isinstance(route.request_uri, SipURI):
            leg.tried_targets.add(target_key(route.request_uri))
        core.legs[leg_id] = leg
        core.track(leg, key)
        self._arm_no_response(leg, now)

    def _route(self, target: SipURI | str, now: float, stored: Binding | None = None) -> Route | LegFailed:
        """A SipURI (or "sip:..." text) is called directly; an account name goes to its registered
        contact (here, else `stored`: one another node took, from the shared store); a number goes
        to the trunk. Account names win over numbers ("1001")."""
        core, trunk, domain = self.core, self.core.config.trunk, self.core.config.domain
        if isinstance(target, str) and target.lower().startswith(("sip:", "sips:")):
            try:
                target = parse_dial_uri(target)  # its user part percent-encoded for the wire
            except SipParseError:
                return LegFailed("", 416, FailReason.FAILED)
        if isinstance(target, SipURI):
            destination = uri_address(target)
            if destination is None:
                return LegFailed("", 416, FailReason.FAILED)  # an unknown transport (sctp, ws...)
            return Route(target, target, destination, domain, None)
        if target in core.config.accounts:
            binding = core.registrar.lookup_binding(target, now) or stored
            destination = None
            if binding is not None and binding.path:  # through the proxy it registered through
                destination = uri_address(binding.path[0].uri)
            elif binding is not None:
                # A phone registered over TCP/TLS is reached over its own connection only.
                destination = binding.flow or uri_address(binding.target)
            if binding is None or destination is None:
                return LegFailed("", 480, FailReason.UNREACHABLE)
            to_uri = SipURI(domain, user=target)
            return Route(binding.target, to_uri, destination, domain, None, binding.path)
        if trunk is not None and _E164_RE.fullmatch(target):
            uri = SipURI(trunk.domain, user=target)
            auth = None
            if trunk.username is not None and trunk.password is not None:
                auth = DigestAuth(trunk.username, trunk.password, core.rng)
            return Route(uri, uri, trunk.proxy, trunk.domain, auth)
        return LegFailed("", 404, FailReason.UNREACHABLE)

    def hangup(self, leg: CallLeg, now: float) -> None:
        """Before the answer: CANCEL, but only once a provisional has arrived (RFC 3261 9.1);
        until then the wish is remembered and acted on by `on_provisional`."""
        leg.hangup_requested = True
        if leg.lookup_pending is not None:  # no INVITE is out: nothing to cancel
            self.core.finish(leg, LegFailed(leg.leg_id, 487, FailReason.CANCELLED))
            return
        if leg.state is LegState.PROCEEDING:
            self._send_cancel(leg, now)

    def _send_cancel(self, leg: CallLeg, now: float) -> None:
        if leg.cancel_sent:
            return
        leg.cancel_sent = True
        self.core.send_request(leg, make_cancel(leg.invite), leg.peer, now)
        # 9.1: without a final response 64*T1 after the CANCEL, consider the INVITE cancelled.
        self.core.leg_deadlines.arm(leg, now + self.core.config.timers.timeout)

    def on_deadline(self, leg: CallLeg, now: float) -> None:
        if not leg.cancel_sent and not leg.hangup_requested and leg.state is LegState.CALLING:
            # The no-response wait of a server with another one left (`_arm_no_response`).
            self.core.tl.abandon(leg.invite_key)
            if not self._fail_over(leg, now, "no_response"):
                self.core.finish(leg, LegFailed(leg.leg_id, 408, FailReason.FAILED))
            return
        self.core.tl.abandon(leg.invite_key)
        self.core.finish(leg, LegFailed(leg.leg_id, 408, FailReason.CANCELLED))

    # --- responses to our INVITE --------------------------------------------------------------

    def on_provisional(self, leg: CallLeg, response: Response, now: float) -> None:
        if leg.state is LegState.CALLING:
            leg.state = LegState.PROCEEDING
            self._target_answered(leg)
        if leg.hangup_requested:
            self._send_cancel(leg, now)
            return  # progress no longer interests anyone
        if leg.state is not LegState.PROCEEDING:
            return
        if response.status == 100:
            if not leg.trying_seen:
                leg.trying_seen = True
                self.core.emit(LegTrying(leg.leg_id))
            return
        self.core.emit(LegRinging(leg.leg_id, response.status, self._early_media(leg, response)))

    def _early_media(self, leg: CallLeg, response: Response) -> MediaParams | None:
        if not response.body or response.content_type != "application/sdp" or leg.local_sdp is None:
            return None
        try:
            return read_answer(leg.local_sdp, parse_sdp(response.body))
        except (SdpParseError, NegotiationError):
            return None  # early media is a courtesy; the 2xx is what counts

    def on_final(self, leg: CallLeg, response: Response, now: float) -> None:
        status = response.status
        if status < 300:
            self._on_2xx(leg, response, now)
            return
        if leg.state not in (LegState.CALLING, LegState.PROCEEDING):
            return
        self._target_answered(leg)
        cancelled = leg.hangup_requested
        if status in (401, 407) and not cancelled and self._retry_with_credentials(leg, response, now):
            return
        if status == 503 and self._fail_over(leg, now, "503"):
            return  # RFC 3263 4.3: the server is overloaded or down for maintenance
        # After a 3xx, and after any other failure of a redirected target while the 3xx left
        # others to try (sequential search, RFC 3261 16.6's spirit); a 6xx is global: stop.
        leg.last_status = status
        if not cancelled and status < 600:
            if status in FOLLOWED_STATUSES:
                self._collect_targets(leg, response)
            elif 300 <= status < 400:
                self.core.stats["redirects_not_followed"] += 1  # 305, 380, unknown 3xx
            if self._follow_next_target(leg, now):
                return
        self.core.finish(leg, LegFailed(leg.leg_id, status, failure_reason(status, cancelled=cancelled)))

    def _collect_targets(self, leg: CallLeg, response: Response) -> None:
        """Queue a 300/301/302's contacts that the policy lets us call, ahead of the targets an
        earlier 3xx left (the newest answer is about the target we just tried)."""
        core = self.core
        try:
            contacts = response.contacts
        except SipParseError:
            contacts = []
        found = redirect_targets(contacts, core.config.redirects, leg.tried_targets)
        core.stats["redirect_targets_refused"] += found.refused
        queued = {target_key(uri) for uri in found.usable}
        leg.redirect_queue = found.usable + [u for u in leg.redirect_queue if target_key(u) not in queued]

    def _follow_next_target(self, leg: CallLeg, now: float) -> bool:
        """Send the INVITE to the next queued target (RFC 3261 8.1.3.4: same Call-ID, From and To,
        CSeq + 1, a new transaction); False when none is left or the leg's budget is spent."""
        core = self.core
        while leg.redirect_queue:
            if leg.redirects >= core.config.redirects.max_redirects:
                core.stats["redirect_limit_reached"] += 1
                leg.redirect_queue.clear()
                return False
            target = leg.redirect_queue.pop(0)
            destinations, to_trunk = self._redirect_destinations(leg, target)
            key = target_key(target)
            lookup = not destinations and _named(target) and not to_trunk
            if (not destinations and not lookup) or key in leg.tried_targets:
                if not destinations:
                    core.stats["redirect_targets_unresolved"] += 1
                continue
            leg.tried_targets.add(key)
            leg.redirects += 1
            core.stats["redirects_followed"] += 1
            if not to_trunk:
                leg.auth = None  # the trunk's credentials are for the trunk only
            if lookup:
                # The endpoint does no DNS: the carrier looks the name up and resumes the leg.
                core.by_txn.pop(leg.invite_key, None)  # the 3xx's transaction ends on its own
                leg.keys.discard(leg.invite_key)
                leg.lookup_pending = target
                leg.state = LegState.CALLING
                core.emit(TargetLookupNeeded(leg.leg_id, target))
                return True
            leg.failover = destinations[1:]
            self._send_again(leg, target, destinations[0], now)
            return True
        return False

    def resume_redirect(self, leg: CallLeg, destinations: Sequence[Destination], now: float) -> None:
        """The servers of the named 3xx target `leg` waits for (`TargetLookupNeeded`)."""
        target, leg.lookup_pending = leg.lookup_pending, None
        if target is None:
            return  # not waiting (a late or repeated answer)
        if destinations:
            leg.failover = list(destinations[1:])
            self._send_again(leg, target, destinations[0], now)
            return
        self.core.stats["redirect_targets_unresolved"] += 1
        if not self._follow_next_target(leg, now):
            status = leg.last_status
            self.core.finish(leg, LegFailed(leg.leg_id, status, failure_reason(status, cancelled=False)))

    def _redirect_destinations(self, leg: CallLeg, target: SipURI) -> tuple[list[Destination], bool]:
        """Where a 3xx target is sent, and whether that is the trunk. The trunk's domain (without a
        port) is reached through its proxy, as in `_route` (through the servers located for this
        dial when the proxy is a host name); anything else at its own host and port when that is an
        IP address. No destination for a name: the endpoint does no DNS, so `_follow_next_target` asks the
        carrier to look it up (`TargetLookupNeeded`)."""
        trunk = self.core.config.trunk
        if trunk is not None and target.port is None and target.host.lower() == trunk.domain.lower():
            if leg.trunk_targets:
                return list(leg.trunk_targets), True
            if numeric_host(trunk.proxy[0]) is not None:
                return [trunk.proxy], True
            return [], True
        destination = uri_address(target)
        if destination is None or numeric_host(destination[0]) is None:
            return [], False
        return [destination], trunk is not None and same_destination(destination, trunk.proxy)

    def _send_again(self, leg: CallLeg, uri: URI, destination: Destination, now: float) -> None:
        """The leg's INVITE for uri as a new transaction to destination (its Via and Contact
        for that transport); the old transaction finishes on its own (or was abandoned).
        Challenges are answered afresh: a nonce belongs to its server."""
        core = self.core
        core.by_txn.pop(leg.invite_key, None)
        leg.keys.discard(leg.invite_key)
        leg.auth_rounds = 0
        leg.invite = self._redirected_invite(leg.invite, uri, destination)
        leg.peer = destination
        leg.invite_key = core.send_request(leg, leg.invite, destination, now)
        leg.state = LegState.CALLING
        self._arm_no_response(leg, now)

    # --- failover (RFC 3263 4.3) --------------------------------------------------------------

    def _fail_over(self, leg: CallLeg, now: float, why: str) -> bool:
        """Send the INVITE to the next server of the same Request-URI (a new transaction: new
        branch, CSeq + 1, same Call-ID, From and To). False when none is left, the leg's budget is
        spent, or we are hanging up anyway."""
        core = self.core
        if leg.hangup_requested or not leg.failover:
            return False
        if leg.failovers >= core.config.failover.max_failovers:
            core.stats["failover_limit_reached"] += 1
            leg.failover.clear()
            return False
        destination = leg.failover.pop(0)
        leg.failovers += 1
        core.stats["failovers"] += 1
        core.stats[f"failovers.{why}"] += 1
        self._send_again(leg, leg.invite.uri, destination, now)
        return True

    def _arm_no_response(self, leg: CallLeg, now: float) -> None:
        """With another server left, give this one `no_response_s` to answer anything."""
        wait = self.core.config.failover.no_response_s
        if wait is not None and leg.failover and not leg.cancel_sent:
            self.core.leg_deadlines.arm(leg, now + wait)

    def _target_answered(self, leg: CallLeg) -> None:
        if not leg.cancel_sent and leg.deadline is not None:
            self.core.leg_deadlines.arm(leg, None)  # it is alive: Timer B and the ring timeout rule

    def on_transport_error(self, leg: CallLeg, now: float) -> None:
        """The INVITE could not be delivered, and its transaction has ended: a UDP send the OS
        refused, a TCP/TLS connection refused or failing its TLS handshake, or (a phone's
        registration flow) closed. RFC 3261 8.1.3.1: as if a 503 came back, so a server that never
        answered is left for the next one (RFC 3263 4.3); otherwise the leg fails at once."""
        if leg.state is LegState.CALLING and self._fail_over(leg, now, "transport_error"):
            return
        self.core.stats["transport_failures"] += 1
        reason = FailReason.CANCELLED if leg.hangup_requested else FailReason.UNREACHABLE
        self.core.finish(leg, LegFailed(leg.leg_id, 503, reason))

    def _redirected_invite(self, previous: Request, target: URI, destination: Destination) -> Request:
        headers = previous.headers.copy()
        headers.remove("Authorization")  # answers to the previous target's challenges
        headers.remove("Proxy-Authorization")
        headers.set("CSeq", f"{previous.cseq.seq + 1} INVITE")
        headers.set("Via", str(self.core.via(destination)))
        headers.set("Contact", str(self.core.contact_for(destination)))
        return Request("INVITE", target, headers, previous.body)

    def _retry_with_credentials(self, leg: CallLeg, response: Response, now: float) -> bool:
        """RFC 3261 22.2: the same INVITE with credentials, CSeq + 1 and a new branch."""
        if leg.auth is None or leg.auth_rounds >= MAX_AUTH_ROUNDS:
            return False
        retry = leg.auth.authorize(leg.invite, response)
        if retry is None:
            return False
        leg.auth_rounds += 1
        self.core.by_txn.pop(leg.invite_key, None)  # the old transaction finishes on its own
        leg.keys.discard(leg.invite_key)
        leg.invite = retry
        leg.invite_key = self.core.send_request(leg, retry, leg.peer, now)
        leg.state = LegState.CALLING
        return True

    def _on_2xx(self, leg: CallLeg, response: Response, now: float) -> None:
        core = self.core
        if leg.dialog is not None:
            if dialog_id_of(response) == leg.dialog.id:
                if leg.ack is not None:
                    core.tl.send_stateless(*leg.ack)  # our ACK was lost: the 2xx is retransmitted
            else:
                self._refuse_fork(leg, response, now)
            return
        dialog = _uac_dialog(leg, response, core.contact_for(leg.peer))
        if dialog is None:
            return  # no To tag: unusable; Timer M ends the transaction and `on_invite_gone` the leg
        dialog.local_seq = max(dialog.local_seq, leg.early_local_seq)  # after our PRACKs (RFC 3262)
        core.set_dialog(leg, dialog)
        core.track_dialog(leg, dialog.id)
        core.leg_deadlines.arm(leg, None)
        core.send_ack(leg, dialog)
        if leg.hangup_requested:
            # The CANCEL lost the race with the 2xx (RFC 3261 9.1, 15): ACK it and end with BYE.
            core.send_bye(leg, LegFailed(leg.leg_id, 487, FailReason.CANCELLED), now)
            return
        try:
            if not response.body and leg.reliable_answer is not None:
                answer = leg.reliable_answer  # given in a PRACKed 18x (RFC 3262 5)
            elif response.content_type != "application/sdp":
                raise NegotiationError("2xx without an SDP answer")
            else:
                answer = parse_sdp(response.body)
            media = read_answer(leg.local_sdp, answer) if leg.local_sdp is not None else None
            if media is None:
                raise NegotiationError("no local offer")
        except (SdpParseError, NegotiationError) as exc:
            core.stats["bad_answers"] += 1
            # RFC 3326: tell the peer why (e.g. that our offer required SRTP keys it did not give).
            reason = f'SIP;cause=488;text="{quotable(str(exc))}"'
            core.send_bye(leg, LegFailed(leg.leg_id, 488, FailReason.FAILED), now, reason=reason)
            return
        leg.state = LegState.CONFIRMED
        leg.media, leg.srtp = media, media.srtp
        core.emit(LegAnswered(leg.leg_id, media, answer))

    def _refuse_fork(self, leg: CallLeg, response: Response, now: float) -> None:
        """A 2xx from a second forked branch (RFC 3261 13.2.2.4): ACK it, then BYE it. The BYE is
        fire-and-forget; nothing maps its transaction back to the leg."""
        core = self.core
        dialog = _uac_dialog(leg, response, core.contact_for(leg.peer))
        if dialog is None:
            return
        core.stats["forked_2xx_refused"] += 1
        destination = leg.peer
        if dialog.route_set and (first := uri_address(dialog.route_set[0].uri)) is not None:
            destination = first
        ack = dialog.create_ack(leg.invite.cseq.seq, via=core.via(destination), headers=core.ua_headers())
        core.tl.send_stateless(ack, destination)
        bye = dialog.create_request("BYE", via=core.via(destination), headers=core.ua_headers())
        core.tl.send_request(bye, destination, now)

    def on_timeout(self, leg: CallLeg, now: float) -> None:
        """Timer B: nobody answered the INVITE at all; the next server if there is one."""
        if self._fail_over(leg, now, "timeout"):
            return
        reason = FailReason.CANCELLED if leg.hangup_requested else FailReason.FAILED
        self.core.finish(leg, LegFailed(leg.leg_id, 408, reason))

    def on_invite_gone(self, leg: CallLeg) -> None:
        """The INVITE transaction ended without an outcome we could use (a 2xx without To tag)."""
        if leg.state in (LegState.CALLING, LegState.PROCEEDING):
            self.core.finish(leg, LegFailed(leg.leg_id, 502, FailReason.FAILED))


def _named(uri: SipURI) -> bool:
    """A URI whose host is a name, not an IP address."""
    return numeric_host(uri.host) is None


def _uac_dialog(leg: CallLeg, response: Response, contact: NameAddress) -> Dialog | None:
    """The dialog a 2xx creates; a 2xx without Contact still gets one (targeting the Request-URI)
    so it can be ACKed and hung up properly."""
    try:
        return Dialog.from_uac(leg.invite, response, local_contact=contact)
    except (DialogError, SipParseError):
        pass
    try:
        routes = list(reversed(response.record_routes))
    except SipParseError:
        routes = []
    try:
        return Dialog(
            call_id=leg.invite.call_id,
            local=leg.invite.from_addr,
            remote=response.to_addr,
            remote_target=leg.invite.uri,
            route_set=routes,
            local_seq=leg.invite.cseq.seq,
            remote_seq=None,
            state=DialogState.CONFIRMED,
            local_contact=contact,
        )
    except DialogError:
        return None
