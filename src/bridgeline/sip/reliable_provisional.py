"""Reliable provisional responses (RFC 3262, option tag 100rel) on both sides of a call.

UAS (inbound INVITE whose Require names 100rel): our 18x goes out with `Require: 100rel` and an
`RSeq`, and is passed to the transaction again every T1, doubling, until a PRACK with the
matching `RAck` arrives; after 64*T1 without one the INVITE gets 504 and the leg ends (section 3).
One reliable provisional is outstanding at a time (later ones wait, a few at most). A 2xx waits
until an outstanding provisional that carried SDP is PRACKed; one without SDP stops being
retransmitted once the final response is sent. A PRACK that matches nothing outstanding gets 481.
With only `Supported: 100rel` our provisionals stay unreliable: the peer accepts either, and
reliability would hold back the 200 by a round trip.

UAC (our INVITEs advertise `Supported: 100rel`): each reliable 18x is PRACKed in its early dialog
(one per To tag, forks included). RSeq order (section 4): the first sets the sequence, the next
in order is PRACKed and processed, a retransmission gets the same PRACK again (the peer's
transaction absorbs it) and is not processed again, and one that skips ahead or goes back is
neither PRACKed nor processed: the peer retransmits what we miss.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from .call_leg import CallLeg
from .dialog import Dialog, DialogError, DialogState
from .endpoint_core import uri_address
from .events import EndReason, LegEnded
from .message import Request, Response
from .option_tags import RELIABLE_PROVISIONAL, option_tags
from .sdp import SdpParseError, SessionDescription, parse_sdp
from .syntax import SipParseError
from .transaction import Destination, TransactionStateError

if TYPE_CHECKING:
    from .endpoint_core import EndpointCore

MAX_RSEQ: Final = 2**32 - 1  # RSeq and RAck numbers are 32-bit (RFC 3262 7.1, 7.2)
MAX_QUEUED: Final = 4  # reliable provisionals waiting behind an unacknowledged one, per leg
MAX_EARLY_DIALOGS: Final = 8  # forks PRACKed per outbound leg; more are ignored
PRACK_TIMER: Final = "prack"


def parse_rseq(text: str | None) -> int | None:
    """A response-num (1*DIGIT, 1 to 2**32-1), or None when absent or garbage."""
    if text is None:
        return None
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    value = int(text)
    return value if 1 <= value <= MAX_RSEQ else None


def parse_rack(text: str | None) -> tuple[int, int, str] | None:
    """RAck: response-num, CSeq number and method (RFC 3262 7.2), or None when malformed."""
    if text is None:
        return None
    parts = text.split()
    if len(parts) != 3:
        return None
    rseq, cseq = parse_rseq(parts[0]), parse_rseq(parts[1])
    if rseq is None or cseq is None:
        return None
    return rseq, cseq, parts[2]


@dataclass(slots=True)
class UasReliable:
    """An inbound leg whose caller requires 100rel."""

    next_rseq: int
    pending: Response | None = None  # sent and not yet PRACKed
    pending_rseq: int = 0
    pending_has_sdp: bool = False
    retransmitting: bool = False  # stops once a final response is sent
    interval: float = 0.0
    give_up_at: float = 0.0
    queued: list[tuple[int, list[tuple[str, str]], bytes]] = field(default_factory=list)
    deferred_answer: SessionDescription | None = None  # answer_incoming waiting for the PRACK


@dataclass(slots=True)
class EarlyDialog:
    """One To tag's early dialog on an outbound leg: where PRACKs go and the RSeq reached."""

    dialog: Dialog
    destination: Destination
    last_rseq: int
    prack: Request | None = None  # the latest PRACK, sent again for a retransmitted 18x


@dataclass(slots=True)
class UacReliable:
    by_tag: dict[str, EarlyDialog] = field(default_factory=dict)


