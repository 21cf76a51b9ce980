"""Single transactions (RFC 3261 section 17) on a virtual clock: exact timer behaviour."""

from __future__ import annotations

import pytest

from bridgeline.sip.client_transaction import InviteClientTransaction, NonInviteClientTransaction
from bridgeline.sip.headers import parse_name_address, parse_via
from bridgeline.sip.message import Request, Response, make_request, make_response, parse_message
from bridgeline.sip.server_transaction import InviteServerTransaction, NonInviteServerTransaction
from bridgeline.sip.transaction import (
    AckReceived,
    Event,
    FinalReceived,
    ProvisionalReceived,
    State,
    Terminated,
    TimedOut,
    TimerSettings,
    Transaction,
    TransactionKey,
    TransactionStateError,
    client_key,
    response_address,
    server_key,
)
from bridgeline.sip.uri import parse_uri

SERVER = ("192.0.2.2", 5060)


def request(method: str, branch: str = "z9hG4bKtest1", cseq: int = 1) -> Request:
    return make_request(
        method,
        parse_uri("sip:bob@192.0.2.2"),
        via=parse_via(f"SIP/2.0/UDP 192.0.2.1:5070;branch={branch};received=198.51.100.1;rport=5071"),
        from_addr=parse_name_address("<sip:alice@example.com>;tag=a1"),
        to_addr=parse_name_address("<sip:bob@example.com>"),
        call_id="call-1",
        cseq=cseq,
        routes=[parse_name_address("<sip:proxy.example.com;lr>")],
    )


def answer(req: Request, status: int) -> Response:
    return make_response(req, status, to_tag="b2")


def drain(txn: Transaction) -> list[Event]:
    events = []
    while (event := txn.next_event()) is not None:
        events.append(event)
    return events


def send_times(txn: Transaction, until: float) -> list[float]:
    """Advance the virtual clock timer by timer; the times at which something was sent."""
    times = []
    while (deadline := txn.get_timer()) is not None and deadline <= until:
        txn.handle_timer(deadline)
        if txn.datagrams_to_send():
            times.append(deadline)
    return times


# --- INVITE client ------------------------------------------------------------------------------


def test_invite_client_timer_a_doubles_until_timer_b() -> None:
    invite = request("INVITE")
    txn = InviteClientTransaction(invite, SERVER, now=0.0)
    assert txn.datagrams_to_send() == [(bytes(invite), SERVER)]
    assert txn.state is State.CALLING and txn.get_timer() == 0.5
    assert send_times(txn, until=31.9) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert drain(txn) == []
    assert txn.get_timer() == 32.0
    txn.handle_timer(32.0)
    assert drain(txn) == [TimedOut(txn.key, "B"), Terminated(txn.key)]
    assert txn.terminated and txn.get_timer() is None


def test_invite_client_retransmissions_are_the_original_bytes_and_late_calls_do_not_burst() -> None:
    invite = request("INVITE")
    txn = InviteClientTransaction(invite, SERVER, now=100.0)
    txn.datagrams_to_send()
    txn.handle_timer(103.0)  # woken up late: one retransmission, next one counted from now
    assert txn.datagrams_to_send() == [(bytes(invite), SERVER)]
    assert txn.get_timer() == 104.0


def test_invite_client_provisional_stops_retransmission() -> None:
    invite = request("INVITE")
    txn = InviteClientTransaction(invite, SERVER, now=0.0)
    txn.datagrams_to_send()
    assert send_times(txn, until=1.0) == [0.5]
    ringing = answer(invite, 180)
    txn.receive(ringing, now=1.0)
    assert drain(txn) == [ProvisionalReceived(txn.key, ringing)]
    assert txn.state is State.PROCEEDING and txn.get_timer() is None  # no A, and B only runs in Calling


