"""The transaction layer: one sans-I/O object between the transports and the transaction user.

Feed it datagrams or whole stream messages (`receive_datagram`, with the source's transport in a
`Target`) and time (`handle_timer`); give it the TU's requests
(`send_request`) and responses (`send_response`). Drain `datagrams_to_send()` to the socket and
`next_event()` to the TU; sleep until `get_timer()`. It routes messages to transactions by key
(RFC 3261 17.1.3, 17.2.3), creates server transactions for new requests, forgets terminated ones,
and stamps received/rport on incoming Vias (18.2.1, RFC 3581). A request from a TCP/TLS
connection is answered over it (18.2.2); `transport_failed` ends the transactions whose messages
could not be delivered (17.1.4).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import replace

from .client_transaction import ClientTransaction, InviteClientTransaction, NonInviteClientTransaction
from .headers import Headers, header_key
from .message import Message, Request, Response, is_keepalive, parse_message
from .server_transaction import InviteServerTransaction, NonInviteServerTransaction, ServerTransaction
from .syntax import SipParseError, split_top_level, unbracket
from .transaction import (
    DEFAULT_TIMERS,
    AckReceived,
    Destination,
    Event,
    MessageDiscarded,
    RequestReceived,
    StrayResponse,
    Terminated,
    TimerSettings,
    TransactionKey,
    address_of,
    client_key,
    response_address,
    same_destination,
    server_key,
    transport_of,
)

Transaction = ClientTransaction | ServerTransaction
_DialogInvite = tuple[str, int, str | None]  # Call-ID, CSeq number, From tag: how a 2xx ACK finds its INVITE


class TransactionLayer:
    """Transaction table plus the UDP transport rules that sit right below it."""

    def __init__(self, settings: TimerSettings = DEFAULT_TIMERS) -> None:
        self.settings = settings
        self._clients: dict[TransactionKey, ClientTransaction] = {}
        self._servers: dict[TransactionKey, ServerTransaction] = {}
        self._invites: dict[_DialogInvite, TransactionKey] = {}
        self._datagrams: list[tuple[bytes, Destination]] = []
        self._events: deque[Event] = deque()
        # (deadline, tie-break, transaction), pushed whenever a transaction may have re-armed its
        # timers; entries whose transaction is gone or whose deadline moved are dropped lazily.
        # Finished transactions linger 32 s (Timers D, J, K...), so a scan would cost O(calls).
        self._deadlines: list[tuple[float, int, Transaction]] = []
        self._tie = itertools.count()

    # --- outputs ----------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Destination]]:
        out, self._datagrams = self._datagrams, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        heap = self._deadlines
        while heap:
            deadline, _, txn = heap[0]
            if self._current(deadline, txn):
                return deadline
            heapq.heappop(heap)
        return None

    def transaction(self, key: TransactionKey) -> Transaction | None:
        """Look a transaction up, e.g. to check its state before responding after a CANCEL."""
        return self._servers.get(key) or self._clients.get(key)

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    # --- inputs -----------------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        due: list[Transaction] = []  # earliest deadline first
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, _, txn = heapq.heappop(self._deadlines)
            if self._current(deadline, txn) and txn not in due:
                due.append(txn)
        for txn in due:
            txn.handle_timer(now)
            self._collect(txn)

    def receive_datagram(self, data: bytes, source: Destination, now: float) -> None:
        if is_keepalive(data):
            return
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._events.append(MessageDiscarded(str(exc), source))
            return
        if isinstance(message, Request):
            self._receive_request(message, source, now)
        else:
            self._receive_response(message, now)

    def send_request(self, request: Request, destination: Destination, now: float) -> TransactionKey:
        """Start a client transaction (the request goes out at once). The request must carry its
        own top Via with a fresh branch. ACK has no transaction: use `send_stateless`."""
        key = client_key(request)
        if key in self._clients:
            raise ValueError(f"a client transaction with branch {key.branch} already exists")
        txn: ClientTransaction
        if request.method == "INVITE":
            txn = InviteClientTransaction(request, destination, now, self.settings)
        else:
            txn = NonInviteClientTransaction(request, destination, now, self.settings)
        self._clients[key] = txn
        self._collect(txn)
        return key

    def send_response(self, response: Response, now: float) -> None:
        """Send a response through its server transaction. A 2xx to an INVITE whose transaction
        has already gone is sent statelessly (the TU retransmitting it itself is legitimate)."""
        txn = self._servers.get(server_key(response))
        if txn is None:
            if response.cseq.method == "INVITE" and 200 <= response.status < 300:
                self.send_stateless(response, response_address(response.top_via))
                return
            raise ValueError(f"no server transaction for {response.status} to {response.cseq}")
        txn.send_response(response, now)
        self._collect(txn)

    def abandon(self, key: TransactionKey) -> bool:
        """Forget a transaction at once, silently. For the TU giving up on an INVITE client
        transaction left in Proceeding, which has no timer of its own: RFC 3261 9.1 lets the UAC
        treat it as cancelled when our CANCEL gets no final response within 64*T1."""
        txn = self._servers.get(key) or self._clients.get(key)
        if txn is None:
            return False
        self._forget(txn)
        return True

    def send_stateless(self, message: Message, destination: Destination) -> None:
        """Send outside any transaction: the ACK for a 2xx, or a response to a stray request."""
        self._datagrams.append((bytes(message), destination))

    def transport_failed(self, destination: Destination, now: float) -> int:
        """Messages for `destination` could not be delivered (a connection refused, failed its TLS
        handshake, or gone): end every transaction sending there; client transactions report
        TimedOut(timer="transport"). A scan, but only on a failure. Returns how many ended."""
        failed = [
            txn
            for txn in (*self._clients.values(), *self._servers.values())
            if same_destination(txn.destination, destination)
        ]
        for txn in failed:
            txn.transport_failed()
            self._collect(txn)
        return len(failed)

    # --- internals --------------------------------------------------------------------------------

    def _receive_request(self, request: Request, source: Destination, now: float) -> None:
        try:
            _stamp_via(request, source)
            key = server_key(request)
            dialog_invite = (request.call_id, request.cseq.seq, request.from_addr.tag)
        except SipParseError as exc:  # e.g. a source address that is not a valid host
            self._events.append(MessageDiscarded(str(exc), source))
            return
        txn = self._servers.get(key)
        if request.method == "ACK":
            if txn is None and (invite_key := self._invites.get(dialog_invite)) is not None:
                txn = self._servers.get(invite_key)  # the ACK for a 2xx has a branch of its own
            if txn is None:
                self._events.append(AckReceived(None, request, source))
                return
            txn.receive(request, now)
            self._collect(txn, source)
            return
        if txn is not None:  # a retransmission
            txn.receive(request, now)
            self._collect(txn)
            return
        new: ServerTransaction
        reply_to = source if transport_of(source).reliable else None  # 18.2.2: the same connection
        if request.method == "INVITE":
            new = InviteServerTransaction(request, now, self.settings, key=key, reply_to=reply_to)
            self._invites[dialog_invite] = key
        else:
            new = NonInviteServerTransaction(request, now, self.settings, key=key, reply_to=reply_to)
        self._servers[key] = new
        cancels = None
        if request.method == "CANCEL":
            invite_key = replace(key, method="INVITE")
            cancels = invite_key if invite_key in self._servers else None
        self._events.append(RequestReceived(key, request, source, cancels))
        self._collect(new)

    def _receive_response(self, response: Response, now: float) -> None:
        branch = response.top_via.branch
        txn = self._clients.get(TransactionKey(branch, response.cseq.method)) if branch else None
        if txn is None:
            self._events.append(StrayResponse(response))
            return
        txn.receive(response, now)
        self._collect(txn)

    def _collect(self, txn: Transaction, source: Destination | None = None) -> None:
        self._datagrams.extend(txn.datagrams_to_send())
        while (event := txn.next_event()) is not None:
            if isinstance(event, AckReceived) and source is not None:
                event = replace(event, source=source)
            self._events.append(event)
            if isinstance(event, Terminated):
                self._forget(txn)
        deadline = txn.get_timer()
        if deadline is not None and self._registered(txn):
            heapq.heappush(self._deadlines, (deadline, next(self._tie), txn))

    def _registered(self, txn: Transaction) -> bool:
        return self._clients.get(txn.key) is txn or self._servers.get(txn.key) is txn

    def _current(self, deadline: float, txn: Transaction) -> bool:
        """Whether a heap entry still stands for the transaction's next deadline."""
        return self._registered(txn) and txn.get_timer() == deadline

    def _forget(self, txn: Transaction) -> None:
        if isinstance(txn, InviteClientTransaction | NonInviteClientTransaction):
            self._clients.pop(txn.key, None)
            return
        self._servers.pop(txn.key, None)
        if isinstance(txn, InviteServerTransaction):
            request = txn.request
            self._invites.pop((request.call_id, request.cseq.seq, request.from_addr.tag), None)


def _stamp_via(request: Request, source: Destination) -> None:
    """RFC 3261 18.2.1 / RFC 3581 4: record the packet's real source on the top Via so responses
    find their way back through NAT."""
    top = request.top_via
    host, port = address_of(source)
    stamped = top
    if unbracket(top.host) != host or top.wants_rport:
        stamped = stamped.with_param("received", host)
    if top.wants_rport:
        stamped = stamped.with_param("rport", str(port))
    if stamped is top:
        return
    # Rewrite only the first element of the first Via line; other lines stay as received.
    items, done = [], False
    for name, value in request.headers:
        if not done and header_key(name) == "via":
            value = ", ".join([str(stamped), *split_top_level(value, ",")[1:]])
            done = True
        items.append((name, value))
    request.headers = Headers(items)
