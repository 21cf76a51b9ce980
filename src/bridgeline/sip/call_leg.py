"""Per-leg state of `SipEndpoint` and the pure helpers around it: failure mapping and answering a
peer's new offer from the leg's current local SDP (RFC 3264 section 8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from .dialog import Dialog, DialogId
from .digest import DigestAuth
from .events import EndpointEvent, FailReason
from .message import Request
from .offer_answer import Codec, MediaParams, NegotiationError, answer_offer, make_offer
from .sdes import OFF, SrtpConfig, SrtpParams, SrtpPolicy
from .sdp import Direction, SessionDescription
from .transaction import Destination, TransactionKey
from .uri import SipURI

if TYPE_CHECKING:
    from .refer import ReferState
    from .reliable_provisional import UacReliable, UasReliable
    from .session_timer import Agreement, SessionTimer


class LegState(StrEnum):
    CALLING = "calling"  # outbound: INVITE sent, nothing back yet
    PROCEEDING = "proceeding"  # outbound: a provisional arrived (a CANCEL may now be sent)
    INCOMING = "incoming"  # inbound: waiting for answer_incoming / reject_incoming
    CONFIRMED = "confirmed"  # a 2xx was sent or received
    TERMINATING = "terminating"  # our BYE is out; `outcome` is reported when it completes


@dataclass(eq=False, slots=True)
class CallLeg:
    """Everything the endpoint remembers about one leg. `keys` lists every transaction mapped to
    it and `dialog_ids` every dialog, so dropping the leg can unmap them all without a scan."""

    leg_id: str
    outbound: bool
    invite: Request  # ours (outbound; replaced on a digest retry) or the peer's initial INVITE
    invite_key: TransactionKey
    peer: Destination  # where the dialog-creating INVITE went, or came from (its connection)
    local_tag: str
    state: LegState
    local_sdp: SessionDescription | None = None  # our latest offer or answer
    codecs: list[Codec] = field(default_factory=list)  # what we can do: from our first offer/answer
    dialog: Dialog | None = None
    media: MediaParams | None = None
    srtp: SrtpParams | None = None  # the session's SRTP keys, which re-offers must keep (RFC 4568)
    auth: DigestAuth | None = None
    auth_rounds: int = 0
    trying_seen: bool = False
    hangup_requested: bool = False
    cancel_sent: bool = False
    deadline: float | None = None  # cancel give-up, ring timeout or failover; set via LegDeadlines.arm
    ack: tuple[Request, Destination] | None = None  # our ACK for the 2xx, resent on retransmissions
    outcome: EndpointEvent | None = None  # terminal event to report once the BYE completes
    keys: set[TransactionKey] = field(default_factory=set)
    dialog_ids: set[DialogId] = field(default_factory=set)
    # RFC 3261 14.1: our own re-INVITE in progress; a peer re-INVITE meanwhile gets 491.
    local_reinvite: TransactionKey | None = None
    # RFC 3261 14.2: we put an offer in the 2xx to an offerless re-INVITE; the ACK has the answer.
    offer_in_2xx: tuple[int, SessionDescription] | None = None
    account: str | None = None
    # RFC 3261 8.1.3.4, outbound: targets a 3xx gave us still to try, best first; every target
    # this leg has called (loop detection); how many redirected INVITEs were sent.
    redirect_queue: list[SipURI] = field(default_factory=list)
    tried_targets: set[str] = field(default_factory=set)
    redirects: int = 0
    # RFC 3262 (reliable_provisional.py): our reliable 18x and its PRACK (inbound), the early
    # dialogs we PRACK in, the answer a PRACKed 18x carried, and the CSeq our PRACKs used (outbound).
    uas_reliable: UasReliable | None = None
    uac_reliable: UacReliable | None = None
    reliable_answer: SessionDescription | None = None
    early_local_seq: int = 0
    # RFC 4028 (session_timer.py): what we grant the inbound INVITE, and the running timer.
    session_agreement: Agreement | None = None
    session_timer: SessionTimer | None = None
    session_retried: bool = False  # our INVITE was sent again after a 422 (once)
    refer: ReferState | None = None  # RFC 3515: the REFER this leg sent, until its last NOTIFY
    # RFC 3263 4.3, outbound: the current Request-URI's other servers, next first (a timeout, a
    # transport error or a 503 moves on to the next); how many failovers this leg made; the trunk's
    # servers as located for this dial (a redirect to the trunk's domain goes there).
    failover: list[Destination] = field(default_factory=list)
    failovers: int = 0
    trunk_targets: tuple[Destination, ...] = ()
    # A 3xx target named by host, waiting for `resume_redirect`; the status of the last final
    # response, which the leg fails with when nothing more can be tried.
    lookup_pending: SipURI | None = None
    last_status: int = 0
    # recovery.py: the re-INVITE that takes a saved dialog back, and its retries after a 491.
    recovering: TransactionKey | None = None
    recovery_retries: int = 0


_STATUS_REASONS = {
    486: FailReason.BUSY,
    600: FailReason.BUSY,
    603: FailReason.REJECTED,
    408: FailReason.NO_ANSWER,
    480: FailReason.NO_ANSWER,
    487: FailReason.NO_ANSWER,  # terminated by someone else (a forking proxy's timer, say)
}


def failure_reason(status: int, *, cancelled: bool) -> FailReason:
    """Map an outbound leg's final non-2xx status to a reason; everything after our own hangup
    is "cancelled", whatever the peer answered to the CANCEL race."""
    if cancelled:
        return FailReason.CANCELLED
    return _STATUS_REASONS.get(status, FailReason.FAILED)


def local_codecs(sdp: SessionDescription) -> list[Codec]:
    """The formats of our first active audio stream, in our preference order."""
    for media in sdp.media:
        if media.media != "audio" or media.port == 0:
            continue
        codecs: list[Codec] = []
        for fmt in media.formats:
            rtpmap = media.rtpmap(fmt)
            if rtpmap is None or not (fmt.isascii() and fmt.isdigit()) or int(fmt) > 127:
                continue
            pt = int(fmt)
            if all(c.payload_type != pt for c in codecs):
                fmtp = media.fmtp(fmt)
                codecs.append(Codec(rtpmap.encoding, rtpmap.clock_rate, pt, rtpmap.channels, fmtp))
        return codecs
    return []


def _local_endpoint(sdp: SessionDescription) -> tuple[str, int]:
    for media in sdp.media:
        connection = sdp.connection_for(media)
        if media.media == "audio" and media.port != 0 and connection is not None:
            return connection.address, media.port
    raise NegotiationError("our own session description has no audio stream")


def _srtp_kept(current: SrtpParams | None) -> SrtpConfig:
    """An encrypted session stays encrypted, with our key and suite (a peer may renew its own key);
    a plain one stays plain: a re-offer never turns SRTP off, nor needs new keys from us."""
    if current is None:
        return OFF
    return SrtpConfig(SrtpPolicy.REQUIRED, (current.local_key,), (current.suite,))


def answer_new_offer(
    local: SessionDescription,
    offer: SessionDescription,
    codecs: list[Codec],
    current: SrtpParams | None = None,
) -> tuple[SessionDescription, MediaParams]:
    """Answer a re-offer with the leg's own address, port and codecs (RFC 3264 8): same o= session
    id, version + 1. The direction mirrors the peer's (sendonly -> recvonly, inactive -> inactive,
    sendrecv -> sendrecv): we never hold a peer ourselves. `current`: the session's SRTP keys, which
    the re-offer must keep using (`_srtp_kept`). Raises NegotiationError (488)."""
    ip, port = _local_endpoint(local)
    if not codecs:
        raise NegotiationError("our own session description lists no codec")
    return answer_offer(
        offer,
        ip,
        port,
        local.origin.session_id,
        local.origin.version + 1,
        codecs,
        direction=Direction.SENDRECV,
        username=local.origin.username,
        srtp=_srtp_kept(current),
    )


def fresh_offer(
    local: SessionDescription, codecs: list[Codec], current: SrtpParams | None = None
) -> SessionDescription:
    """A new sendrecv offer from our address, port and codecs, o= version + 1: what we put in the
    2xx to an offerless re-INVITE (RFC 3261 14.2), which is how a peer resumes a held call."""
    ip, port = _local_endpoint(local)
    if not codecs:
        raise NegotiationError("our own session description lists no codec")
    origin = local.origin
    return make_offer(
        ip,
        port,
        origin.session_id,
        origin.version + 1,
        codecs,
        username=origin.username,
        srtp=_srtp_kept(current),
    )
