"""Two transaction layers wired back to back over an in-memory, optionally lossy, network."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from bridgeline.sip.headers import parse_name_address, parse_via
from bridgeline.sip.message import (
    Request,
    Response,
    make_cancel,
    make_request,
    make_response,
    new_branch,
    parse_message,
)
from bridgeline.sip.transaction import (
    AckReceived,
    Address,
    Event,
    FinalReceived,
    MessageDiscarded,
    ProvisionalReceived,
    RequestReceived,
    StrayResponse,
    Terminated,
    TimedOut,
)
from bridgeline.sip.transaction_layer import TransactionLayer
from bridgeline.sip.uri import parse_uri

UAC_ADDR: Address = ("192.0.2.1", 5060)
UAS_ADDR: Address = ("192.0.2.2", 5060)


@dataclass
class Endpoint:
    name: str
    addr: Address
    layer: TransactionLayer = field(default_factory=TransactionLayer)
    events: list[Event] = field(default_factory=list)
    on_event: Callable[[Event], None] = lambda event: None


class Network:
    """Delivers datagrams instantly; `drop(n, first_line)` decides the fate of the n-th one."""

    def __init__(self, drop: Callable[[int, str], bool] = lambda n, line: False) -> None:
        self.now = 0.0
        self.uac = Endpoint("uac", UAC_ADDR)
        self.uas = Endpoint("uas", UAS_ADDR)
        self.drop = drop
        self.sent: list[tuple[float, str, str]] = []  # (time, sender, first line)
        self.dropped: list[str] = []

    def flush(self) -> None:
        busy = True
        while busy:
            busy = False
            for src, dst in ((self.uac, self.uas), (self.uas, self.uac)):
                for data, addr in src.layer.datagrams_to_send():
                    assert addr == dst.addr
                    line = data.split(b"\r\n", 1)[0].decode()
                    self.sent.append((self.now, src.name, line))
                    if self.drop(len(self.sent), line):
                        self.dropped.append(line)
                        continue
                    dst.layer.receive_datagram(data, src.addr, self.now)
                    busy = True
                while (event := src.layer.next_event()) is not None:
                    src.events.append(event)
                    src.on_event(event)
                    busy = True

    def run(self, until: float) -> None:
        self.flush()
        while True:
            timers = [t for t in (self.uac.layer.get_timer(), self.uas.layer.get_timer()) if t is not None]
            if not timers or min(timers) > until:
                break
            self.now = min(timers)
            self.uac.layer.handle_timer(self.now)
            self.uas.layer.handle_timer(self.now)
            self.flush()
        self.now = until

    def lines(self, sender: str) -> list[tuple[float, str]]:
        return [(t, line) for t, who, line in self.sent if who == sender]


RNG = random.Random(42)


def new_request(method: str, cseq: int = 1, call_id: str = "call-1") -> Request:
    return make_request(
        method,
        parse_uri("sip:bob@192.0.2.2"),
        via=parse_via(f"SIP/2.0/UDP 192.0.2.1:5060;branch={new_branch(RNG)};rport"),
        from_addr=parse_name_address("<sip:alice@example.com>;tag=a1"),
        to_addr=parse_name_address("<sip:bob@example.com>"),
        call_id=call_id,
        cseq=cseq,
    )


def ack_for_2xx(invite: Request, ok: Response) -> Request:
    """What the dialog layer will build (RFC 3261 13.2.2.4): a new branch, CSeq number of the INVITE."""
    return make_request(
        "ACK",
        invite.uri,
        via=parse_via(f"SIP/2.0/UDP 192.0.2.1:5060;branch={new_branch(RNG)};rport"),
        from_addr=invite.from_addr,
        to_addr=ok.to_addr,
        call_id=invite.call_id,
        cseq=invite.cseq.seq,
    )


def uas_answers(net: Network, *statuses: int) -> None:
    """Server TU: answer every new request with the given statuses (INVITE) or 200 (others)."""

    def on_event(event: Event) -> None:
        if isinstance(event, RequestReceived):
            codes = statuses if event.request.method == "INVITE" else (200,)
            for status in codes:
                net.uas.layer.send_response(make_response(event.request, status, to_tag="b1"), net.now)

    net.uas.on_event = on_event


def uac_acks_2xx(net: Network, invite: Request) -> None:
    def on_event(event: Event) -> None:
        if not isinstance(event, FinalReceived | StrayResponse):
            return
        if 200 <= event.response.status < 300 and event.response.cseq.method == "INVITE":
            net.uac.layer.send_stateless(ack_for_2xx(invite, event.response), UAS_ADDR)

    net.uac.on_event = on_event


def kinds(events: list[Event]) -> list[str]:
    out = []
    for e in events:
        name = type(e).__name__
        if isinstance(e, ProvisionalReceived | FinalReceived):
            name += f"({e.response.status})"
        elif isinstance(e, RequestReceived):
            name += f"({e.request.method})"
        elif isinstance(e, TimedOut):
            name += f"({e.timer})"
        out.append(name)
    return out


def test_invite_200_ack_without_loss() -> None:
    net = Network()
    invite = new_request("INVITE")
    uas_answers(net, 180, 200)
    uac_acks_2xx(net, invite)
    net.uac.layer.send_request(invite, UAS_ADDR, net.now)
    net.run(until=0.0)
    assert [line for _, _, line in net.sent] == [
        "INVITE sip:bob@192.0.2.2 SIP/2.0",
        "SIP/2.0 180 Ringing",
        "SIP/2.0 200 OK",
        "ACK sip:bob@192.0.2.2 SIP/2.0",
    ]
    assert kinds(net.uac.events) == ["ProvisionalReceived(180)", "FinalReceived(200)"]
    assert kinds(net.uas.events) == ["RequestReceived(INVITE)", "AckReceived"]
    received = net.uas.events[0]
    assert isinstance(received, RequestReceived) and received.source == UAC_ADDR
    assert received.request.top_via.rport == 5060 and received.request.top_via.received == "192.0.2.1"
    net.run(until=40.0)
    assert len(net.sent) == 4  # nothing retransmitted
    assert len(net.uac.layer) == len(net.uas.layer) == 0  # Timers M and L cleaned up
    assert kinds(net.uac.events)[-1] == kinds(net.uas.events)[-1] == "Terminated"


def test_lost_invite_is_retransmitted_and_seen_once() -> None:
    net = Network(drop=lambda n, line: n == 1)
    invite = new_request("INVITE")
    uas_answers(net, 200)
    uac_acks_2xx(net, invite)
    net.uac.layer.send_request(invite, UAS_ADDR, 0.0)
    net.run(until=40.0)
    invites = [t for t, line in net.lines("uac") if line.startswith("INVITE")]
    assert invites == [0.0, 0.5]
    assert kinds(net.uas.events).count("RequestReceived(INVITE)") == 1
    assert kinds(net.uac.events).count("FinalReceived(200)") == 1


def test_lost_200_is_retransmitted_by_the_server_until_acked() -> None:
    net = Network(drop=lambda n, line: line == "SIP/2.0 200 OK" and n <= 3)
    invite = new_request("INVITE")
    uas_answers(net, 180, 200)
    uac_acks_2xx(net, invite)
    net.uac.layer.send_request(invite, UAS_ADDR, 0.0)
    net.run(until=40.0)
    assert [t for t, line in net.lines("uas") if line == "SIP/2.0 200 OK"] == [0.0, 0.5]
    assert net.lines("uac")[-1] == (0.5, "ACK sip:bob@192.0.2.2 SIP/2.0")
    assert kinds(net.uas.events).count("AckReceived") == 1
    assert "TimedOut(L)" not in kinds(net.uas.events)


def test_lost_ack_for_2xx_makes_the_client_tu_ack_again() -> None:
    net = Network(drop=lambda n, line: line.startswith("ACK") and n <= 4)
    invite = new_request("INVITE")
    uas_answers(net, 180, 200)
    uac_acks_2xx(net, invite)
    net.uac.layer.send_request(invite, UAS_ADDR, 0.0)
    net.run(until=40.0)
    assert [t for t, line in net.lines("uac") if line.startswith("ACK")] == [0.0, 0.5]
    assert kinds(net.uac.events).count("FinalReceived(200)") == 2  # the retransmission reached the TU
    assert kinds(net.uas.events).count("AckReceived") == 1


def test_busy_with_lost_ack_is_handled_inside_the_transactions() -> None:
    net = Network(drop=lambda n, line: line.startswith("ACK") and n <= 4)
    invite = new_request("INVITE")
    uas_answers(net, 486)
    net.uac.layer.send_request(invite, UAS_ADDR, 0.0)
    net.run(until=40.0)
    assert [line for _, _, line in net.sent] == [
        "INVITE sip:bob@192.0.2.2 SIP/2.0",
        "SIP/2.0 486 Busy Here",
        "ACK sip:bob@192.0.2.2 SIP/2.0",  # dropped
        "SIP/2.0 486 Busy Here",  # Timer G
        "ACK sip:bob@192.0.2.2 SIP/2.0",  # re-ACK from Completed
    ]
    assert kinds(net.uac.events) == ["FinalReceived(486)", "Terminated"]
    assert kinds(net.uas.events) == ["RequestReceived(INVITE)", "Terminated"]  # no TimedOut(H)
    assert len(net.uac.layer) == len(net.uas.layer) == 0


def test_non_invite_with_lost_response() -> None:
    net = Network(drop=lambda n, line: n == 2)
    uas_answers(net)
    net.uac.layer.send_request(new_request("OPTIONS"), UAS_ADDR, 0.0)
    net.run(until=40.0)
    assert net.sent == [
        (0.0, "uac", "OPTIONS sip:bob@192.0.2.2 SIP/2.0"),
        (0.0, "uas", "SIP/2.0 200 OK"),  # dropped
        (0.5, "uac", "OPTIONS sip:bob@192.0.2.2 SIP/2.0"),
        (0.5, "uas", "SIP/2.0 200 OK"),  # repeated by the Completed server transaction
    ]
    assert kinds(net.uac.events) == ["FinalReceived(200)", "Terminated"]
    assert kinds(net.uas.events) == ["RequestReceived(OPTIONS)", "Terminated"]


def test_dead_server_times_out() -> None:
    net = Network(drop=lambda n, line: True)
    key = net.uac.layer.send_request(new_request("OPTIONS"), UAS_ADDR, 0.0)
    net.run(until=40.0)
    assert len(net.sent) == 11
    assert net.uac.events == [TimedOut(key, "F"), Terminated(key)]


def test_cancel_of_a_ringing_invite() -> None:
    net = Network()
    invite = new_request("INVITE")
    cancelled: list[RequestReceived] = []

    def uas(event: Event) -> None:
        if isinstance(event, RequestReceived) and event.request.method == "INVITE":
            net.uas.layer.send_response(make_response(event.request, 180, to_tag="b1"), net.now)
        elif isinstance(event, RequestReceived) and event.request.method == "CANCEL":
            cancelled.append(event)
            assert event.cancels is not None
            invite_txn = net.uas.layer.transaction(event.cancels)
            assert invite_txn is not None
            net.uas.layer.send_response(make_response(event.request, 200, to_tag="b1"), net.now)
            net.uas.layer.send_response(make_response(invite_txn.request, 487, to_tag="b1"), net.now)

    net.uas.on_event = uas
    net.uac.layer.send_request(invite, UAS_ADDR, 0.0)
    net.run(until=1.0)
    net.uac.layer.send_request(make_cancel(invite), UAS_ADDR, net.now)
    net.run(until=50.0)
    assert len(cancelled) == 1
    assert [line for _, _, line in net.sent] == [
        "INVITE sip:bob@192.0.2.2 SIP/2.0",
        "SIP/2.0 180 Ringing",
        "CANCEL sip:bob@192.0.2.2 SIP/2.0",
        "SIP/2.0 200 OK",
        "SIP/2.0 487 Request Terminated",
        "ACK sip:bob@192.0.2.2 SIP/2.0",
    ]
    finals = [e.response.cseq.method for e in net.uac.events if isinstance(e, FinalReceived)]
    assert finals == ["CANCEL", "INVITE"]
    assert len(net.uac.layer) == len(net.uas.layer) == 0


def test_layer_edge_cases() -> None:
    layer = TransactionLayer()
    layer.receive_datagram(b"\r\n\r\n", UAC_ADDR, 0.0)  # keep-alive
    assert layer.next_event() is None
    layer.receive_datagram(b"garbage\r\n\r\n", UAC_ADDR, 0.0)
    event = layer.next_event()
    assert isinstance(event, MessageDiscarded) and event.source == UAC_ADDR
    # A response nobody asked for, e.g. a 2xx retransmission after Timer M.
    stray = make_response(new_request("INVITE"), 200, to_tag="x")
    layer.receive_datagram(bytes(stray), UAS_ADDR, 0.0)
    assert isinstance(layer.next_event(), StrayResponse)
    # An ACK matching nothing goes to the TU; so does a 2xx ACK.
    ack = new_request("ACK")
    layer.receive_datagram(bytes(ack), UAC_ADDR, 0.0)
    event = layer.next_event()
    assert isinstance(event, AckReceived) and event.key is None and event.source == UAC_ADDR
    # A CANCEL matching no INVITE: the TU should answer 481.
    layer.receive_datagram(bytes(new_request("CANCEL")), UAC_ADDR, 0.0)
    event = layer.next_event()
    assert isinstance(event, RequestReceived) and event.cancels is None
    # Stateless fallback for a 2xx without transaction; refusal for others.
    layer.datagrams_to_send()
    layer.send_response(stray, 0.0)
    ((data, dest),) = layer.datagrams_to_send()
    assert dest == UAC_ADDR and parse_message(data) == stray
    with pytest.raises(ValueError):
        layer.send_response(make_response(new_request("OPTIONS"), 200), 0.0)
    request = new_request("OPTIONS")
    layer.send_request(request, UAS_ADDR, 0.0)
    with pytest.raises(ValueError):
        layer.send_request(request, UAS_ADDR, 0.0)


def test_via_stamping_for_nat() -> None:
    layer = TransactionLayer()
    invite = new_request("INVITE")
    invite.headers.set("Via", "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKnat;rport, SIP/2.0/UDP 10.9.9.9")
    invite.headers.add("Via", "SIP/2.0/UDP 10.9.9.8;branch=z9hG4bKlast")
    layer.receive_datagram(bytes(invite), ("203.0.113.9", 40000), 0.0)
    event = layer.next_event()
    assert isinstance(event, RequestReceived)
    vias = event.request.vias
    assert (vias[0].received, vias[0].rport, len(vias)) == ("203.0.113.9", 40000, 3)
    assert event.request.headers.get_all("Via")[1:] == invite.headers.get_all("Via")[1:]
    layer.send_response(make_response(event.request, 180, to_tag="t"), 0.0)
    assert layer.datagrams_to_send()[0][1] == ("203.0.113.9", 40000)
    # Without rport, received is added only when the address differs from sent-by.
    plain = new_request("OPTIONS")
    plain.headers.set("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKplain")
    layer.receive_datagram(bytes(plain), UAC_ADDR, 0.0)
    event = layer.next_event()
    assert isinstance(event, RequestReceived) and event.request.headers.get("Via") == plain.headers.get("Via")
