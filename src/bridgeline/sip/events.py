"""What `SipEndpoint` tells the layer above, and how it is configured.

Every event is a frozen dataclass drained with `SipEndpoint.next_event()`. Each call leg ends with
exactly one terminal event: `LegFailed` for an outbound leg that was never answered, `LegEnded`
for everything else (an answered leg, or an inbound leg however it finished). A leg id may be
reused once its terminal event has been delivered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from .headers import NameAddress
from .offer_answer import MediaParams
from .redirect import RedirectPolicy
from .sdp import SessionDescription
from .transaction import DEFAULT_TIMERS, Address, Destination, TimerSettings, Transport
from .uri import URI, SipURI


class FailReason(StrEnum):
    """Why an outbound leg was never answered (`LegFailed.reason`)."""

    BUSY = "busy"  # 486, 600
    REJECTED = "rejected"  # 603 Decline
    NO_ANSWER = "no_answer"  # 408, 480, 487 we did not ask for
    CANCELLED = "cancelled"  # we hung up before the answer
    UNREACHABLE = "unreachable"  # no route: unknown or unregistered user, no trunk
    FAILED = "failed"  # any other final response, a transaction timeout, an unusable answer


class EndReason(StrEnum):
    """Who ended a leg (`LegEnded.reason`)."""

    LOCAL = "local"  # hangup / reject_incoming
    REMOTE = "remote"  # the peer's BYE or CANCEL
    TIMEOUT = "timeout"  # no ACK for our 2xx, or an inbound call left unanswered too long
    BAD_ANSWER = "bad_answer"  # the ACK to our offer in the 2xx had no usable answer: we sent BYE
    SESSION_EXPIRED = "session_expired"  # RFC 4028: no session refresh in time; we sent BYE
    RECOVERY_FAILED = "recovery_failed"  # a recovered leg's re-INVITE failed (recovery.py)


@dataclass(frozen=True, slots=True)
class LegTrying:
    """The first 100 Trying for an outbound leg: the next hop has the INVITE."""

    leg_id: str


@dataclass(frozen=True, slots=True)
class LegRinging:
    """A 180/183 (any 101-199). `media` is set when the provisional carries an answer we accept
    (early media, RFC 3261 13.2.1): the RTP engine may play what the peer sends."""

    leg_id: str
    status: int
    media: MediaParams | None = None


@dataclass(frozen=True, slots=True)
class LegAnswered:
    """The peer answered with a 2xx; the endpoint has sent the ACK."""

    leg_id: str
    media: MediaParams
    answer_sdp: SessionDescription


@dataclass(frozen=True, slots=True)
class LegFailed:
    """Terminal: an outbound leg that was never answered. `status` is the final response code;
    408 stands for a transaction timeout, 404/480 for an unreachable target."""

    leg_id: str
    status: int
    reason: FailReason


@dataclass(frozen=True, slots=True)
class TargetLookupNeeded:
    """A 3xx sent an outbound leg to a SIP URI whose host is a name (RFC 3263): look its servers up
    and hand them to `SipEndpoint.resume_redirect(leg_id, destinations, now)` (empty when none was
    found: the next contact is tried, or the leg fails with the 3xx). The leg waits meanwhile; a
    hangup ends it at once."""

    leg_id: str
    uri: SipURI


@dataclass(frozen=True, slots=True)
class LegEnded:
    """Terminal: an answered leg is over (BYE done), or an inbound leg was cancelled, rejected or
    timed out."""

    leg_id: str
    reason: EndReason


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """An authenticated INVITE. Answer with `answer_incoming`, `ring_incoming` or `reject_incoming`.
    `account` is the digest-authenticated endpoint username, None for a call from the trusted trunk;
    `to_user` is the dialed number/user (Request-URI user, else the To user). `offer` is None for
    an INVITE without a body (late offer, RFC 3261 13.2.1): the SDP given to `answer_incoming` is
    then our offer, and its answer arrives in the ACK as `MediaUpdated` (or the leg ends with
    `EndReason.BAD_ANSWER`)."""

    leg_id: str
    from_uri: URI
    to_user: str
    offer: SessionDescription | None
    from_display: str | None = None
    account: str | None = None
    source: Destination | None = None


@dataclass(frozen=True, slots=True)
class MediaUpdated:
    """The peer changed the session (re-INVITE or UPDATE, RFC 3264 section 8). `media.direction`
    is ours: when it no longer `sends`, the peer put us on hold and the RTP engine must stop."""

    leg_id: str
    media: MediaParams


@dataclass(frozen=True, slots=True)
class LegRecovered:
    """A leg taken back from a saved dialog (`SipEndpoint.recover`): the peer accepted our
    re-INVITE; `media` is the session it answered, on the leg's new RTP port."""

    leg_id: str
    media: MediaParams


