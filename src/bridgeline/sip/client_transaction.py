"""Client transactions (RFC 3261 section 17.1, with the RFC 6026 Accepted state).

The transaction sends the request itself on creation; the caller drains `datagrams_to_send()`.
It gives up on a silent server (Timer B/F) but not on one that keeps ringing: after a 1xx to an
INVITE, ending the attempt (CANCEL, Timer C) is the transaction user's decision. Over a reliable
transport (a TCP/TLS `Target`) nothing is retransmitted (Timers A and E unused) and Timers D and K
are zero (17.1.1.2, 17.1.2.2).
"""

from __future__ import annotations

from .headers import Headers
from .message import Request, Response
from .transaction import (
    DEFAULT_TIMERS,
    Destination,
    FinalReceived,
    ProvisionalReceived,
    State,
    TimedOut,
    TimerSettings,
    Transaction,
    client_key,
    transport_of,
)


def make_non2xx_ack(invite: Request, response: Response) -> Request:
    """The ACK a client transaction sends for a 300-699 (RFC 3261 17.1.1.3): Request-URI, Call-ID,
    From, CSeq number and top Via of the INVITE (so it matches the server transaction), To from
    the response (it carries the tag), and the INVITE's Route headers."""
    h = Headers()
    h.add("Via", invite.headers.get_list("Via")[0])
    h.add("Max-Forwards", "70")
    for route in invite.headers.get_all("Route"):
        h.add("Route", route)
    h.add("From", invite.headers.single("From"))
    h.add("To", response.headers.single("To"))
    h.add("Call-ID", invite.headers.single("Call-ID"))
    h.add("CSeq", f"{invite.cseq.seq} ACK")
    h.add("Content-Length", "0")
    return Request("ACK", invite.uri, h)


class _ClientTransaction(Transaction):
    def __init__(
        self, request: Request, destination: Destination, now: float, settings: TimerSettings, state: State
    ) -> None:
        super().__init__(client_key(request), state, settings)
        self.request = request
        self.destination = destination
        self.reliable = transport_of(destination).reliable
        self._data = bytes(request)
        self._interval = settings.t1
        self._send(self._data, destination)
        if not self.reliable:
            self._timers["retransmit"] = now + self._interval
        self._timers["timeout"] = now + settings.timeout

    def transport_failed(self) -> None:
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self._emit(TimedOut(self.key, "transport"))
        super().transport_failed()


class InviteClientTransaction(_ClientTransaction):
    """RFC 3261 17.1.1 (figure 5), Timers A, B, D, and M from RFC 6026.

    Calling: retransmit on Timer A (T1, doubling) until a response; Timer B (64*T1) times out.
    A 2xx moves to Accepted for Timer M (64*T1) so retransmitted 2xx still reach the TU, which
    ACKs them. A 300-699 moves to Completed: the transaction ACKs it, and re-ACKs each
    retransmission for Timer D (32 s)."""

    def __init__(
        self, request: Request, destination: Destination, now: float, settings: TimerSettings = DEFAULT_TIMERS
    ) -> None:
        if request.method != "INVITE":
            raise ValueError("InviteClientTransaction is for INVITE requests")
        super().__init__(request, destination, now, settings, State.CALLING)
        self._ack: bytes | None = None

    def receive(self, response: Response, now: float) -> None:
        if self.state in (State.CALLING, State.PROCEEDING):
            if response.status < 200:
                self.state = State.PROCEEDING
                self._timers.clear()  # no more retransmissions; Timer B only runs in Calling
                self._emit(ProvisionalReceived(self.key, response))
            elif response.status < 300:
                self._emit(FinalReceived(self.key, response))
                self._enter(State.ACCEPTED, "M", now + self.settings.timeout)
            else:
                self._emit(FinalReceived(self.key, response))
                self._ack = bytes(make_non2xx_ack(self.request, response))
                self._send(self._ack, self.destination)
                self._enter(State.COMPLETED, "D", now + (0 if self.reliable else self.settings.timer_d))
        elif self.state is State.ACCEPTED and 200 <= response.status < 300:
            self._emit(FinalReceived(self.key, response))
        elif self.state is State.COMPLETED and response.status >= 300 and self._ack is not None:
            self._send(self._ack, self.destination)  # our ACK was lost: absorb and re-ACK

    def _enter(self, state: State, timer: str, deadline: float) -> None:
        self.state = state
        self._timers.clear()
        self._timers[timer] = deadline

    def _on_timer(self, name: str, now: float) -> None:
        if name == "retransmit":  # Timer A
            self._send(self._data, self.destination)
            self._interval *= 2
            self._timers["retransmit"] = now + self._interval
        elif name == "timeout":  # Timer B
            self._emit(TimedOut(self.key, "B"))
            self._terminate()
        else:  # D or M
            self._terminate()


class NonInviteClientTransaction(_ClientTransaction):
    """RFC 3261 17.1.2 (figure 6): Timer E retransmits (T1 doubling, capped at T2; every T2 once a
    provisional arrived), Timer F (64*T1) times out, Timer K (T4) absorbs retransmitted finals."""

    def __init__(
        self, request: Request, destination: Destination, now: float, settings: TimerSettings = DEFAULT_TIMERS
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"{request.method} does not use a non-INVITE client transaction")
        super().__init__(request, destination, now, settings, State.TRYING)

    def receive(self, response: Response, now: float) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return  # Completed: absorb retransmissions of the final response
        if response.status < 200:
            self.state = State.PROCEEDING
            self._emit(ProvisionalReceived(self.key, response))
            return
        self._emit(FinalReceived(self.key, response))
        self.state = State.COMPLETED
        self._timers.clear()
        self._timers["K"] = now + (0 if self.reliable else self.settings.t4)

    def _on_timer(self, name: str, now: float) -> None:
        if name == "retransmit":  # Timer E
            self._send(self._data, self.destination)
            if self.state is State.PROCEEDING:
                self._interval = self.settings.t2
            else:
                self._interval = min(2 * self._interval, self.settings.t2)
            self._timers["retransmit"] = now + self._interval
        elif name == "timeout":  # Timer F
            self._emit(TimedOut(self.key, "F"))
            self._terminate()
        else:  # K
            self._terminate()


ClientTransaction = InviteClientTransaction | NonInviteClientTransaction
