"""Requests inside an existing dialog (RFC 3261 section 12.2.2, 14, 15): BYE, re-INVITE and UPDATE
offers (RFC 3264 section 8, RFC 3311) which also refresh session timers (RFC 4028), PRACK
(RFC 3262), INFO, OPTIONS, and the ACK for our 2xx.
"""

from __future__ import annotations

from collections.abc import Callable

from .call_leg import CallLeg, LegState, answer_new_offer, fresh_offer
from .dialog import dialog_id_of
from .endpoint_core import ACCEPT, ALLOW, ALLOWED_METHODS, EndpointCore
from .events import EndReason, LegEnded, MediaUpdated
from .message import Method, Request
from .offer_answer import NegotiationError, read_answer
from .refer import Refer
from .sdp import SdpParseError, SessionDescription, parse_sdp
from .session_timer import Refusal
from .syntax import quotable
from .transaction import RequestReceived

AnswerIncoming = Callable[[CallLeg, SessionDescription, float], bool]


class InDialog:
    def __init__(self, core: EndpointCore, answer_incoming: AnswerIncoming | None = None) -> None:
        self.core = core
        self._answer_incoming = answer_incoming  # sends a 2xx that waited for a PRACK
        self.refer = Refer(core)  # REFER (RFC 3515): blind transfers asked for by the peer

    def on_request(self, event: RequestReceived, now: float) -> None:
        """Any request with a To tag except CANCEL. No matching dialog: 481 (12.2.2)."""
        core, request = self.core, event.request
        dialog_id = dialog_id_of(request)
        leg = core.leg_for_dialog(dialog_id)
        if leg is None:
            if core.recoveries.holds(dialog_id, now):
                # Saved, not recovered yet (recovery.py): no answer; forgetting the transaction
                # lets the peer's retransmission reach the recovered leg.
                core.stats["requests_held_for_recovery"] += 1
                core.tl.abandon(event.key)
                return
            core.respond(request, 481, now)
            return
        method = request.method
        if leg.dialog is not None and method != "BYE" and not leg.dialog.receive_request(request):
            core.respond(request, 500, now, headers=[("Retry-After", "1")])  # CSeq went backwards
            return
        if method == "BYE":
            self._on_bye(leg, request, now)
        elif leg.state is LegState.TERMINATING:
            core.respond(request, 481, now)  # the dialog is ending: our BYE is out
        elif method in ("INVITE", "UPDATE"):
            self._on_offer(leg, event, now)
        elif method == "PRACK":
            waiting = core.reliable.on_prack(leg, request, now)
            if waiting is not None and self._answer_incoming is not None:
                self._answer_incoming(leg, waiting, now)
        elif method == "REFER":
            self.refer.on_refer(leg, event, now)
        elif method in ("INFO", "OPTIONS"):
            # INFO (RFC 6086) is acknowledged but not interpreted: DTMF goes in RTP (RFC 4733).
            headers = [("Allow", ALLOW), ("Accept", ACCEPT)] if method == "OPTIONS" else []
            core.respond(request, 200, now, headers=headers)
        elif method in Method.__members__ and method not in ALLOWED_METHODS:
            core.respond(request, 405, now, headers=[("Allow", ALLOW)])
        else:
            core.respond(request, 501, now, headers=[("Allow", ALLOW)])

    def _on_bye(self, leg: CallLeg, request: Request, now: float) -> None:
        """BYE ends the leg whatever state it is in. An unanswered inbound INVITE also gets 487
        (15.1.2); when our own BYE crossed this one, the outcome we had decided stands."""
        core = self.core
        if leg.dialog is not None:
            leg.dialog.receive_request(request)
        core.respond(request, 200, now)
        if leg.state is LegState.INCOMING:
            core.respond(leg.invite, 487, now, to_tag=leg.local_tag)
        core.finish(leg, leg.outcome or LegEnded(leg.leg_id, EndReason.REMOTE))

    def _on_offer(self, leg: CallLeg, event: RequestReceived, now: float) -> None:
        """re-INVITE or UPDATE: answer its offer from our current media, or (re-INVITE without a
        body) make a fresh offer in the 2xx and take the answer from the ACK (RFC 3261 14.2)."""
        core, request = self.core, event.request
        is_invite = request.method == "INVITE"
        if leg.state is not LegState.CONFIRMED or leg.local_sdp is None or leg.dialog is None:
            core.respond(request, 491 if is_invite else 500, now, headers=[("Retry-After", "1")])
            return
        if is_invite and leg.local_reinvite is not None:
            core.respond(request, 491, now)  # glare with our own re-INVITE (14.2)
            return
        timer = core.session_timers.negotiate(request)
        if isinstance(timer, Refusal):  # 422 or 400; the session stays as it was
            core.stats["session_timer_refusals"] += 1
            core.respond(request, timer.status, now, headers=timer.headers, reason=timer.reason)
            return
        headers = [("Contact", str(core.contact_for(leg.peer))), ("Allow", ALLOW), *core.supported_headers()]
        if timer is not None:
            headers += timer.response_headers()
        if not request.body:
            if not is_invite:
                core.respond(request, 200, now, headers=headers)  # a session refresh
                core.session_timers.refreshed_by_peer(leg, timer, request, now)
                return
            offer = fresh_offer(leg.local_sdp, leg.codecs, leg.srtp)
            leg.local_sdp = offer
            leg.offer_in_2xx = (request.cseq.seq, offer)
            self._track_reinvite(leg, event)
            headers.append(("Content-Type", "application/sdp"))
            core.respond(request, 200, now, headers=headers, body=bytes(offer))
            core.session_timers.refreshed_by_peer(leg, timer, request, now)
            return
        if request.content_type != "application/sdp":
            core.respond(request, 415, now, headers=[("Accept", ACCEPT)])
            return
        try:
            answer, media = answer_new_offer(leg.local_sdp, parse_sdp(request.body), leg.codecs, leg.srtp)
        except SdpParseError:
            core.respond(request, 400, now, reason="Bad Session Description")
            return
        except NegotiationError as exc:
            # RFC 3264 8: the old session stays as it was. A Warning says why (RFC 3261 20.43).
            warning = f'{exc.warning_code} {core.sent_by[0]} "{quotable(str(exc))}"'
            core.respond(request, 488, now, headers=[("Warning", warning)])
            return
        leg.local_sdp = answer
        leg.media, leg.srtp = media, media.srtp
        if is_invite:
            self._track_reinvite(leg, event)
        headers.append(("Content-Type", "application/sdp"))
        core.respond(request, 200, now, headers=headers, body=bytes(answer))
        core.session_timers.refreshed_by_peer(leg, timer, request, now)
        core.emit(MediaUpdated(leg.leg_id, media))

    def _track_reinvite(self, leg: CallLeg, event: RequestReceived) -> None:
        # So that Timer L (no ACK for this 2xx either) finds the leg and hangs up.
        self.core.track(leg, event.key)

    def on_ack(self, request: Request, now: float) -> None:
        """An ACK for a 2xx of ours. For an offer we put in the 2xx (to a re-INVITE, or to an
        INVITE without a body), it carries the answer (RFC 3261 13.2.1, 14.2): read it and report
        the new media. Without a usable answer a re-INVITE leaves the session as it was; the
        initial INVITE has no session to fall back on, so we end the call with a BYE."""
        core = self.core
        leg = core.leg_for_dialog(dialog_id_of(request))
        if leg is None or leg.offer_in_2xx is None:
            return
        seq, offer = leg.offer_in_2xx
        if request.cseq.seq != seq:
            return
        leg.offer_in_2xx = None
        try:
            if not request.body:
                raise NegotiationError("the ACK carries no answer")
            media = read_answer(offer, parse_sdp(request.body))
        except (SdpParseError, NegotiationError) as exc:
            core.stats["bad_answers"] += 1
            if not leg.outbound and seq == leg.invite.cseq.seq and leg.state is LegState.CONFIRMED:
                cause = f'SIP;cause=488;text="{quotable(str(exc))}"'
                core.send_bye(leg, LegEnded(leg.leg_id, EndReason.BAD_ANSWER), now, reason=cause)
            # A re-INVITE's: keep sending as before; the peer may send a new offer.
            return
        leg.media, leg.srtp = media, media.srtp
        core.emit(MediaUpdated(leg.leg_id, media))
