"""Session timers (RFC 4028, option tag timer): find out when a call's other end has gone.

Every INVITE we send carries `Supported: timer`, `Session-Expires` (our `session_expires`) and
`Min-SE`; an inbound INVITE or refresh is negotiated against our settings: an interval below our
`min_se` gets 422 with our Min-SE; a malformed Session-Expires or Min-SE, or a Min-SE above the
Session-Expires, gets 400. Without a Session-Expires we impose ours (section 9), with the caller
refreshing when it supports timer and us otherwise; a larger interval is lowered to ours, never
below the peer's Min-SE.

Once the call is up: when we are the refresher we send a refresh at half the interval (UPDATE
when the peer allows it, else a re-INVITE with our current SDP unchanged); any successful
re-INVITE or UPDATE from either side restarts the interval. When no refresh succeeded by the
expiry minus min(32 s, interval/3) (section 10), or a refresh of ours failed with 408/481 or timed
out, the call ends with a BYE carrying a Reason header and `EndReason.SESSION_EXPIRED`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from .call_leg import CallLeg, LegState
from .dialog import DialogError
from .endpoint_core import ALLOW
from .events import EndReason, LegEnded, SessionTimerSettings
from .message import Message, Request, Response
from .option_tags import SESSION_TIMER, option_tags
from .syntax import SipParseError, split_top_level
from .transaction import Destination, TransactionKey

if TYPE_CHECKING:
    from .endpoint_core import EndpointCore

MAX_DELTA_SECONDS: Final = 2**32 - 1  # a 32-bit delta-seconds; longer numbers are garbage
MAX_RETRY_INTERVAL: Final = 86_400  # a 422 asking for more than a day is not retried
RETRY_AFTER_FAILURE: Final = 4.0  # a refused refresh (491, 500...) is tried again this much later
BYE_MARGIN_CAP: Final = 32.0  # section 10: BYE at expiry minus min(32 s, interval / 3)
SESSION_TIMER_KEY: Final = "session"
EXPIRED_REASON: Final = 'SIP;cause=408;text="Session timer expired"'


class Refresher(StrEnum):
    UAC = "uac"  # the sender of the request that set the interval
    UAS = "uas"  # its recipient


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request's session timer values are refused: status, reason phrase, extra headers."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Agreement:
    """The interval we grant a request, and whether we (its recipient) refresh."""

    interval: int
    we_refresh: bool
    peer_supports: bool

    def response_headers(self) -> list[tuple[str, str]]:
        refresher = Refresher.UAS if self.we_refresh else Refresher.UAC
        headers = [("Session-Expires", f"{self.interval};refresher={refresher}")]
        if self.peer_supports:
            headers.append(("Require", SESSION_TIMER))  # section 9: the UAC supports it
        return headers


def parse_delta_seconds(text: str) -> int:
    """delta-seconds (RFC 3261 25.1), at most 32 bits. Raises ValueError."""
    text = text.strip()
    if not text or not (text.isascii() and text.isdigit()) or len(text) > 10:
        raise ValueError(f"not delta-seconds: {text[:40]!r}")
    value = int(text)
    if not 0 < value <= MAX_DELTA_SECONDS:
        raise ValueError(f"delta-seconds out of range: {value}")
    return value


def parse_session_expires(text: str) -> tuple[int, Refresher | None]:
    """`Session-Expires: 1800;refresher=uac` (RFC 4028 4). Raises ValueError."""
    parts = split_top_level(text, ";")
    if not parts:
        raise ValueError("empty Session-Expires")
    interval = parse_delta_seconds(parts[0])
    refresher: Refresher | None = None
    for param in parts[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "refresher":
            try:
                refresher = Refresher(value.strip().lower())
            except ValueError:
                raise ValueError(f"refresher must be uac or uas: {value[:20]!r}") from None
    return interval, refresher


def _single(message: Message, name: str) -> str | None:
    values = message.headers.get_all(name)
    if len(values) > 1:
        raise ValueError(f"more than one {name} header")
    return values[0] if values else None


def negotiate(request: Request, settings: SessionTimerSettings) -> Agreement | Refusal | None:
    """What we answer to an INVITE or UPDATE (RFC 4028 9); None when session timers are off."""
    if not settings.enabled:
        return None
    try:
        min_se_text = _single(request, "Min-SE")
        peer_min = parse_delta_seconds(min_se_text.split(";", 1)[0]) if min_se_text else 0
    except (ValueError, SipParseError):
        return Refusal(400, "Bad Min-SE Header")
    try:
        se_text = _single(request, "Session-Expires")
        asked = parse_session_expires(se_text) if se_text is not None else None
    except (ValueError, SipParseError):
        return Refusal(400, "Bad Session-Expires Header")
    peer_supports = SESSION_TIMER in option_tags(request, "Supported") + option_tags(request, "Require")
    if asked is None:
        interval, refresher = max(settings.session_expires, peer_min), None
    else:
        interval, refresher = asked
        if interval < settings.min_se:
            return Refusal(422, "Session Interval Too Small", (("Min-SE", str(settings.min_se)),))
        if peer_min > interval:
            return Refusal(400, "Min-SE Above Session-Expires")
        interval = max(min(interval, settings.session_expires), peer_min, settings.min_se)
    if refresher is None or not peer_supports:
        refresher = Refresher.UAC if peer_supports else Refresher.UAS
    return Agreement(interval, refresher is Refresher.UAS, peer_supports)


def request_headers(settings: SessionTimerSettings, *, refreshing: bool = False) -> list[tuple[str, str]]:
    """Session-Expires and Min-SE for an INVITE or refresh of ours (RFC 4028 7.1). A refresh
    names us refresher; an initial INVITE leaves the choice to the answerer."""
    expires = f"{settings.session_expires};refresher=uac" if refreshing else str(settings.session_expires)
    return [("Session-Expires", expires), ("Min-SE", str(settings.min_se))]


def read_response(response: Response, settings: SessionTimerSettings) -> tuple[int, bool] | None:
    """(interval, we refresh) from a 2xx to our INVITE or refresh (RFC 4028 7.2), None when it
    sets no session timer or sets one we cannot read (counted by the caller)."""
    text = response.headers.get("Session-Expires")
    if text is None:
        return None
    interval, refresher = parse_session_expires(text)
    return max(interval, settings.min_se), refresher is not Refresher.UAS  # no refresher: ours


@dataclass(slots=True)
class SessionTimer:
    interval: int
    we_refresh: bool
    use_update: bool  # the peer allows UPDATE: a refresh needs no SDP
    started: float
    in_flight: bool = False  # a refresh of ours awaits its final response
    refresh_key: TransactionKey | None = None  # our latest refresh's transaction
    refresh_ack: tuple[Request, Destination] | None = None  # the ACK for a re-INVITE refresh's 2xx
    retry_at: float | None = None

    @property
    def bye_at(self) -> float:
        return self.started + self.interval - min(BYE_MARGIN_CAP, self.interval / 3)

    @property
    def refresh_at(self) -> float:
        return self.retry_at if self.retry_at is not None else self.started + self.interval / 2


def _allows_update(message: Message) -> bool:
    try:
        return "UPDATE" in {m.strip().upper() for m in message.headers.get_list("Allow")}
    except SipParseError:
        return False


class SessionTimers:
    def __init__(self, core: EndpointCore) -> None:
        self.core = core

    @property
    def settings(self) -> SessionTimerSettings:
        return self.core.config.session_timers

    def negotiate(self, request: Request) -> Agreement | Refusal | None:
        return negotiate(request, self.settings)

    def invite_headers(self) -> list[tuple[str, str]]:
        return request_headers(self.settings) if self.settings.enabled else []

    def retry_too_small(self, leg: CallLeg, response: Response, now: float) -> bool:
        """RFC 4028 7.4: a 422 to our INVITE names the Min-SE it wants. Send the INVITE again, once,
        with that interval (CSeq + 1, a new branch); not for a garbled or absurd Min-SE."""
        core = self.core
        if (
            not self.settings.enabled
            or leg.session_retried
            or leg.hangup_requested
            or leg.state not in (LegState.CALLING, LegState.PROCEEDING)
        ):
            return False
        try:
            wanted = parse_delta_seconds((response.headers.get("Min-SE") or "").split(";", 1)[0])
        except ValueError:
            return False
        if wanted > MAX_RETRY_INTERVAL:
            return False
        leg.session_retried = True
        interval = str(max(wanted, self.settings.min_se))
        headers = leg.invite.headers.copy()
        headers.set("Session-Expires", interval)
        headers.set("Min-SE", interval)
        headers.set("CSeq", f"{leg.invite.cseq.seq + 1} INVITE")
        headers.set("Via", str(core.via(leg.peer)))
        retry = Request("INVITE", leg.invite.uri, headers, leg.invite.body)
        core.by_txn.pop(leg.invite_key, None)  # the old transaction finishes on its own
        leg.keys.discard(leg.invite_key)
        leg.invite = retry
        leg.invite_key = core.send_request(leg, retry, leg.peer, now)
        leg.state = LegState.CALLING
        core.stats["session_422_retries"] += 1
        return True

    # --- starting and restarting ----------------------------------------------------------------

    def start(self, leg: CallLeg, interval: int, we_refresh: bool, peer: Message, now: float) -> None:
        timer = SessionTimer(interval, we_refresh, _allows_update(peer), now)
        leg.session_timer = timer
        self.core.stats["session_timers_started"] += 1
        self._arm(leg, timer)

    def start_inbound(self, leg: CallLeg, now: float) -> None:
        """Our 2xx to the initial INVITE went out with `leg.session_agreement`'s headers."""
        agreement = leg.session_agreement
        if agreement is not None:
            self.start(leg, agreement.interval, agreement.we_refresh, leg.invite, now)

    def start_outbound(self, leg: CallLeg, response: Response, now: float) -> None:
        """The peer answered our INVITE: its 2xx says whether a session timer runs and who refreshes."""
        if not self.settings.enabled or leg.session_timer is not None:
            return
        try:
            found = read_response(response, self.settings)
        except (ValueError, SipParseError):
            self.core.stats["session_expires_unusable"] += 1
            return
        if found is not None:
            self.start(leg, *found, response, now)

    def refreshed_by_peer(
        self, leg: CallLeg, agreement: Agreement | None, request: Request, now: float
    ) -> None:
        """We answered the peer's re-INVITE or UPDATE with a 2xx carrying `agreement`'s headers."""
        if agreement is None:
            return
        current = leg.session_timer
        self.start(leg, agreement.interval, agreement.we_refresh, request, now)
        renewed = leg.session_timer
        if current is not None and renewed is not None and current.in_flight:
            # Our own refresh crossed this one: its answer must still find it (to ACK a 2xx and
            # free `local_reinvite`); the interval restarts again then.
            renewed.in_flight, renewed.refresh_key = True, current.refresh_key
            self._arm(leg, renewed)
        self.core.stats["session_refreshes_received"] += 1

    def _arm(self, leg: CallLeg, timer: SessionTimer) -> None:
        deadline = timer.bye_at
        if timer.we_refresh and not timer.in_flight:
            deadline = min(deadline, timer.refresh_at)
        self.core.ext_deadlines.arm((leg, SESSION_TIMER_KEY), deadline)

    # --- the deadline ---------------------------------------------------------------------------

    def on_timer(self, leg: CallLeg, now: float) -> None:
        timer = leg.session_timer
        if timer is None or leg.state is not LegState.CONFIRMED:
            return
        if now >= timer.bye_at:
            self.expire(leg, now)
        elif timer.we_refresh and not timer.in_flight:
            self._send_refresh(leg, timer, now)
            self._arm(leg, timer)
        else:
            self._arm(leg, timer)

    def expire(self, leg: CallLeg, now: float) -> None:
        self.core.stats["session_timers_expired"] += 1
        self.core.send_bye(leg, LegEnded(leg.leg_id, EndReason.SESSION_EXPIRED), now, reason=EXPIRED_REASON)

    def _send_refresh(self, leg: CallLeg, timer: SessionTimer, now: float) -> None:
        core, dialog = self.core, leg.dialog
        timer.retry_at = None
        if dialog is None or leg.local_sdp is None or leg.local_reinvite is not None:
            timer.retry_at = now + RETRY_AFTER_FAILURE  # an INVITE of ours is in progress
            return
        headers = [
            *core.ua_headers(),
            ("Supported", SESSION_TIMER),
            *request_headers(self.settings_for(timer), refreshing=True),
        ]
        method, body = "UPDATE", b""
        if not timer.use_update:
            method, body = "INVITE", bytes(leg.local_sdp)  # the same SDP: nothing changes
            headers += [("Allow", ALLOW), ("Content-Type", "application/sdp")]
        hop = core.hop(leg)
        try:
            request = dialog.create_request(method, via=core.via(hop), headers=headers, body=body)
        except DialogError:
            return
        key = core.send_request(leg, request, hop, now)
        timer.in_flight, timer.refresh_key, timer.refresh_ack = True, key, None
        if method == "INVITE":
            leg.local_reinvite = key
        core.stats["session_refreshes_sent"] += 1

    def settings_for(self, timer: SessionTimer) -> SessionTimerSettings:
        """Our refresh asks for the interval in force, not the configured one."""
        s = self.settings
        return SessionTimerSettings(s.enabled, max(timer.interval, s.min_se), s.min_se)

    # --- responses to our refresh ---------------------------------------------------------------

    def owns(self, leg: CallLeg, key: TransactionKey) -> bool:
        timer = leg.session_timer
        return timer is not None and timer.refresh_key == key

    def on_response(self, leg: CallLeg, response: Response, now: float) -> None:
        core, timer = self.core, leg.session_timer
        if timer is None or response.status < 200:
            return
        is_invite = response.cseq.method == "INVITE"
        if 200 <= response.status < 300 and is_invite:
            self._ack(leg, timer, response)
        if not timer.in_flight:
            return  # a retransmitted 2xx (ACKed again above), or overtaken by the peer's refresh
        timer.in_flight = False
        if is_invite:
            leg.local_reinvite = None
        if response.status < 300:
            try:
                found = read_response(response, self.settings)
            except (ValueError, SipParseError):
                found = None
                core.stats["session_expires_unusable"] += 1
            interval, we_refresh = found or (timer.interval, True)
            renewed = SessionTimer(interval, we_refresh, timer.use_update, now)
            renewed.refresh_key, renewed.refresh_ack = timer.refresh_key, timer.refresh_ack
            leg.session_timer = renewed
            self._arm(leg, renewed)
            return
        if response.status in (408, 481):
            self.expire(leg, now)  # section 10: the dialog is gone
            return
        core.stats["session_refreshes_refused"] += 1
        if response.status == 422:
            try:
                asked = parse_delta_seconds((response.headers.get("Min-SE") or "").split(";", 1)[0])
                timer.interval = max(timer.interval, asked)
            except ValueError:
                pass
        timer.retry_at = now + RETRY_AFTER_FAILURE
        self._arm(leg, timer)

    def on_timeout(self, leg: CallLeg, now: float) -> None:
        timer = leg.session_timer
        if timer is not None and timer.in_flight and leg.state is LegState.CONFIRMED:
            self.expire(leg, now)

    def _ack(self, leg: CallLeg, timer: SessionTimer, response: Response) -> None:
        core = self.core
        if timer.refresh_ack is None:
            if leg.dialog is None:
                return
            hop = core.hop(leg)
            ack = leg.dialog.create_ack(response.cseq.seq, via=core.via(hop), headers=core.ua_headers())
            timer.refresh_ack = (ack, hop)
        core.tl.send_stateless(*timer.refresh_ack)