def test_invite_client_acks_non_2xx_and_absorbs_retransmissions() -> None:
    invite = request("INVITE")
    txn = InviteClientTransaction(invite, SERVER, now=0.0)
    txn.datagrams_to_send()
    busy = answer(invite, 486)
    txn.receive(busy, now=2.0)
    assert drain(txn) == [FinalReceived(txn.key, busy)]
    ((data, dest),) = txn.datagrams_to_send()
    ack = parse_message(data)
    assert dest == SERVER and isinstance(ack, Request)
    assert ack.method == "ACK" and ack.uri == invite.uri
    assert str(ack.cseq) == "1 ACK" and ack.to_addr.tag == "b2"
    assert ack.headers.get("Via") == invite.headers.get("Via")  # same branch: matches the server txn
    assert ack.headers.get_all("Route") == invite.headers.get_all("Route")
    assert txn.state is State.COMPLETED and txn.get_timer() == 34.0  # Timer D = 32 s
    txn.receive(busy, now=3.0)  # our ACK was lost
    assert txn.datagrams_to_send() == [(data, SERVER)]
    assert drain(txn) == []  # not reported twice
    txn.handle_timer(34.0)
    assert drain(txn) == [Terminated(txn.key)]


def test_invite_client_2xx_goes_to_accepted_and_reports_each_2xx() -> None:
    invite = request("INVITE")
    txn = InviteClientTransaction(invite, SERVER, now=0.0)
    txn.datagrams_to_send()
    ok = answer(invite, 200)
    txn.receive(ok, now=1.0)
    txn.receive(ok, now=1.5)  # retransmitted 2xx: the TU must ACK again
    assert drain(txn) == [FinalReceived(txn.key, ok), FinalReceived(txn.key, ok)]
    assert txn.datagrams_to_send() == []  # the ACK for a 2xx is the TU's job
    assert txn.state is State.ACCEPTED and txn.get_timer() == 33.0  # Timer M = 64*T1
    txn.receive(answer(invite, 486), now=2.0)
    assert drain(txn) == []
    txn.handle_timer(33.0)
    assert drain(txn) == [Terminated(txn.key)]


def test_client_constructors_check_the_method() -> None:
    with pytest.raises(ValueError):
        InviteClientTransaction(request("OPTIONS"), SERVER, 0.0)
    with pytest.raises(ValueError):
        NonInviteClientTransaction(request("INVITE"), SERVER, 0.0)
    with pytest.raises(ValueError):
        NonInviteClientTransaction(request("ACK"), SERVER, 0.0)


# --- non-INVITE client --------------------------------------------------------------------------


def test_non_invite_client_timer_e_caps_at_t2_until_timer_f() -> None:
    txn = NonInviteClientTransaction(request("OPTIONS"), SERVER, now=0.0)
    txn.datagrams_to_send()
    assert send_times(txn, until=31.9) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    txn.handle_timer(32.0)
    assert drain(txn) == [TimedOut(txn.key, "F"), Terminated(txn.key)]


def test_non_invite_client_retransmits_every_t2_once_proceeding() -> None:
    req = request("REGISTER")
    txn = NonInviteClientTransaction(req, SERVER, now=0.0)
    txn.datagrams_to_send()
    assert send_times(txn, until=0.7) == [0.5]
    trying = answer(req, 100)
    txn.receive(trying, now=0.7)
    assert drain(txn) == [ProvisionalReceived(txn.key, trying)]
    assert send_times(txn, until=31.9) == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    txn.handle_timer(32.0)  # Timer F still applies in Proceeding
    assert drain(txn) == [TimedOut(txn.key, "F"), Terminated(txn.key)]


def test_non_invite_client_final_then_timer_k() -> None:
    req = request("BYE")
    txn = NonInviteClientTransaction(req, SERVER, now=0.0)
    txn.datagrams_to_send()
    ok = answer(req, 200)
    txn.receive(ok, now=0.2)
    txn.receive(ok, now=0.3)  # retransmission absorbed
    assert drain(txn) == [FinalReceived(txn.key, ok)]
    assert txn.state is State.COMPLETED and txn.get_timer() == pytest.approx(5.2)  # Timer K = T4
    assert send_times(txn, until=10.0) == []
    assert drain(txn) == [Terminated(txn.key)]


