"""Pieces shared by the RFC 3261 section 17 transactions: keys, timers, events, the base class.

Transactions are sans-I/O state machines. Every input carries `now` (seconds, any monotonic
origin); outputs are collected until drained:

* `datagrams_to_send()` -> list of `(bytes, destination)`: a plain `(host, port)` is UDP, a
  `Target` names its transport (TCP or TLS: a byte stream, RFC 3261 18.3)
* `next_event()` -> the next event for the transaction user, or None
* `get_timer()` -> the earliest deadline, or None; call `handle_timer(now)` once it has passed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple

from .headers import Via
from .message import BRANCH_MAGIC_COOKIE, Message, Request, Response
from .syntax import unbracket

Address = tuple[str, int]
DEFAULT_PORT: Final = 5060
DEFAULT_TLS_PORT: Final = 5061


class Transport(StrEnum):
    """SIP transports, valued as Via's sent-protocol writes them; URIs say them in lower case."""

    UDP = "UDP"
    TCP = "TCP"
    TLS = "TLS"

    @property
    def reliable(self) -> bool:
        """RFC 3261 17.1.1.2: no retransmissions over a reliable transport."""
        return self is not Transport.UDP

    @property
    def default_port(self) -> int:
        return DEFAULT_TLS_PORT if self is Transport.TLS else DEFAULT_PORT

    @classmethod
    def parse(cls, text: str | None) -> Transport | None:
        """A `transport=` URI parameter or a Via's transport; None for one we do not speak."""
        try:
            return cls((text or "UDP").upper())
        except ValueError:
            return None


class Target(NamedTuple):
    """A destination over a byte stream (TCP or TLS); a UDP destination is a plain `(host, port)`.
    Build either with `destination()`, so each place has one spelling. Host and port come first
    so `dest[0]` and `dest[1]` read the same on both. `reuse_only`: reachable only over a
    connection that is already open (a phone's registration flow, or the source of a request we
    received): when it is gone, sending fails at once instead of dialling an ephemeral port.
    `tls_name`: the name the peer's TLS certificate must carry when it is not `host`: the domain
    that was looked up to find this address (RFC 5922 4.1: not the SRV target's name)."""

    host: str
    port: int
    transport: Transport
    reuse_only: bool = False
    tls_name: str | None = None

    @property
    def connection_key(self) -> tuple[Transport, str, int]:
        """One connection per transport and remote address, whatever name it was checked for (a
        Record-Route naming the same address reuses it)."""
        return self.transport, self.host, self.port


Destination = Address | Target
"""Where a message goes: a plain `(host, port)` is UDP (what every UDP-only call site passes)."""


def destination(
    transport: Transport, host: str, port: int, *, reuse_only: bool = False, tls_name: str | None = None
) -> Destination:
    """The destination for (transport, host, port), e.g. a located RFC 3263 server: plain for UDP.
    `tls_name` is kept for TLS only (the name the certificate is checked against)."""
    if transport is Transport.UDP:
        return host, port
    return Target(host, port, transport, reuse_only, tls_name if transport is Transport.TLS else None)


def transport_of(dest: Destination) -> Transport:
    return dest.transport if isinstance(dest, Target) else Transport.UDP


def address_of(dest: Destination) -> Address:
    return dest[0], dest[1]


def same_destination(a: Destination, b: Destination) -> bool:
    """Equal transport, host and port (whether reuse-only or not)."""
    return transport_of(a) is transport_of(b) and address_of(a) == address_of(b)


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """RFC 3261 timer values (table 4), in seconds."""

    t1: float = 0.5  # RTT estimate
    t2: float = 4.0  # cap on non-INVITE and response retransmit intervals
    t4: float = 5.0  # how long a message can stay in the network
    timer_d: float = 32.0  # INVITE client Completed wait; "at least 32 s" for UDP (17.1.1.2)
    trying_delay: float = 0.2  # 17.2.1: send 100 Trying unless the TU answers within 200 ms

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J, L and M."""
        return 64 * self.t1


DEFAULT_TIMERS: Final = TimerSettings()


class State(StrEnum):
    """Transaction states (RFC 3261 figures 5-8, plus Accepted from RFC 6026)."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class TransactionKey:
    """Transaction identity (RFC 3261 17.1.3 and 17.2.3).

    Clients match on branch + CSeq method. Servers add the top Via sent-by, and file ACK under
    INVITE so that the ACK for a non-2xx response finds its INVITE transaction; CANCEL keeps its
    own method and so is a transaction of its own."""

    branch: str
    method: str
    sent_by: tuple[str, int] | None = None


def client_key(message: Message) -> TransactionKey:
    """Key of the client transaction a request creates or a response belongs to."""
    branch = message.top_via.branch
    if not branch:
        raise ValueError("a client transaction needs a Via branch")
    return TransactionKey(branch, message.cseq.method)