class ReliableProvisionals:
    def __init__(self, core: EndpointCore) -> None:
        self.core = core

    # --- UAS ----------------------------------------------------------------------------------

    def start_uas(self, leg: CallLeg) -> None:
        """Called for a new inbound leg: reliability only when its INVITE requires 100rel."""
        core = self.core
        if core.config.reliable_provisionals and RELIABLE_PROVISIONAL in option_tags(leg.invite, "Require"):
            leg.uas_reliable = UasReliable(next_rseq=core.rng.randrange(1, 2**31))

    def send(
        self, leg: CallLeg, status: int, headers: list[tuple[str, str]], body: bytes, now: float
    ) -> bool:
        """Send (or queue behind the outstanding one) a reliable provisional."""
        state = leg.uas_reliable
        assert state is not None
        if state.pending is not None:
            if len(state.queued) >= MAX_QUEUED:
                self.core.stats["reliable_provisionals_dropped"] += 1
                return False
            state.queued.append((status, headers, body))
            return True
        return self._send_now(leg, state, status, headers, body, now)

    def _send_now(
        self,
        leg: CallLeg,
        state: UasReliable,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        now: float,
    ) -> bool:
        core = self.core
        rseq = state.next_rseq
        extra = [*headers, ("Require", RELIABLE_PROVISIONAL), ("RSeq", str(rseq))]
        sent = core.respond(leg.invite, status, now, to_tag=leg.local_tag, headers=extra, body=body)
        if sent is None:
            return False
        state.next_rseq = rseq + 1 if rseq < MAX_RSEQ else 1
        state.pending, state.pending_rseq, state.pending_has_sdp = sent, rseq, bool(body)
        state.retransmitting = True
        state.interval = core.config.timers.t1
        state.give_up_at = now + core.config.timers.timeout
        core.ext_deadlines.arm((leg, PRACK_TIMER), now + state.interval)
        return True

    def answer_waits(self, leg: CallLeg, answer_sdp: SessionDescription) -> bool:
        """Called before the 2xx: True when it must wait for the PRACK of a provisional with SDP
        (RFC 3262 3), the answer then kept for `on_prack`. Otherwise retransmissions stop."""
        state = leg.uas_reliable
        if state is None:
            return False
        if state.pending is not None and state.pending_has_sdp:
            state.deferred_answer = answer_sdp
            return True
        self.final_sent(leg)
        return False

    def final_sent(self, leg: CallLeg) -> None:
        state = leg.uas_reliable
        if state is not None:
            state.retransmitting = False
            state.queued.clear()
            state.deferred_answer = None
            self.core.ext_deadlines.arm((leg, PRACK_TIMER), None)

    def on_timer(self, leg: CallLeg, now: float) -> None:
        core, state = self.core, leg.uas_reliable
        if state is None or state.pending is None or not state.retransmitting:
            return
        if now >= state.give_up_at:
            # Section 3: no PRACK within 64*T1, reject the INVITE with a 5xx.
            core.stats["prack_timeouts"] += 1
            core.respond(leg.invite, 504, now, to_tag=leg.local_tag, reason="No PRACK Received")
            core.finish(leg, LegEnded(leg.leg_id, EndReason.TIMEOUT))
            return
        core.stats["reliable_provisional_retransmissions"] += 1
        try:
            core.tl.send_response(state.pending, now)
        except (ValueError, TransactionStateError):  # the INVITE transaction has moved on
            state.retransmitting = False
            return
        state.interval *= 2
        core.ext_deadlines.arm((leg, PRACK_TIMER), min(now + state.interval, state.give_up_at))

    def on_prack(self, leg: CallLeg, request: Request, now: float) -> SessionDescription | None:
        """Answer a PRACK; returns the 2xx answer that was waiting for it, if any."""
        core, state = self.core, leg.uas_reliable
        rack = parse_rack(request.headers.get("RAck"))
        if rack is None:
            core.respond(request, 400, now, reason="Bad RAck Header")
            return None
        rseq, cseq, method = rack
        pending = state.pending if state is not None else None
        if (
            state is None
            or pending is None
            or rseq != state.pending_rseq
            or cseq != leg.invite.cseq.seq
            or method != "INVITE"
        ):
            core.stats["prack_unmatched"] += 1
            core.respond(request, 481, now, reason="No Matching Reliable Provisional Response")
            return None
        core.respond(request, 200, now)
        state.pending = None
        state.retransmitting = False
        core.ext_deadlines.arm((leg, PRACK_TIMER), None)
        deferred, state.deferred_answer = state.deferred_answer, None
        if deferred is not None:
            return deferred
        if state.queued:
            status, headers, body = state.queued.pop(0)
            self._send_now(leg, state, status, headers, body, now)
        return None

    # --- UAC ----------------------------------------------------------------------------------

    def on_provisional(self, leg: CallLeg, response: Response, now: float) -> bool:
        """A 101-199 to our INVITE: PRACK it if it is reliable. False when it must not be
        processed further (a retransmission, out of order, or unusable)."""
        core = self.core
        if not core.config.reliable_provisionals or response.status == 100:
            return True
        if RELIABLE_PROVISIONAL not in option_tags(response, "Require"):
            return True
        try:
            tag = response.to_addr.tag
        except SipParseError:
            tag = None
        rseq = parse_rseq(response.headers.get("RSeq"))
        if rseq is None or not tag:
            core.stats["reliable_provisionals_unusable"] += 1
            return False
        state = leg.uac_reliable
        if state is None:
            state = leg.uac_reliable = UacReliable()
        early = state.by_tag.get(tag)
        if early is None:
            if len(state.by_tag) >= MAX_EARLY_DIALOGS:
                core.stats["reliable_provisionals_unusable"] += 1
                return False
            early = self._early_dialog(leg, response, rseq)
            if early is None:
                core.stats["reliable_provisionals_unusable"] += 1
                return False
            state.by_tag[tag] = early
        elif rseq == early.last_rseq:
            core.stats["reliable_provisional_duplicates"] += 1
            if early.prack is not None:
                core.tl.send_stateless(early.prack, early.destination)
            return False
        elif rseq != early.last_rseq + 1:
            core.stats["reliable_provisionals_out_of_order"] += 1
            return False
        early.last_rseq = rseq
        self._prack(leg, early, rseq, now)
        if response.body and response.content_type == "application/sdp":
            with suppress(SdpParseError):
                leg.reliable_answer = parse_sdp(response.body)  # a 2xx may then omit the SDP
        return True

    def _early_dialog(self, leg: CallLeg, response: Response, rseq: int) -> EarlyDialog | None:
        core = self.core
        try:
            dialog = Dialog.from_uac(leg.invite, response, local_contact=core.contact_for(leg.peer))
        except (DialogError, SipParseError):
            try:  # no usable Contact: target the Request-URI, as for a 2xx without one
                dialog = Dialog(
                    call_id=leg.invite.call_id,
                    local=leg.invite.from_addr,
                    remote=response.to_addr,
                    remote_target=leg.invite.uri,
                    route_set=[],
                    local_seq=leg.invite.cseq.seq,
                    remote_seq=None,
                    state=DialogState.EARLY,
                    local_contact=core.contact_for(leg.peer),
                )
            except DialogError:
                return None
        destination = leg.peer
        if dialog.route_set and (first := uri_address(dialog.route_set[0].uri)) is not None:
            destination = first
        return EarlyDialog(dialog, destination, rseq - 1)

    def _prack(self, leg: CallLeg, early: EarlyDialog, rseq: int, now: float) -> None:
        core = self.core
        headers = [*core.ua_headers(), ("RAck", f"{rseq} {leg.invite.cseq.seq} INVITE")]
        prack = early.dialog.create_request("PRACK", via=core.via(early.destination), headers=headers)
        early.prack = prack
        leg.early_local_seq = max(leg.early_local_seq, early.dialog.local_seq)
        core.stats["pracks_sent"] += 1
        core.send_request(leg, prack, early.destination, now)