def test_custom_timer_settings() -> None:
    fast = TimerSettings(t1=0.1, t2=0.4)
    txn = NonInviteClientTransaction(request("OPTIONS"), SERVER, now=0.0, settings=fast)
    txn.datagrams_to_send()
    assert send_times(txn, until=2.0) == pytest.approx([0.1, 0.3, 0.7, 1.1, 1.5, 1.9])
    assert len(send_times(txn, until=6.35)) == 11  # every 0.4 s up to 6.3
    assert txn.get_timer() == pytest.approx(6.4)  # Timer F = 64*T1
    txn.handle_timer(6.4)
    assert [type(e) for e in drain(txn)] == [TimedOut, Terminated]


# --- INVITE server ------------------------------------------------------------------------------


def test_invite_server_sends_100_trying_after_200_ms() -> None:
    invite = request("INVITE")
    txn = InviteServerTransaction(invite, now=0.0)
    assert txn.datagrams_to_send() == [] and txn.get_timer() == pytest.approx(0.2)
    txn.handle_timer(0.2)
    ((data, dest),) = txn.datagrams_to_send()
    trying = parse_message(data)
    assert isinstance(trying, Response) and trying.status == 100 and trying.to_addr.tag is None
    assert dest == ("198.51.100.1", 5071)  # Via received/rport (RFC 3581)
    txn.receive(invite, now=0.6)  # a retransmission: repeat the latest provisional
    assert txn.datagrams_to_send() == [(data, dest)]


def test_invite_server_skips_100_when_the_tu_is_quick() -> None:
    invite = request("INVITE")
    txn = InviteServerTransaction(invite, now=0.0)
    ringing = answer(invite, 180)
    txn.send_response(ringing, now=0.05)
    assert txn.datagrams_to_send() == [(bytes(ringing), ("198.51.100.1", 5071))]
    assert txn.get_timer() is None
    txn.receive(invite, now=0.5)
    assert txn.datagrams_to_send() == [(bytes(ringing), ("198.51.100.1", 5071))]


def test_invite_server_retransmitted_invite_before_any_response_gets_100_at_once() -> None:
    invite = request("INVITE")
    immediate = InviteServerTransaction(invite, now=0.0, settings=TimerSettings(trying_delay=0))
    assert len(immediate.datagrams_to_send()) == 1
    txn = InviteServerTransaction(invite, now=0.0)
    txn.receive(invite, now=0.1)
    assert len(txn.datagrams_to_send()) == 1 and txn.get_timer() is None


def test_invite_server_timer_g_until_timer_h() -> None:
    invite = request("INVITE")
    txn = InviteServerTransaction(invite, now=0.0)
    busy = answer(invite, 486)
    txn.send_response(busy, now=0.0)
    txn.datagrams_to_send()
    assert txn.state is State.COMPLETED
    assert send_times(txn, until=31.9) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    txn.handle_timer(32.0)
    assert drain(txn) == [TimedOut(txn.key, "H"), Terminated(txn.key)]


def test_invite_server_ack_confirms_then_timer_i() -> None:
    invite = request("INVITE")
    txn = InviteServerTransaction(invite, now=0.0)
    busy = answer(invite, 486)
    txn.send_response(busy, now=0.0)
    txn.datagrams_to_send()
    assert send_times(txn, until=1.0) == [0.5]
    txn.receive(invite, now=1.0)  # the INVITE again: repeat the final response
    assert txn.datagrams_to_send() == [(bytes(busy), ("198.51.100.1", 5071))]
    ack = request("ACK")
    txn.receive(ack, now=1.2)
    assert txn.state is State.CONFIRMED and drain(txn) == []  # the non-2xx ACK is absorbed
    txn.receive(ack, now=1.3)
    assert send_times(txn, until=100.0) == []
    assert drain(txn) == [Terminated(txn.key)]
    assert txn.terminated


def test_invite_server_retransmits_2xx_until_ack() -> None:
    invite = request("INVITE")
    txn = InviteServerTransaction(invite, now=0.0)
    ok = answer(invite, 200)
    txn.send_response(ok, now=0.0)
    txn.datagrams_to_send()
    assert txn.state is State.ACCEPTED
    assert send_times(txn, until=8.0) == [0.5, 1.5, 3.5, 7.5]
    txn.receive(invite, now=8.0)  # retransmitted INVITE: absorbed in Accepted
    assert txn.datagrams_to_send() == []
    ack = request("ACK", branch="z9hG4bKack2")
    txn.receive(ack, now=8.5)
    txn.receive(ack, now=8.6)
    assert drain(txn) == [AckReceived(txn.key, ack)]
    assert send_times(txn, until=31.9) == []
    txn.handle_timer(32.0)  # Timer L
    assert drain(txn) == [Terminated(txn.key)]


