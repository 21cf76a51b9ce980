"""REFER inside a dialog (RFC 3515): a phone asks us to transfer its call elsewhere (blind transfer).

The endpoint only checks the request: it must come inside a confirmed dialog, carry exactly one
readable Refer-To with a sip: URI, and not ask for an attended transfer (a `Replaces` header in the
URI, RFC 3891, which we do not implement: 501). What is then asked for goes up as
`TransferRequested`; the layer above decides (who may transfer, which targets) and answers with
`answer` (202, or a refusal), then reports the outcome with `notify`: the implicit subscription's
NOTIFYs carry `message/sipfrag` status lines ("SIP/2.0 100 Trying", then the final one).

One transfer per leg at a time; its state lives on the leg (`CallLeg.refer`), so it goes with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .call_leg import CallLeg, LegState
from .dialog import DialogError
from .endpoint_core import EndpointCore
from .events import TransferRequested
from .headers import parse_name_address
from .message import Request, reason_phrase
from .syntax import SipParseError, quotable, split_top_level
from .transaction import RequestReceived, TransactionKey
from .uri import SipURI

SUBSCRIPTION_EXPIRES = 300  # s; the transfer's outcome (ring timeout at most) comes well before
SIPFRAG = "message/sipfrag;version=2.0"


@dataclass(slots=True)
class ReferState:
    """The REFER a leg sent: undecided (`request` set) until `answer`, then an active subscription
    until the final NOTIFY."""

    request: Request | None
    key: TransactionKey  # the REFER's server transaction, forgotten if the call ends undecided
    event_id: int  # the REFER's CSeq number: the Event header's id (RFC 3515 2.4.6)


class ReferError(ValueError):
    """A REFER we refuse before asking anyone: (status, reason phrase)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def refer_target(request: Request) -> SipURI:
    """The one Refer-To URI of a REFER, without URI headers and `method`; raises ReferError."""
    values = [v for line in request.headers.get_all("Refer-To") for v in split_top_level(line, ",") if v]
    if not values:
        raise ReferError(400, "Missing Refer-To")
    if len(values) > 1:
        raise ReferError(400, "More than one Refer-To")
    try:
        uri = parse_name_address(values[0]).uri
    except SipParseError as exc:
        raise ReferError(400, "Malformed Refer-To") from exc
    if not isinstance(uri, SipURI) or uri.secure:
        raise ReferError(416, "Refer-To must be a sip: URI")
    if any(name.lower() == "replaces" for name, _ in uri.headers):
        raise ReferError(501, "Attended transfer (Replaces) not supported")
    method = uri.params.get("method")
    if method is not None and method.upper() != "INVITE":
        raise ReferError(501, "Only INVITE references are supported")
    if not uri.user:
        raise ReferError(400, "Refer-To names no user")
    return SipURI(uri.host, uri.user, None, uri.port, uri.params.without("method"), (), uri.scheme)


class Refer:
    def __init__(self, core: EndpointCore) -> None:
        self.core = core

    def on_refer(self, leg: CallLeg, event: RequestReceived, now: float) -> None:
        """A REFER in this leg's dialog (its CSeq already checked)."""
        core, request = self.core, event.request
        core.stats["refers_received"] += 1
        try:
            if leg.state is not LegState.CONFIRMED or leg.dialog is None:
                raise ReferError(403, "Call not answered")
            if leg.refer is not None:
                raise ReferError(403, "A transfer is already in progress")
            target = refer_target(request)
        except ReferError as exc:
            core.stats["refers_refused"] += 1  # by the endpoint; the layer above counts its own
            core.respond(request, exc.status, now, reason=exc.reason)
            return
        leg.refer = ReferState(request, event.key, request.cseq.seq)
        referred_by = request.headers.get("Referred-By")
        core.emit(TransferRequested(leg.leg_id, target, referred_by[:200] if referred_by else None))

    def answer(self, leg_id: str, status: int, reason: str | None, now: float) -> bool:
        """Answer the leg's undecided REFER: 202 starts the subscription (NOTIFY "100 Trying"), any
        3xx-6xx refuses it. False if there is none (the leg is gone, or it was answered)."""
        if status != 202 and not 300 <= status <= 699:
            raise ValueError(f"cannot answer a REFER with {status}")
        leg = self.core.legs.get(leg_id)
        refer = leg.refer if leg is not None else None
        if leg is None or refer is None or refer.request is None:
            return False
        request, refer.request = refer.request, None
        self.core.respond(request, status, now, reason=_phrase(reason) if reason else None)
        if status != 202:
            leg.refer = None
            return True
        self.core.stats["refers_accepted"] += 1
        self._notify(leg, refer, 100, "Trying", now, final=False)
        return True

    def notify(self, leg_id: str, status: int, reason: str | None, now: float, *, final: bool) -> bool:
        """Tell the referrer how the transfer goes: a status line as the target answered (180, 200,
        486...). `final` ends the subscription. False if the leg has no accepted REFER."""
        leg = self.core.legs.get(leg_id)
        refer = leg.refer if leg is not None else None
        if leg is None or refer is None or refer.request is not None:
            return False
        self._notify(leg, refer, status, _phrase(reason or reason_phrase(status)), now, final=final)
        if final:
            leg.refer = None
        return True

    def _notify(
        self, leg: CallLeg, refer: ReferState, status: int, reason: str, now: float, *, final: bool
    ) -> None:
        core, dialog = self.core, leg.dialog
        if dialog is None or leg.state is not LegState.CONFIRMED:
            return  # the call is ending: its BYE ends the subscription too
        state = "terminated;reason=noresource" if final else f"active;expires={SUBSCRIPTION_EXPIRES}"
        headers = [
            *core.ua_headers(),
            ("Event", f"refer;id={refer.event_id}"),
            ("Subscription-State", state),
            ("Content-Type", SIPFRAG),
        ]
        hop = core.hop(leg)
        try:
            notify = dialog.create_request(
                "NOTIFY", via=core.via(hop), headers=headers, body=f"SIP/2.0 {status} {reason}\r\n".encode()
            )
        except DialogError:
            return
        core.stats["refer_notifies_sent"] += 1
        core.send_request(leg, notify, hop, now)


def _phrase(text: str) -> str:
    """A reason phrase (RFC 3261 25.1): printable ASCII on one line, bounded."""
    return quotable(text).strip() or "Refused"
