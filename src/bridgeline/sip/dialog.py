"""Dialog state (RFC 3261 section 12) and in-dialog request construction.

A `Dialog` is created from the request/response pair that established it: `Dialog.from_uac` when
we sent the INVITE, `Dialog.from_uas` when we answered one. It then builds BYE, re-INVITE and the
ACK for a 2xx with the right Request-URI and Route set (12.2.1.1, loose and strict routing), and
checks the CSeq order of requests the peer sends (12.2.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from .headers import NameAddress, Via
from .message import Message, Request, Response, make_request
from .syntax import SipParseError
from .uri import URI, SipURI

# Methods whose Contact replaces the remote target (RFC 3261 12.2, RFC 3311, RFC 6665).
TARGET_REFRESH_METHODS: Final = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


class DialogError(ValueError):
    """The messages cannot establish or continue this dialog."""


class DialogState(StrEnum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class DialogId:
    """Call-ID plus local and remote tags (RFC 3261 12): the same dialog has mirrored ids at each end."""

    call_id: str
    local_tag: str
    remote_tag: str


def dialog_id_of(received: Message) -> DialogId | None:
    """Our id of the dialog a received message belongs to, or None without our tag. A request
    from the peer has our tag in To; a response to our request has it in From. A request without
    a From tag comes from an RFC 2543 peer: its remote tag is empty (RFC 3261 12.2.1.1)."""
    from_tag, to_tag = received.from_addr.tag, received.to_addr.tag
    if isinstance(received, Request):
        return None if to_tag is None else DialogId(received.call_id, to_tag, from_tag or "")
    if from_tag is None or to_tag is None:
        return None
    return DialogId(received.call_id, from_tag, to_tag)


def _remote_target(message: Message, fallback: URI | None = None) -> URI:
    """The Contact's URI; `fallback` (the caller's From URI, as RFC 2543 did) when there is none."""
    contacts = message.contacts
    if not contacts and fallback is not None:
        return fallback
    if len(contacts) != 1:
        raise DialogError(f"a dialog-creating message needs exactly one Contact, got {len(contacts)}")
    return contacts[0].uri


class Dialog:
    """One dialog's state. Mutable: CSeq numbers advance and target refreshes change the target."""

    def __init__(
        self,
        *,
        call_id: str,
        local: NameAddress,
        remote: NameAddress,
        remote_target: URI,
        route_set: Iterable[NameAddress],
        local_seq: int,
        remote_seq: int | None,
        state: DialogState,
        local_contact: NameAddress | None = None,
    ) -> None:
        # An RFC 2543 end has a null tag (12.2.1.1): "" in the dialog id, no tag on the wire.
        self.id = DialogId(call_id, local.tag or "", remote.tag or "")  # tags never change in a dialog
        self.call_id = call_id
        self.local = local  # our From (with our tag) in requests we send
        self.remote = remote  # our To (with their tag) in requests we send
        self.remote_target = remote_target
        self.route_set = list(route_set)
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.state = state
        self.local_contact = local_contact
        # Told when what a saved copy holds changes (our CSeq, the target, the route set).
        self.on_change: Callable[[], None] | None = None

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    @classmethod
    def from_uac(
        cls, request: Request, response: Response, *, local_contact: NameAddress | None = None
    ) -> Dialog:
        """The dialog a 1xx (early) or 2xx (confirmed) with a To tag creates for the request's
        sender (RFC 3261 12.1.2). The route set is the Record-Route list reversed."""
        if response.status < 101 or response.status >= 300 or response.to_addr.tag is None:
            raise DialogError(f"a {response.status} without a To tag does not create a dialog")
        return cls(
            call_id=request.call_id,
            local=request.from_addr,
            remote=response.to_addr,
            remote_target=_remote_target(response),
            route_set=reversed(response.record_routes),
            local_seq=request.cseq.seq,
            remote_seq=None,
            state=DialogState.EARLY if response.status < 200 else DialogState.CONFIRMED,
            local_contact=local_contact or _first_contact(request),
        )

    @classmethod
    def from_uas(
        cls,
        request: Request,
        response: Response,
        *,
        local_contact: NameAddress | None = None,
        local_seq: int = 0,
    ) -> Dialog:
        """The dialog our 1xx/2xx (carrying our To tag) creates with the request's sender
        (RFC 3261 12.1.1). The route set is the request's Record-Route list in order. Our own
        CSeq numbering starts after `local_seq` (any value below 2**31 will do, 8.1.1.5)."""
        if response.to_addr.tag is None or response.status < 101 or response.status >= 300:
            raise DialogError(f"a {response.status} without a To tag does not create a dialog")
        return cls(
            call_id=request.call_id,
            local=response.to_addr,
            remote=request.from_addr,
            remote_target=_remote_target(request, fallback=request.from_addr.uri),
            route_set=request.record_routes,
            local_seq=local_seq,
            remote_seq=request.cseq.seq,
            state=DialogState.EARLY if response.status < 200 else DialogState.CONFIRMED,
            local_contact=local_contact or _first_contact(response),
        )

    # --- incoming -----------------------------------------------------------------------------

    def receive_response(self, response: Response) -> None:
        """Update from a response to our request (the UAC side). A 2xx confirms an early dialog
        and fixes its route set (13.2.2.4); a target-refresh 2xx updates the remote target."""
        if self.state is DialogState.TERMINATED or not 101 <= response.status < 300:
            return
        method = response.cseq.method
        if self.state is DialogState.EARLY:
            if response.record_routes:
                self.route_set = list(reversed(response.record_routes))
            if response.status >= 200:
                self.state = DialogState.CONFIRMED
            self._changed()
        if method in TARGET_REFRESH_METHODS and response.contacts:
            target = _remote_target(response)
            if target != self.remote_target:
                self.remote_target = target
                self._changed()

    def receive_request(self, request: Request) -> bool:
        """Account for a request from the peer (RFC 3261 12.2.2). False means its CSeq is lower
        than one already seen: answer 500 Server Internal Error. ACK and CANCEL reuse the
        INVITE's number and are not checked. A BYE terminates the dialog."""
        if request.method not in ("ACK", "CANCEL"):
            seq = request.cseq.seq
            if self.remote_seq is not None and seq < self.remote_seq:
                return False
            self.remote_seq = seq
        if request.method in TARGET_REFRESH_METHODS and request.contacts:
            target = _remote_target(request)
            if target != self.remote_target:
                self.remote_target = target
                self._changed()
        if request.method == "BYE":
            self.state = DialogState.TERMINATED
        return True

    def terminate(self) -> None:
        self.state = DialogState.TERMINATED

    # --- outgoing -----------------------------------------------------------------------------

    @property
    def next_hop(self) -> URI:
        """Where in-dialog requests go first: the top route, else the remote target."""
        return self.route_set[0].uri if self.route_set else self.remote_target

    def create_request(
        self,
        method: str,
        *,
        via: Via,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Request:
        """A new in-dialog request (RFC 3261 12.2.1.1) with the next local CSeq. Target-refresh
        methods carry our Contact. Use `create_ack` for ACK; CANCEL is built from the INVITE."""
        if method in ("ACK", "CANCEL"):
            raise ValueError(f"{method} reuses the INVITE's CSeq; see create_ack / make_cancel")
        if self.state is DialogState.TERMINATED:
            raise DialogError("the dialog has terminated")
        self.local_seq += 1
        self._changed()
        contact = self.local_contact if method in TARGET_REFRESH_METHODS else None
        return self._build(method, self.local_seq, via, contact, headers, body)

    def create_ack(
        self, invite_seq: int, *, via: Via, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> Request:
        """The ACK for a 2xx to our INVITE (RFC 3261 13.2.2.4): the INVITE's CSeq number, a fresh
        branch in `via`, routed like any in-dialog request. It is sent outside any transaction."""
        return self._build("ACK", invite_seq, via, None, headers, body)

    def _build(
        self,
        method: str,
        seq: int,
        via: Via,
        contact: NameAddress | None,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> Request:
        uri, routes = self._request_uri_and_routes()
        return make_request(
            method,
            uri,
            via=via,
            from_addr=self.local,
            to_addr=self.remote,
            call_id=self.call_id,
            cseq=seq,
            contact=contact,
            routes=routes,
            headers=headers,
            body=body,
        )

    def _request_uri_and_routes(self) -> tuple[URI, list[NameAddress]]:
        """Loose routing (first route has `lr`): Request-URI is the remote target, Route the full
        route set. Strict routing: Request-URI is the first route (its URI parameters kept, URI
        headers and `method` dropped, 12.2.1.1 / 19.1.1) and the remote target goes last."""
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0].uri
        if isinstance(first, SipURI) and "lr" not in first.params:
            params = first.params.without("method")
            strict = SipURI(first.host, first.user, first.password, first.port, params, (), first.scheme)
            return strict, [*self.route_set[1:], NameAddress(self.remote_target)]
        return self.remote_target, list(self.route_set)


def _first_contact(message: Message) -> NameAddress | None:
    try:
        contacts = message.contacts
    except SipParseError:
        return None
    return contacts[0] if contacts else None