def test_invite_server_2xx_never_acked_times_out_with_timer_l() -> None:
    invite = request("INVITE")
    txn = InviteServerTransaction(invite, now=0.0)
    txn.send_response(answer(invite, 200), now=0.0)
    txn.datagrams_to_send()
    assert send_times(txn, until=31.9) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    txn.handle_timer(32.0)
    assert drain(txn) == [TimedOut(txn.key, "L"), Terminated(txn.key)]


def test_invite_server_refuses_out_of_state_responses() -> None:
    invite = request("INVITE")
    txn = InviteServerTransaction(invite, now=0.0)
    txn.send_response(answer(invite, 486), now=0.0)
    with pytest.raises(TransactionStateError):
        txn.send_response(answer(invite, 200), now=0.1)
    other = InviteServerTransaction(invite, now=0.0)
    with pytest.raises(ValueError):
        other.send_response(answer(request("INVITE", cseq=2), 200), now=0.0)
    with pytest.raises(ValueError):
        InviteServerTransaction(request("BYE"), now=0.0)


# --- non-INVITE server --------------------------------------------------------------------------


def test_non_invite_server_absorbs_and_repeats() -> None:
    req = request("OPTIONS")
    txn = NonInviteServerTransaction(req, now=0.0)
    txn.receive(req, now=0.5)
    assert txn.datagrams_to_send() == [] and txn.get_timer() is None  # Trying: absorbed
    trying = answer(req, 100)
    txn.send_response(trying, now=0.6)
    txn.receive(req, now=1.5)
    assert [d for d, _ in txn.datagrams_to_send()] == [bytes(trying), bytes(trying)]
    ok = answer(req, 200)
    txn.send_response(ok, now=2.0)
    txn.receive(req, now=3.5)
    assert [d for d, _ in txn.datagrams_to_send()] == [bytes(ok), bytes(ok)]
    assert txn.state is State.COMPLETED and txn.get_timer() == 34.0  # Timer J = 64*T1
    with pytest.raises(TransactionStateError):
        txn.send_response(answer(req, 500), now=4.0)
    txn.handle_timer(34.0)
    assert drain(txn) == [Terminated(txn.key)]
    txn.receive(req, now=35.0)
    assert txn.datagrams_to_send() == []


# --- keys and addresses -------------------------------------------------------------------------


def test_keys_match_per_rfc_17_1_3_and_17_2_3() -> None:
    invite = request("INVITE")
    ack = request("ACK")
    cancel = request("CANCEL")
    assert server_key(ack) == server_key(invite)  # the non-2xx ACK finds the INVITE
    assert server_key(cancel) != server_key(invite)  # CANCEL is a transaction of its own
    assert server_key(invite) == TransactionKey("z9hG4bKtest1", "INVITE", ("192.0.2.1", 5070))
    assert server_key(answer(invite, 180)) == server_key(invite)
    assert client_key(answer(invite, 180)) == client_key(invite) == TransactionKey("z9hG4bKtest1", "INVITE")
    assert client_key(answer(cancel, 200)) != client_key(invite)
    old = request("INVITE", branch="1")  # RFC 2543 peer: no magic cookie
    assert server_key(old).branch.startswith("rfc2543:call-1:a1:1:")
    assert server_key(request("ACK", branch="1")) == server_key(old)


def test_response_address() -> None:
    assert response_address(parse_via("SIP/2.0/UDP h.example.com")) == ("h.example.com", 5060)
    assert response_address(parse_via("SIP/2.0/UDP [2001:db8::1]:5070")) == ("2001:db8::1", 5070)
    assert response_address(parse_via("SIP/2.0/UDP 10.0.0.1:5070;received=1.2.3.4")) == ("1.2.3.4", 5070)
    assert response_address(parse_via("SIP/2.0/UDP 10.0.0.1;rport=9;received=1.2.3.4")) == ("1.2.3.4", 9)
