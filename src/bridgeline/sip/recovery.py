"""Taking back an answered call after a restart or on another node (what FreeSWITCH's `sofia recover`
does), from a `SavedDialog` (saved_dialog.py).

`recover` re-creates the leg's dialog (same Call-ID and tags, CSeq `CSEQ_MARGIN` above the saved
one: a session refresh or NOTIFY may have gone out after the last save) and sends a target-refresh
re-INVITE (RFC 3261 12.2, 14.1) with our Contact and a new offer. From then on the peer's
in-dialog requests match the leg (its BYE ends it; its re-INVITE meets 491 while ours is pending).
A 2xx is ACKed and reported as `LegRecovered` with the new media. 491 (our re-INVITE crossed one of
the peer's) is tried again after 2.1-4 s (14.1), at most `MAX_GLARE_RETRIES` times. Anything else
ends the leg with `LegEnded(RECOVERY_FAILED)`: 481 and 408, a timeout and a transport error at once
(the dialog is gone, RFC 3261 12.2.1.2); any other failure with a BYE, since the peer still holds
a dialog whose media points at a socket that no longer exists.

Requests for a dialog known to be saved but not yet recovered (`expect`) are held: not answered,
and their server transaction forgotten, so the peer's retransmission is seen afresh once the leg
is recovered. Past `until` (the peer's own transaction has timed out by then) they get 481.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from .call_leg import CallLeg, LegState, local_codecs
from .dialog import Dialog, DialogError, DialogId, DialogState
from .endpoint_core import ALLOW, uri_address
from .events import EndReason, LegEnded, LegRecovered
from .message import Request, Response
from .offer_answer import NegotiationError, read_answer
from .saved_dialog import SavedDialog, save_dialog
from .sdp import SdpParseError, SessionDescription, parse_sdp
from .session_timer import request_headers
from .syntax import SipParseError, quotable
from .transaction import Destination, Target, TransactionKey

if TYPE_CHECKING:
    from .endpoint_core import EndpointCore

CSEQ_MARGIN: Final = 100  # above the saved CSeq: requests sent after the last save stay below
MAX_GLARE_RETRIES: Final = 3
RECOVERY_TIMER: Final = "recovery"
_ENDS_DIALOG: Final = frozenset({408, 481})


class Recoveries:
    def __init__(self, core: EndpointCore) -> None:
        self.core = core
        self._expected: dict[DialogId, float] = {}  # saved dialogs not recovered yet -> hold until

    # --- held requests --------------------------------------------------------------------------

    def expect(self, dialog_ids: Iterable[DialogId], until: float) -> None:
        for dialog_id in dialog_ids:
            self._expected[dialog_id] = until

    def holds(self, dialog_id: DialogId | None, now: float) -> bool:
        """Whether a request for this unknown dialog is held rather than answered 481."""
        if dialog_id is None:
            return False
        until = self._expected.get(dialog_id)
        if until is None:
            return False
        if now >= until:
            del self._expected[dialog_id]
            return False
        return True

    def forget(self, dialog_ids: Iterable[DialogId]) -> None:
        """These saved dialogs will not be recovered here: their requests get 481 from now on."""
        for dialog_id in dialog_ids:
            self._expected.pop(dialog_id, None)

    def expected(self) -> int:
        return len(self._expected)

    # --- saving ---------------------------------------------------------------------------------

    def export(self, leg: CallLeg) -> SavedDialog | None:
        if leg.state is not LegState.CONFIRMED or leg.dialog is None or leg.local_sdp is None:
            return None
        # The codec in use: the negotiated one, else (an inbound leg before any re-offer) the first
        # of our answer, which is the one agreed.
        codec = leg.media.codec if leg.media is not None else leg.codecs[0] if leg.codecs else None
        if codec is None:
            return None
        timer = leg.session_timer
        return save_dialog(
            outbound=leg.outbound,
            dialog=leg.dialog,
            peer=leg.peer,
            local_sdp=leg.local_sdp,
            codec=codec,
            srtp=leg.srtp,
            session_interval=timer.interval if timer is not None else None,
        )

    # --- recovering ------------------------------------------------------------------------------

    def recover(self, leg_id: str, saved: SavedDialog, offer: SessionDescription, now: float) -> None:
        """Raises ValueError for a leg id in use, a dialog already here, or an unusable saved dialog."""
        core = self.core
        if leg_id in core.legs:
            raise ValueError(f"leg {leg_id!r} already exists")
        local, remote, target, routes = saved.parsed()
        dialog_id = saved.dialog_id
        if core.leg_for_dialog(dialog_id) is not None:
            raise ValueError(f"dialog of {leg_id!r} is already live here")
        peer = saved.peer
        if isinstance(peer, Target):  # the old connection is gone: dial a new one
            peer = peer._replace(reuse_only=False)
        dialog = Dialog(
            call_id=saved.call_id,
            local=local,
            remote=remote,
            remote_target=target,
            route_set=routes,
            local_seq=saved.local_seq + CSEQ_MARGIN,
            remote_seq=saved.remote_seq,
            state=DialogState.CONFIRMED,
            local_contact=core.contact_for(peer),
        )
        self._expected.pop(dialog_id, None)
        invite, hop = self._build(dialog, peer, offer)
        key = core.tl.send_request(invite, hop, now)
        leg = CallLeg(leg_id, saved.outbound, invite, key, peer, local.tag or "", LegState.CONFIRMED)
        leg.local_sdp = offer
        leg.codecs = local_codecs(offer)
        leg.local_reinvite = leg.recovering = key
        core.legs[leg_id] = leg
        core.set_dialog(leg, dialog)
        core.track_dialog(leg, dialog.id)
        core.track(leg, key)
        core.stats["recoveries_started"] += 1

    def _build(
        self, dialog: Dialog, peer: Destination, offer: SessionDescription
    ) -> tuple[Request, Destination]:
        """The re-INVITE and where it goes: the first route, else the peer (like `core.hop`)."""
        core = self.core
        hop = peer
        if dialog.route_set and (first := uri_address(dialog.route_set[0].uri)) is not None:
            hop = first
        timers = core.config.session_timers
        headers = [
            *core.ua_headers(),
            ("Allow", ALLOW),
            *core.supported_headers(),
            *(request_headers(timers, refreshing=True) if timers.enabled else []),
            ("Content-Type", "application/sdp"),
        ]
        invite = dialog.create_request("INVITE", via=core.via(hop), headers=headers, body=bytes(offer))
        return invite, hop

    def owns(self, leg: CallLeg, key: TransactionKey) -> bool:
        return leg.recovering is not None and leg.recovering == key

    def on_response(self, leg: CallLeg, response: Response, now: float) -> None:
        core, status = self.core, response.status
        if status < 200:
            return
        if leg.ack is not None and 200 <= status < 300:
            core.tl.send_stateless(*leg.ack)  # a retransmitted 2xx: our ACK was lost
            return
        dialog = leg.dialog
        assert dialog is not None
        leg.local_reinvite = None
        if status >= 300:
            self._failed(leg, status, now)
            return
        dialog.receive_response(response)  # the peer's Contact may have changed too
        hop = core.hop(leg)
        ack = dialog.create_ack(response.cseq.seq, via=core.via(hop), headers=core.ua_headers())
        leg.ack = (ack, hop)
        core.tl.send_stateless(*leg.ack)
        if leg.state is not LegState.CONFIRMED:
            return  # hung up meanwhile: our BYE is out
        try:
            if response.content_type != "application/sdp":
                raise NegotiationError("2xx without an SDP answer")
            assert leg.local_sdp is not None
            media = read_answer(leg.local_sdp, parse_sdp(response.body))
        except (SdpParseError, NegotiationError, SipParseError) as exc:
            core.stats["recoveries_failed"] += 1
            reason = f'SIP;cause=488;text="{quotable(str(exc))}"'
            core.send_bye(leg, LegEnded(leg.leg_id, EndReason.RECOVERY_FAILED), now, reason=reason)
            return
        leg.media, leg.srtp = media, media.srtp
        core.stats["recoveries_succeeded"] += 1
        core.session_timers.start_outbound(leg, response, now)
        core.emit(LegRecovered(leg.leg_id, media))

    def _failed(self, leg: CallLeg, status: int, now: float) -> None:
        core = self.core
        if status == 491 and leg.state is LegState.CONFIRMED and leg.recovery_retries < MAX_GLARE_RETRIES:
            leg.recovery_retries += 1
            leg.recovering = None
            wait = 2.1 + core.rng.random() * 1.9  # RFC 3261 14.1: we own the Call-ID when UAC
            core.ext_deadlines.arm((leg, RECOVERY_TIMER), now + wait)
            return
        core.stats["recoveries_failed"] += 1
        outcome = LegEnded(leg.leg_id, EndReason.RECOVERY_FAILED)
        if status in _ENDS_DIALOG or leg.state is not LegState.CONFIRMED:
            core.finish(leg, leg.outcome or outcome)
        else:
            core.send_bye(leg, outcome, now, reason=f"SIP;cause={status}")

    def on_timer(self, leg: CallLeg, now: float) -> None:
        """The wait after a 491 is over: send the re-INVITE again (a new CSeq and transaction)."""
        if leg.state is LegState.CONFIRMED and leg.recovering is None and leg.media is None:
            assert leg.dialog is not None and leg.local_sdp is not None
            try:
                invite, hop = self._build(leg.dialog, leg.peer, leg.local_sdp)
            except DialogError:
                return
            key = self.core.send_request(leg, invite, hop, now)
            leg.invite, leg.invite_key = invite, key
            leg.local_reinvite = leg.recovering = key

    def on_timeout(self, leg: CallLeg, now: float) -> None:
        """No answer at all (Timer B) or the transport failed: the peer is gone."""
        self.core.stats["recoveries_failed"] += 1
        leg.local_reinvite = None
        self.core.finish(leg, leg.outcome or LegEnded(leg.leg_id, EndReason.RECOVERY_FAILED))