@dataclass(frozen=True, slots=True)
class Registered:
    """A binding was added or refreshed. `contact` is as registered; `target` is what `lookup`
    returns: the contact with host and port replaced by the packets' source when they differ
    (the phone is behind NAT, RFC 3581 spirit)."""

    username: str
    contact: SipURI
    target: SipURI
    expires: int
    path: tuple[NameAddress, ...] = ()  # RFC 3327: the proxies it came through, nearest us first
    transport: Transport = Transport.UDP  # what the REGISTER came on


@dataclass(frozen=True, slots=True)
class Unregistered:
    """A binding is gone: `reason` is "removed" (Expires: 0 / `*`) or "expired"."""

    username: str
    contact: SipURI
    reason: str


@dataclass(frozen=True, slots=True)
class TransferRequested:
    """The peer sent REFER in this leg's dialog (RFC 3515): it asks that its call go to `target` (a
    blind transfer). Answer with `SipEndpoint.answer_refer`, then report with `notify_refer`."""

    leg_id: str
    target: SipURI
    referred_by: str | None = None


@dataclass(frozen=True, slots=True)
class TrunkStatus:
    """The trunk proxy stopped answering our OPTIONS keepalives (`misses` in a row), or answers
    again. Reported on each change only."""

    up: bool
    misses: int


EndpointEvent = (
    LegTrying
    | LegRinging
    | LegAnswered
    | LegFailed
    | LegEnded
    | TargetLookupNeeded
    | IncomingCall
    | MediaUpdated
    | LegRecovered
    | Registered
    | Unregistered
    | TransferRequested
    | TrunkStatus
)


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """A SIP trunk reached through `proxy` (a `Target` for TCP/TLS). Calls to E.164 numbers go
    there with Request-URI `sip:<number>@<domain>`; INVITEs from the proxy's host are trusted
    without digest."""

    proxy: Destination
    domain: str
    username: str | None = None
    password: str | None = None
    from_user: str = "bridgeline"  # caller id when dial() is given none
    keepalive_interval: float = 0.0  # s between OPTIONS pings to the proxy; 0: none (keepalive.py)
    keepalive_timeout: float = 5.0  # s: a ping unanswered this long is a miss
    keepalive_down_after: int = 3  # misses in a row that mark the trunk down


@dataclass(frozen=True, slots=True)
class RegistrationLimits:
    """Registrar expiry policy (RFC 3261 10.3 steps 7-8), in seconds."""

    default: int = 3600
    minimum: int = 60  # shorter (non-zero) requests get 423 Interval Too Brief
    maximum: int = 7200  # longer ones are clamped
    max_bindings: int = 10  # per user, so one account cannot grow the table without bound
    # RFC 3327: a REGISTER from one of these (host, port or None for any port) keeps its Path, and
    # calls to the binding go through it; from anyone else Path is ignored (a phone could name any host).
    path_proxies: frozenset[tuple[str, int | None]] = frozenset()
    max_path: int = 4  # Path entries kept from a trusted proxy; more: 400


@dataclass(frozen=True, slots=True)
class SessionTimerSettings:
    """RFC 4028 session timers, in seconds. `min_se` below 90 breaks RFC 4028 section 4's floor
    (settings.py allows it for tests only); `session_expires` is what we ask for and the most we
    grant when the peer asks for more."""

    enabled: bool = True
    session_expires: int = 1800
    min_se: int = 90


@dataclass(frozen=True, slots=True)
class FailoverPolicy:
    """RFC 3263 4.3: an outbound INVITE that gets a 503, a transaction timeout or a transport error
    is sent to the next target of the list `dial` was given, at most `max_failovers` times per leg.
    `no_response_s`: with another target left, move on when the current one has not answered
    anything (not even 100 Trying) this long; None waits for Timer B (64*T1, 32 s)."""

    max_failovers: int = 4
    no_response_s: float | None = None


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """Static configuration. `domain` is the digest realm and the From host of our requests;
    `accounts` maps endpoint usernames to passwords (they may REGISTER and place calls).
    `local_address` is where UDP listens; `stream_addresses` where TCP and TLS listen, if they do
    (our Via sent-by and Contact for those transports)."""

    local_address: Address
    domain: str
    user_agent: str = "Bridgeline"
    accounts: Mapping[str, str] = field(default_factory=dict)
    trunk: TrunkConfig | None = None
    timers: TimerSettings = DEFAULT_TIMERS
    contact_user: str = "bridgeline"
    nonce_lifetime: float = 300.0
    incoming_timeout: float = 180.0  # an unanswered inbound call gets 480 after this
    registration: RegistrationLimits = RegistrationLimits()
    redirects: RedirectPolicy = field(default_factory=RedirectPolicy)  # the 3xx targets dials follow
    reliable_provisionals: bool = True  # RFC 3262 100rel/PRACK: advertised, PRACKed, honoured
    session_timers: SessionTimerSettings = SessionTimerSettings()  # RFC 4028
    public_address: Address | None = None  # NAT: Via sent-by and Contact; the socket stays local
    failover: FailoverPolicy = FailoverPolicy()  # when a dial moves on to its next target
    stream_addresses: Mapping[Transport, Address] = field(default_factory=dict)
