"""Inbound calls and registrations (the UAS side of RFC 3261 sections 13.3, 9.2 and 10.3):
authenticate an INVITE, hand it up, answer/ring/reject it on command, honour CANCEL; process
REGISTER with digest authentication.
"""

from __future__ import annotations

from collections.abc import Iterable

from .call_leg import CallLeg, LegState, local_codecs
from .dialog import Dialog, DialogError, DialogId
from .endpoint_core import ACCEPT, ALLOW, EndpointCore
from .events import EndReason, IncomingCall, LegEnded
from .message import Request, new_tag
from .offer_answer import agreed_keys, check_offer
from .sdes import SrtpParams
from .sdp import SdpParseError, SessionDescription, parse_sdp
from .syntax import SipParseError
from .transaction import RequestReceived
from .uri import SipURI, TelURI


class Inbound:
    def __init__(self, core: EndpointCore) -> None:
        self.core = core

    # --- INVITE outside a dialog ----------------------------------------------------------------

    def on_invite(self, event: RequestReceived, now: float) -> None:
        core, request = self.core, event.request
        allowed, account = self._authenticate(request, event, now)
        if not allowed:
            return
        # No body: a late offer (RFC 3261 13.2.1). Our offer goes in the 200, the answer in the ACK.
        offer: SessionDescription | None = None
        if request.body:
            if request.content_type != "application/sdp":
                core.respond(request, 415, now, headers=[("Accept", ACCEPT)])
                return
            try:
                offer = parse_sdp(request.body)
                check_offer(offer)
            except SdpParseError:
                core.respond(request, 400, now, reason="Bad Session Description")
                return
        # Liberal where RFC 3261 allows: an RFC 2543 caller sends no From tag (its dialog's remote
        # tag is then empty, 12.2.1.1), and an INVITE without Contact gets its From URI as the
        # remote target; in-dialog requests go to where the INVITE came from in any case.
        from_tag = request.from_addr.tag or ""
        try:
            if len(request.contacts) > 1:
                raise DialogError("an INVITE may carry one Contact")
            request.record_routes  # noqa: B018 - parsed now so the 200 cannot fail on it later
        except (SipParseError, DialogError):
            core.respond(request, 400, now, reason="Malformed Contact or Record-Route header")
            return
        leg_id = f"in-{core.rng.getrandbits(64):016x}"
        local_tag = new_tag(core.rng)
        leg = CallLeg(leg_id, False, request, event.key, event.source, local_tag, LegState.INCOMING)
        leg.account = account
        core.legs[leg_id] = leg
        core.leg_deadlines.arm(leg, now + core.config.incoming_timeout)
        core.track(leg, event.key)
        # Register the (early) dialog id now so a BYE that crosses our 180/200 finds the leg.
        core.track_dialog(leg, DialogId(request.call_id, local_tag, from_tag))
        core.respond(request, 100, now)
        to_uri, from_addr = request.to_addr.uri, request.from_addr
        core.emit(
            IncomingCall(
                leg_id,
                from_addr.uri,
                _dialed(request.uri) or _dialed(to_uri) or "",
                offer,
                from_display=from_addr.display_name,
                account=account,
                source=event.source,
            )
        )

    def _authenticate(self, request: Request, event: RequestReceived, now: float) -> tuple[bool, str | None]:
        """(True, account placing the call), (True, None) for the trusted trunk, or (False, None)
        when answered here with a 407 challenge or a 403. The trunk is trusted by source host:
        providers often send from other ports than the one we send to. A proxy named by host is
        trusted at the hosts of its located servers."""
        core, trunk = self.core, self.core.config.trunk
        if trunk is not None and (event.source[0] == trunk.proxy[0] or event.source[0] in core.trunk_hosts):
            return True, None
        if not core.config.accounts:
            core.respond(request, 403, now)
            return False, None
        result = core.auth.authenticate(request, "Proxy-Authorization", now)
        if result.username is not None:
            return True, result.username
        if result.offered and not result.stale:
            core.stats["auth_failures"] += 1
            core.respond(request, 403, now)
        else:
            challenge = core.auth.challenge(now, stale=result.stale)
            core.respond(request, 407, now, headers=[("Proxy-Authenticate", challenge)])
        return False, None

    # --- commands -----------------------------------------------------------------------------

    def ring(self, leg: CallLeg, now: float, early_sdp: SessionDescription | None) -> bool:
        if leg.state is not LegState.INCOMING:
            return False
        if leg.uas_reliable is not None:
            if not leg.invite.body:
                # RFC 3262 5: the first reliable answer to an offerless INVITE must carry our
                # offer; we keep the offer for the 200, so such a caller hears no 180 (100 only).
                return True
            headers = self._contact(leg)
            body = b""
            if early_sdp is not None:
                headers.append(("Content-Type", "application/sdp"))
                body = bytes(early_sdp)
            return self.core.reliable.send(leg, 180 if early_sdp is None else 183, headers, body, now)
        if early_sdp is None:
            sent = self.core.respond(leg.invite, 180, now, to_tag=leg.local_tag, headers=self._contact(leg))
        else:
            headers = [*self._contact(leg), ("Content-Type", "application/sdp")]
            sent = self.core.respond(
                leg.invite, 183, now, to_tag=leg.local_tag, headers=headers, body=bytes(early_sdp)
            )
        return sent is not None

    def answer(self, leg: CallLeg, answer_sdp: SessionDescription, now: float) -> bool:
        """200 with our answer; the INVITE server transaction retransmits it until the ACK (or
        Timer L, after which the endpoint hangs up). To an INVITE without a body, `answer_sdp` is
        our offer and the ACK must bring the answer (RFC 3264 via RFC 3261 13.2.1)."""
        core = self.core
        if leg.state is not LegState.INCOMING:
            return False
        if core.reliable.answer_waits(leg, answer_sdp):
            return True  # sent when our 183's PRACK arrives (RFC 3262 3)
        headers = [*self._contact(leg), ("Allow", ALLOW), *core.supported_headers()]
        if leg.session_agreement is not None:
            headers += leg.session_agreement.response_headers()
        headers.append(("Content-Type", "application/sdp"))
        sent = core.respond(
            leg.invite, 200, now, to_tag=leg.local_tag, headers=headers, body=bytes(answer_sdp)
        )
        if sent is None:
            return False
        try:
            core.set_dialog(leg, Dialog.from_uas(leg.invite, sent, local_contact=core.contact_for(leg.peer)))
        except (DialogError, ValueError):
            leg.dialog = None  # checked in on_invite; a BYE can still not be sent without it
        leg.state = LegState.CONFIRMED
        leg.local_sdp = answer_sdp
        leg.codecs = local_codecs(answer_sdp)
        if not leg.invite.body:
            leg.offer_in_2xx = (leg.invite.cseq.seq, answer_sdp)
        else:
            leg.srtp = _agreed_keys(leg.invite.body, answer_sdp)
        self.core.leg_deadlines.arm(leg, None)
        core.session_timers.start_inbound(leg, now)
        return True

    def reject(self, leg: CallLeg, status: int, now: float, headers: Iterable[tuple[str, str]] = ()) -> bool:
        if leg.state is not LegState.INCOMING:
            return False
        self.core.reliable.final_sent(leg)
        self.core.respond(leg.invite, status, now, to_tag=leg.local_tag, headers=headers)
        self.core.finish(leg, LegEnded(leg.leg_id, EndReason.LOCAL))
        return True

    def on_deadline(self, leg: CallLeg, now: float) -> None:
        """Nobody answered an inbound call in time: 480, as a phone nobody picks up would."""
        self.core.respond(leg.invite, 480, now, to_tag=leg.local_tag)
        self.core.finish(leg, LegEnded(leg.leg_id, EndReason.TIMEOUT))

    def _contact(self, leg: CallLeg) -> list[tuple[str, str]]:
        return [("Contact", str(self.core.contact_for(leg.peer)))]

    # --- CANCEL -------------------------------------------------------------------------------

    def on_cancel(self, event: RequestReceived, now: float) -> None:
        """RFC 3261 9.2: 481 without a matching INVITE transaction; else 200, and if the INVITE is
        still pending, 487 for it."""
        core = self.core
        if event.cancels is None:
            core.respond(event.request, 481, now)
            return
        core.respond(event.request, 200, now)
        leg = core.leg_for_key(event.cancels)
        if leg is not None and leg.state is LegState.INCOMING:
            core.respond(leg.invite, 487, now, to_tag=leg.local_tag)
            core.finish(leg, LegEnded(leg.leg_id, EndReason.REMOTE))

    # --- REGISTER -----------------------------------------------------------------------------

    def on_register(self, event: RequestReceived, now: float) -> None:
        core, request = self.core, event.request
        if not core.config.accounts:
            core.respond(request, 403, now)
            return
        result = core.auth.authenticate(request, "Authorization", now)
        if result.username is None:
            if result.offered and not result.stale:
                core.stats["auth_failures"] += 1
                core.respond(request, 403, now)
            else:
                challenge = core.auth.challenge(now, stale=result.stale)
                core.respond(request, 401, now, headers=[("WWW-Authenticate", challenge)])
            return
        outcome = core.registrar.register(result.username, request, event.source, now)
        core.respond(request, outcome.status, now, headers=outcome.headers)
        for registration_event in outcome.events:
            core.emit(registration_event)


def _dialed(uri: object) -> str | None:
    if isinstance(uri, SipURI):
        return uri.user
    if isinstance(uri, TelURI):
        return uri.number
    return None


def _agreed_keys(offer_body: bytes, answer: SessionDescription) -> SrtpParams | None:
    """The SRTP keys our answer agreed to (the INVITE's offer parsed when it arrived)."""
    try:
        return agreed_keys(parse_sdp(offer_body), answer)
    except SdpParseError:
        return None