def server_key(message: Message) -> TransactionKey:
    """Key of the server transaction for a request, or for a response the TU sends on it (the
    response repeats the request's top Via, From and CSeq, so both give the same key).

    For a branch without the RFC 3261 magic cookie (an RFC 2543 peer) we key on Call-ID, From tag
    and CSeq number instead: a reduced form of the 17.2.3 fallback that still matches
    retransmissions and the non-2xx ACK."""
    via = message.top_via
    cseq = message.cseq
    method = "INVITE" if cseq.method == "ACK" else cseq.method
    sent_by = (via.host.lower(), via.port or DEFAULT_PORT)
    branch = via.branch or ""
    if not branch.startswith(BRANCH_MAGIC_COOKIE):
        branch = f"rfc2543:{message.call_id}:{message.from_addr.tag}:{cseq.seq}:{branch}"
    return TransactionKey(branch, method, sent_by)


def response_address(via: Via) -> Destination:
    """Where a response goes (RFC 3261 18.2.2 with RFC 3581 rport): the received/rport values a
    server stamped on the Via, else its sent-by, over the Via's transport. maddr (multicast) is not
    supported. Over TCP/TLS the transaction layer prefers the connection the request came on."""
    host = via.received or via.host
    transport = Transport.parse(via.transport) or Transport.UDP
    return destination(transport, unbracket(host), via.rport or via.port or transport.default_port)


# --- events to the transaction user ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request created a server transaction. For a CANCEL, `cancels` is the key of the INVITE
    server transaction it matches, or None (answer the CANCEL with 481, RFC 3261 9.2)."""

    key: TransactionKey
    request: Request
    source: Destination
    cancels: TransactionKey | None = None


@dataclass(frozen=True, slots=True)
class ProvisionalReceived:
    key: TransactionKey
    response: Response


@dataclass(frozen=True, slots=True)
class FinalReceived:
    """A final response. For INVITE, each 2xx (including retransmissions, RFC 6026) is reported so
    the TU can (re)send its ACK; a non-2xx is reported once and ACKed by the transaction."""

    key: TransactionKey
    response: Response


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK for a 2xx: it belongs to the dialog, not to a transaction (RFC 3261 13.3.1.4).
    `key` is the INVITE server transaction that was retransmitting the 2xx, if one matched."""

    key: TransactionKey | None
    request: Request
    source: Destination | None = None


@dataclass(frozen=True, slots=True)
class TimedOut:
    """B/F: no final response. H: no ACK for our non-2xx. L: no ACK for our 2xx (send BYE).
    "transport": the message could not be sent (RFC 3261 17.1.4: the TU treats it like a 503)."""

    key: TransactionKey
    timer: str


@dataclass(frozen=True, slots=True)
class Terminated:
    key: TransactionKey


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response matching no client transaction: typically a 2xx retransmission to re-ACK."""

    response: Response


@dataclass(frozen=True, slots=True)
class MessageDiscarded:
    """A datagram that did not parse; for logging only."""

    reason: str
    source: Destination


Event = (
    RequestReceived
    | ProvisionalReceived
    | FinalReceived
    | AckReceived
    | TimedOut
    | Terminated
    | StrayResponse
    | MessageDiscarded
)


class TransactionStateError(RuntimeError):
    """The transaction user asked for something the current state does not allow."""


class Transaction(ABC):
    """Timer bookkeeping and output queues common to the four state machines."""

    def __init__(self, key: TransactionKey, state: State, settings: TimerSettings) -> None:
        self.key = key
        self.state = state
        self.settings = settings
        self._timers: dict[str, float] = {}
        # Output queues exist only while they hold something: a finished transaction lingers for
        # 32 s, and at hundreds of calls per second every object it keeps is one more for each
        # full pass of the cyclic GC to scan.
        self._datagrams: list[tuple[bytes, Destination]] | None = None
        self._events: deque[Event] | None = None

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def get_timer(self) -> float | None:
        return min(self._timers.values(), default=None)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at `now`, earliest first. Restarted timers are scheduled from
        `now`, so a late call does not cause a burst of catch-up retransmissions."""
        while True:
            due = [(deadline, name) for name, deadline in self._timers.items() if deadline <= now]
            if not due:
                return
            _, name = min(due)
            del self._timers[name]
            self._on_timer(name, now)

    def datagrams_to_send(self) -> list[tuple[bytes, Destination]]:
        out, self._datagrams = self._datagrams, None
        return [] if out is None else out

    def next_event(self) -> Event | None:
        events = self._events
        if not events:
            return None
        event = events.popleft()
        if not events:
            self._events = None
        return event

    @abstractmethod
    def _on_timer(self, name: str, now: float) -> None:
        """React to the named RFC 3261 timer (A, B, D, E, ...) firing at `now`."""

    def _send(self, data: bytes, dest: Destination) -> None:
        if self._datagrams is None:
            self._datagrams = [(data, dest)]
        else:
            self._datagrams.append((data, dest))

    def transport_failed(self) -> None:
        """The message could not be delivered (connection refused or gone, RFC 3261 17.1.4)."""
        if self.state is not State.TERMINATED:
            self._terminate()

    def _emit(self, event: Event) -> None:
        if self._events is None:
            self._events = deque((event,))
        else:
            self._events.append(event)

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self._timers.clear()
        self._emit(Terminated(self.key))
