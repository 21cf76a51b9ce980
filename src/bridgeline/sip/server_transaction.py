"""Server transactions (RFC 3261 section 17.2, with the RFC 6026 Accepted state).

Responses go to the address RFC 3261 18.2.2 derives from the request's top Via, so the Via
should already carry the received/rport values (the transaction layer stamps them); a request
that came over TCP/TLS is answered over its connection (`reply_to`). Over a reliable transport a
non-2xx final is not retransmitted (Timer G unused) and Timers I and J are zero (17.2.1, 17.2.2).

One deliberate extension: in Accepted, the INVITE server transaction also retransmits the 2xx
(T1 doubling, capped at T2) until the ACK arrives. RFC 3261 13.3.1.4 gives that job to the UAS
core, but the transaction already owns the bytes, the destination and the timers.
"""

from __future__ import annotations

from .message import Request, Response, make_response
from .transaction import (
    DEFAULT_TIMERS,
    AckReceived,
    Destination,
    State,
    TimedOut,
    TimerSettings,
    Transaction,
    TransactionKey,
    TransactionStateError,
    response_address,
    server_key,
    transport_of,
)


class _ServerTransaction(Transaction):
    def __init__(
        self,
        request: Request,
        settings: TimerSettings,
        state: State,
        key: TransactionKey | None,
        reply_to: Destination | None,
    ) -> None:
        super().__init__(key or server_key(request), state, settings)
        self.request = request
        self.destination = reply_to if reply_to is not None else response_address(request.top_via)
        self.reliable = transport_of(self.destination).reliable
        self._last: bytes | None = None  # most recent response, resent on retransmissions

    def _respond(self, response: Response) -> None:
        if response.cseq != self.request.cseq:
            raise ValueError(f"response CSeq {response.cseq} does not match {self.request.cseq}")
        self._last = bytes(response)
        self._send(self._last, self.destination)


class InviteServerTransaction(_ServerTransaction):
    """RFC 3261 17.2.1 (figure 7), Timers G, H, I, L (RFC 6026) and the 100 Trying rule.

    Proceeding: a 100 Trying goes out after `trying_delay` unless the TU responded first, or at
    once if the INVITE is retransmitted before then. 300-699 -> Completed: retransmit on Timer G
    until the ACK (-> Confirmed, absorb for Timer I) or Timer H. 2xx -> Accepted for Timer L:
    retransmit the 2xx until its ACK, which goes to the TU; absorb INVITE retransmissions."""

    def __init__(
        self,
        request: Request,
        now: float,
        settings: TimerSettings = DEFAULT_TIMERS,
        *,
        key: TransactionKey | None = None,  # server_key(request), when the caller has it already
        reply_to: Destination | None = None,  # the connection a TCP/TLS request came on
    ) -> None:
        if request.method != "INVITE":
            raise ValueError("InviteServerTransaction is for INVITE requests")
        super().__init__(request, settings, State.PROCEEDING, key, reply_to)
        self._interval = settings.t1
        self._acked = False
        if settings.trying_delay <= 0:
            self._send_trying()
        else:
            self._timers["trying"] = now + settings.trying_delay

    def _send_trying(self) -> None:
        self._timers.pop("trying", None)
        self._respond(make_response(self.request, 100))

    def receive(self, request: Request, now: float) -> None:
        """A retransmitted INVITE, or an ACK."""
        if request.method == "ACK":
            if self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                self._timers.clear()
                self._timers["I"] = now + (0 if self.reliable else self.settings.t4)
            elif self.state is State.ACCEPTED and not self._acked:
                self._acked = True
                self._timers.pop("2xx", None)
                self._emit(AckReceived(self.key, request))
            return
        if self.state is State.PROCEEDING:
            if self._last is None:
                self._send_trying()
            else:
                self._send(self._last, self.destination)
        elif self.state is State.COMPLETED and self._last is not None:
            self._send(self._last, self.destination)

    def send_response(self, response: Response, now: float) -> None:
        if self.state is State.ACCEPTED and 200 <= response.status < 300:
            self._respond(response)  # the TU may resend or send another 2xx (RFC 6026 8.5)
            return
        if self.state is not State.PROCEEDING:
            raise TransactionStateError(f"cannot send {response.status} in state {self.state}")
        self._timers.pop("trying", None)
        self._respond(response)
        if response.status < 200:
            return
        if response.status < 300:
            self.state = State.ACCEPTED
            self._timers["2xx"] = now + self._interval
            self._timers["L"] = now + self.settings.timeout
        else:
            self.state = State.COMPLETED
            if not self.reliable:
                self._timers["G"] = now + self._interval
            self._timers["H"] = now + self.settings.timeout

    def _on_timer(self, name: str, now: float) -> None:
        if name == "trying":
            if self.state is State.PROCEEDING and self._last is None:
                self._send_trying()
        elif name in ("G", "2xx"):
            if self._last is not None:
                self._send(self._last, self.destination)
            self._interval = min(2 * self._interval, self.settings.t2)
            self._timers[name] = now + self._interval
        elif name == "H":
            self._emit(TimedOut(self.key, "H"))
            self._terminate()
        elif name == "L":
            if not self._acked:
                self._emit(TimedOut(self.key, "L"))
            self._terminate()
        else:  # I
            self._terminate()


class NonInviteServerTransaction(_ServerTransaction):
    """RFC 3261 17.2.2 (figure 8): retransmitted requests are absorbed, answered with the last
    provisional or final response; Timer J (64*T1) keeps the final response around."""

    def __init__(
        self,
        request: Request,
        now: float,
        settings: TimerSettings = DEFAULT_TIMERS,
        *,
        key: TransactionKey | None = None,  # server_key(request), when the caller has it already
        reply_to: Destination | None = None,  # the connection a TCP/TLS request came on
    ) -> None:
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"{request.method} does not use a non-INVITE server transaction")
        super().__init__(request, settings, State.TRYING, key, reply_to)

    def receive(self, request: Request, now: float) -> None:
        """A retransmission of the request."""
        if self._last is not None and self.state is not State.TERMINATED:
            self._send(self._last, self.destination)

    def send_response(self, response: Response, now: float) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            raise TransactionStateError(f"cannot send {response.status} in state {self.state}")
        self._respond(response)
        if response.status < 200:
            self.state = State.PROCEEDING
        else:
            self.state = State.COMPLETED
            self._timers["J"] = now + (0 if self.reliable else self.settings.timeout)

    def _on_timer(self, name: str, now: float) -> None:
        self._terminate()  # J


ServerTransaction = InviteServerTransaction | NonInviteServerTransaction
