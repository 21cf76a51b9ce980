"""State and plumbing shared by the parts of `SipEndpoint`: the transaction layer, the leg tables,
the event queue, counters, and the helpers every part uses to build, send and answer requests.

Leg bookkeeping invariant: a leg lives in `legs` from its INVITE until its terminal event; each of
its transactions is in `by_txn` (and in its `keys`), its dialog in `by_dialog` (and in its
`dialog_ids`: register both through `track` and `track_dialog`), and `drop` removes all of them.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from random import Random
from typing import TYPE_CHECKING, Final

from .call_leg import CallLeg, LegState
from .dialog import Dialog, DialogError, DialogId
from .events import EndpointConfig, EndpointEvent, LegRecovered, MediaUpdated
from .headers import NameAddress, Via
from .keyed_deadlines import KeyedDeadlines
from .leg_timers import LegDeadlines
from .message import Request, Response, make_response, new_branch, new_tag
from .option_tags import RELIABLE_PROVISIONAL, SESSION_TIMER
from .registrar import Registrar
from .server_auth import DigestServer
from .syntax import Params, unbracket
from .transaction import (
    Destination,
    TransactionKey,
    TransactionStateError,
    Transport,
    destination,
    transport_of,
)
from .transaction_layer import TransactionLayer
from .uri import URI, SipURI

if TYPE_CHECKING:
    from .recovery import Recoveries
    from .reliable_provisional import ReliableProvisionals
    from .session_timer import SessionTimers

ALLOWED_METHODS: Final = (
    "INVITE",
    "ACK",
    "CANCEL",
    "BYE",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "REGISTER",
    "PRACK",
    "REFER",
)
ALLOW: Final = ", ".join(ALLOWED_METHODS)
ACCEPT: Final = "application/sdp"


def host_for_uri(host: str) -> str:
    """IPv6 literals are bracketed in URIs and Via (RFC 3261 25.1)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def uri_transport(uri: SipURI) -> Transport | None:
    """RFC 3263 4.1 without DNS: the `transport` parameter, else UDP; a sips: URI is TLS (its
    `transport=tcp` means TLS over TCP). None for a transport we do not speak (sctp, ws...)."""
    if not uri.secure:
        return Transport.parse(uri.transport)
    return Transport.TLS if uri.transport in (None, "tcp", "tls") else None


def uri_address(uri: URI) -> Destination | None:
    """Where to send a request for uri, without DNS: its host and port over its transport, or
    None for a URI we cannot reach (tel:, an unknown transport)."""
    if not isinstance(uri, SipURI):
        return None
    transport = uri_transport(uri)
    if transport is None:
        return None
    return destination(transport, unbracket(uri.host), uri.port or transport.default_port)


class EndpointCore:
    def __init__(self, config: EndpointConfig, rng: Random) -> None:
        self.config = config
        self.rng = rng
        # The hosts of the servers last located for a trunk proxy named by host (set_trunk_servers):
        # INVITEs from them are the trunk's, as from the proxy's own host when it is an address.
        self.trunk_hosts: frozenset[str] = frozenset()
        self.tl = TransactionLayer(config.timers)
        self.auth = DigestServer(config.domain, config.accounts, rng, config.nonce_lifetime)
        self.registrar = Registrar(config.registration)
        self.legs: dict[str, CallLeg] = {}
        self.leg_deadlines = LegDeadlines(self.legs)  # set leg deadlines only through it
        # PRACK retransmissions and session refreshes, keyed (leg, kind); `drop` disarms them.
        self.ext_deadlines: KeyedDeadlines[tuple[CallLeg, str]] = KeyedDeadlines()
        self.supported = frozenset(
            ([RELIABLE_PROVISIONAL] if config.reliable_provisionals else [])
            + ([SESSION_TIMER] if config.session_timers.enabled else [])
        )
        self.reliable: ReliableProvisionals  # set by SipEndpoint (they need this core)
        self.session_timers: SessionTimers
        self.recoveries: Recoveries
        self.by_txn: dict[TransactionKey, str] = {}
        self.by_dialog: dict[DialogId, str] = {}
        self.events: deque[EndpointEvent] = deque()
        # Legs whose saved dialog (saved_dialog.py) may be out of date: drained by the endpoint.
        self.changed: set[str] = set()
        self.stats: Counter[str] = Counter()
        host, port = config.public_address or config.local_address  # what peers must reach (NAT)
        self.sent_by = (host_for_uri(host), port)
        self.contact = NameAddress(SipURI(self.sent_by[0], user=config.contact_user, port=port))
        # TCP/TLS: our Via sent-by and a Contact saying the transport, so that in-dialog requests
        # come back the same way (RFC 3261 8.1.1.8); without a listener, the UDP address.
        self._stream_sent_by: dict[Transport, tuple[str, int]] = {}
        self._stream_contacts: dict[Transport, NameAddress] = {}
        for transport in (Transport.TCP, Transport.TLS):
            s_host, s_port = config.stream_addresses.get(transport, config.local_address)
            sent_by = (host_for_uri(s_host), s_port)
            self._stream_sent_by[transport] = sent_by
            uri = SipURI(sent_by[0], user=config.contact_user, port=s_port)
            self._stream_contacts[transport] = NameAddress(uri.with_param("transport", transport.lower()))

    # --- building -----------------------------------------------------------------------------

    def via(self, dest: Destination | None = None) -> Via:
        """Our Via for a request to `dest` (its transport), with a fresh branch and rport (RFC 3261
        8.1.1.7, RFC 3581)."""
        params = Params([("branch", new_branch(self.rng)), ("rport", None)])
        transport = Transport.UDP if dest is None else transport_of(dest)
        if transport is Transport.UDP:
            return Via("UDP", self.sent_by[0], self.sent_by[1], params)
        host, port = self._stream_sent_by[transport]
        return Via(transport.value, host, port, params)

    def contact_for(self, dest: Destination | None) -> NameAddress:
        """Our Contact for a dialog whose peer is reached at `dest`."""
        transport = Transport.UDP if dest is None else transport_of(dest)
        return self.contact if transport is Transport.UDP else self._stream_contacts[transport]

    def ua_headers(self) -> list[tuple[str, str]]:
        return [("User-Agent", self.config.user_agent)]

    def supported_headers(self) -> list[tuple[str, str]]:
        """Supported: the extensions we implement and have switched on (100rel, timer)."""
        tags = [tag for tag in (RELIABLE_PROVISIONAL, SESSION_TIMER) if tag in self.supported]
        return [("Supported", ", ".join(tags))] if tags else []

    def hop(self, leg: CallLeg) -> Destination:
        """Next hop for in-dialog requests: the first Record-Route hop if the dialog has one, else
        the transport address of the dialog-creating INVITE. Symmetric signalling is what gets
        through NAT to phones and keeps trunk traffic on the proxy; Contact hosts are often
        private addresses."""
        if leg.dialog is not None and leg.dialog.route_set:
            address = uri_address(leg.dialog.route_set[0].uri)
            if address is not None:
                return address
        return leg.peer

    # --- sending ------------------------------------------------------------------------------

    def send_request(self, leg: CallLeg, request: Request, dest: Destination, now: float) -> TransactionKey:
        key = self.tl.send_request(request, dest, now)
        self.track(leg, key)
        return key

    def track(self, leg: CallLeg, key: TransactionKey) -> None:
        self.by_txn[key] = leg.leg_id
        leg.keys.add(key)

    def set_dialog(self, leg: CallLeg, dialog: Dialog) -> None:
        """The leg's dialog from now on; its changes mark the leg for saving."""
        leg.dialog = dialog
        leg_id, changed = leg.leg_id, self.changed
        dialog.on_change = lambda: changed.add(leg_id)
        changed.add(leg_id)

    def track_dialog(self, leg: CallLeg, dialog_id: DialogId) -> None:
        self.by_dialog[dialog_id] = leg.leg_id
        leg.dialog_ids.add(dialog_id)

    def respond(
        self,
        request: Request,
        status: int,
        now: float,
        *,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        reason: str | None = None,
    ) -> Response | None:
        """Answer through the request's server transaction. Out-of-dialog answers get a random To
        tag (RFC 3261 8.2.6.2). None when the transaction can no longer take it (e.g. it already
        has a final response): a race with the network, not an error."""
        extra = list(headers)
        if status > 100:
            extra.append(("Server", self.config.user_agent))
        try:
            response = make_response(
                request, status, reason, to_tag=to_tag or new_tag(self.rng), headers=extra, body=body
            )
            self.tl.send_response(response, now)
        except (TransactionStateError, ValueError):
            self.stats["responses_unsent"] += 1
            return None
        self.stats["responses_sent"] += 1
        self.stats[f"responses_sent.{status}"] += 1
        return response

    def send_ack(self, leg: CallLeg, dialog: Dialog) -> None:
        """The ACK for a 2xx to our INVITE: a request of its own, outside any transaction
        (RFC 3261 13.2.2.4). Kept so 2xx retransmissions can be re-ACKed."""
        hop = self.hop(leg)
        ack = dialog.create_ack(leg.invite.cseq.seq, via=self.via(hop), headers=self.ua_headers())
        leg.ack = (ack, hop)
        self.tl.send_stateless(*leg.ack)

    def send_bye(
        self, leg: CallLeg, outcome: EndpointEvent, now: float, *, reason: str | None = None
    ) -> None:
        """End a confirmed dialog; `outcome` is reported once the BYE completes (any final
        response, a timeout, or the peer's own BYE crossing ours). `reason` is a Reason header
        value (RFC 3326) telling the peer why."""
        leg.outcome = outcome
        self.leg_deadlines.arm(leg, None)
        dialog = leg.dialog
        if dialog is None:
            self.finish(leg, outcome)
            return
        try:
            headers = self.ua_headers() + ([("Reason", reason)] if reason else [])
            hop = self.hop(leg)
            bye = dialog.create_request("BYE", via=self.via(hop), headers=headers)
        except DialogError:
            self.finish(leg, outcome)
            return
        leg.state = LegState.TERMINATING
        self.send_request(leg, bye, hop, now)

    # --- events and cleanup -------------------------------------------------------------------

    def emit(self, event: EndpointEvent) -> None:
        if isinstance(event, MediaUpdated | LegRecovered):
            self.changed.add(event.leg_id)  # the session changed: our SDP, the codec
        self.events.append(event)

    def finish(self, leg: CallLeg, outcome: EndpointEvent) -> None:
        """Report the leg's terminal event and forget it."""
        self.drop(leg)
        self.emit(outcome)

    def drop(self, leg: CallLeg) -> None:
        self.legs.pop(leg.leg_id, None)
        self.changed.discard(leg.leg_id)
        for kind in ("prack", "session", "recovery"):
            self.ext_deadlines.arm((leg, kind), None)
        if leg.recovering is not None and leg.media is None:
            self.tl.abandon(leg.recovering)  # an unanswered recovery re-INVITE (no Timer C here)
        timer = leg.session_timer
        if timer is not None and timer.in_flight and timer.refresh_key is not None:
            # A refresh INVITE left in Proceeding has no timer of its own (no Timer C here).
            self.tl.abandon(timer.refresh_key)
        if leg.refer is not None and leg.refer.request is not None:
            self.tl.abandon(leg.refer.key)  # an undecided REFER of a call that ended (refer.py)
        for key in leg.keys:
            if self.by_txn.get(key) == leg.leg_id:
                del self.by_txn[key]
        leg.keys.clear()
        for dialog_id in leg.dialog_ids:
            if self.by_dialog.get(dialog_id) == leg.leg_id:
                del self.by_dialog[dialog_id]
        leg.dialog_ids.clear()

    def leg_for_key(self, key: TransactionKey | None) -> CallLeg | None:
        leg_id = self.by_txn.get(key) if key is not None else None
        return self.legs.get(leg_id) if leg_id is not None else None

    def leg_for_dialog(self, dialog_id: DialogId | None) -> CallLeg | None:
        leg_id = self.by_dialog.get(dialog_id) if dialog_id is not None else None
        return self.legs.get(leg_id) if leg_id is not None else None
