"""SipEndpoint end to end: the endpoint and scripted phones/trunks over an in-memory, lossy network
driven by a virtual clock. The phones are built from the transaction layer, dialog and digest
modules, so both ends speak the same RFC 3261 but through independent code paths."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import pytest

from bridgeline.sip.dialog import Dialog
from bridgeline.sip.digest import DigestAuth, make_challenge, verify_authorization
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import (
    EndpointConfig,
    EndpointEvent,
    EndReason,
    FailReason,
    IncomingCall,
    LegAnswered,
    LegEnded,
    LegFailed,
    LegRinging,
    LegTrying,
    MediaUpdated,
    Registered,
    TrunkConfig,
    Unregistered,
)
from bridgeline.sip.headers import NameAddress, Via, parse_name_address
from bridgeline.sip.message import (
    Request,
    Response,
    make_cancel,
    make_request,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
)
from bridgeline.sip.offer_answer import answer_offer, make_offer, read_answer
from bridgeline.sip.sdp import Direction, SessionDescription, parse_sdp
from bridgeline.sip.syntax import Params
from bridgeline.sip.transaction import (
    AckReceived,
    Address,
    Event,
    FinalReceived,
    ProvisionalReceived,
    RequestReceived,
    StrayResponse,
)
from bridgeline.sip.transaction_layer import TransactionLayer
from bridgeline.sip.uri import SipURI, parse_uri

EP_ADDR: Address = ("192.0.2.10", 5060)
PHONE_ADDR: Address = ("198.51.100.7", 5062)
TRUNK_ADDR: Address = ("203.0.113.5", 5060)
STRANGER_ADDR: Address = ("198.51.100.99", 5060)
DOMAIN = "bridge.example"
ACCOUNTS = {"1001": "secret1001", "alice": "wonderland"}
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER, PRACK, REFER"
TRUNK = TrunkConfig(TRUNK_ADDR, "trunk.example", "bridgeuser", "trunkpass", from_user="+14155550000")


def make_endpoint(*, trunk: TrunkConfig | None = TRUNK, seed: int = 1) -> SipEndpoint:
    config = EndpointConfig(EP_ADDR, DOMAIN, user_agent="Bridgeline/test", accounts=ACCOUNTS, trunk=trunk)
    return SipEndpoint(config, random.Random(seed))


def ep_offer(port: int = 30000) -> SessionDescription:
    return make_offer(EP_ADDR[0], port, session_id=77, version=1)


# --- the network --------------------------------------------------------------------------------

N = TypeVar("N", "EpNode", "Phone")


class EpNode:
    """Adapts SipEndpoint to the network and collects its events."""

    def __init__(self, endpoint: SipEndpoint) -> None:
        self.ep = endpoint
        self.addr = endpoint.config.local_address
        self.events: list[EndpointEvent] = []
        self.on_event: Callable[[EndpointEvent], None] = lambda event: None

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.ep.receive_datagram(data, addr, now)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        return self.ep.datagrams_to_send()

    def get_timer(self) -> float | None:
        return self.ep.get_timer()

    def handle_timer(self, now: float) -> None:
        self.ep.handle_timer(now)

    def poll(self) -> bool:
        busy = False
        while (event := self.ep.next_event()) is not None:
            self.events.append(event)
            self.on_event(event)
            busy = True
        return busy

    def last(self) -> EndpointEvent:
        return self.events[-1]


class Net:
    """Instant delivery between registered nodes; `drop(data, src, dst)` loses datagrams."""

    def __init__(self) -> None:
        self.now = 0.0
        self.nodes: dict[Address, EpNode | Phone] = {}
        self.sent: list[tuple[float, Address, Address, str]] = []
        self.drop: Callable[[bytes, Address, Address], bool] = lambda data, src, dst: False

    def add(self, node: N) -> N:
        self.nodes[node.addr] = node
        return node

    def flush(self) -> None:
        busy = True
        while busy:
            busy = False
            for node in list(self.nodes.values()):
                for data, dst in node.datagrams_to_send():
                    busy = True
                    self.sent.append((self.now, node.addr, dst, data.split(b"\r\n", 1)[0].decode()))
                    target = self.nodes.get(dst)
                    if target is not None and not self.drop(data, node.addr, dst):
                        target.receive_datagram(data, node.addr, self.now)
                busy = node.poll() or busy

    def run(self, until: float) -> None:
        self.flush()
        while True:
            timers = [t for node in self.nodes.values() if (t := node.get_timer()) is not None]
            if not timers or min(timers) > until:
                break
            self.now = max(self.now, min(timers))
            for node in list(self.nodes.values()):
                node.handle_timer(self.now)
            self.flush()
        self.now = until

    def lines(self, src: Address) -> list[str]:
        return [line for _, s, _, line in self.sent if s == src]


class Phone:
    """A scripted SIP phone/trunk: answers what the test tells it to, ACKs 2xx, and by default
    accepts BYE and CANCEL."""

    def __init__(self, addr: Address, user: str = "alice", seed: int = 7) -> None:
        self.addr = addr
        self.user = user
        self.rng = random.Random(seed)
        self.tl = TransactionLayer()
        self.now = 0.0
        self.events: list[Event] = []
        self.requests: list[Request] = []
        self.acks: list[Request] = []
        self.finals: list[Response] = []
        self.provisionals: list[Response] = []
        self.to_tag = "phonetag1"
        self.auto_bye = self.auto_cancel = self.send_acks = True
        self.pending: Request | None = None  # an INVITE we have not answered finally
        self.dialog: Dialog | None = None
        self.invite: Request | None = None  # our latest INVITE (UAC role)
        self.auth: DigestAuth | None = None
        self.offer: SessionDescription | None = None
        self.last_ack: Request | None = None
        self.on_request: Callable[[RequestReceived], bool] = lambda event: False

    @property
    def uri(self) -> SipURI:
        return SipURI(self.addr[0], user=self.user, port=self.addr[1])

    @property
    def contact(self) -> NameAddress:
        return NameAddress(SipURI(self.addr[0], user=self.user, port=self.addr[1]))

    def via(self) -> Via:
        params = Params([("branch", new_branch(self.rng)), ("rport", None)])
        return Via("UDP", self.addr[0], self.addr[1], params)

    # node protocol
    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        return self.tl.datagrams_to_send()

    def get_timer(self) -> float | None:
        return self.tl.get_timer()

    def handle_timer(self, now: float) -> None:
        self.now = now
        self.tl.handle_timer(now)
        self._drain()

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.now = now
        self.tl.receive_datagram(data, addr, now)
        self._drain()

    def poll(self) -> bool:
        return False

    def _drain(self) -> None:
        while (event := self.tl.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, RequestReceived):
                self._on_request(event)
            elif isinstance(event, AckReceived):
                self.acks.append(event.request)
            elif isinstance(event, ProvisionalReceived):
                self.provisionals.append(event.response)
            elif isinstance(event, FinalReceived):
                self.finals.append(event.response)
                self._on_final(event.response)
            elif isinstance(event, StrayResponse) and self.last_ack is not None:
                self.tl.send_stateless(self.last_ack, EP_ADDR)

    # UAS role
    def _on_request(self, event: RequestReceived) -> None:
        request = event.request
        self.requests.append(request)
        if self.on_request(event):
            return
        if request.method == "INVITE" and request.to_addr.tag is None:
            self.pending = request
        elif request.method == "BYE" and self.auto_bye:
            self.respond(request, 200)
            self.dialog = None
        elif request.method == "CANCEL" and self.auto_cancel:
            self.respond(request, 200)
            if self.pending is not None:
                self.respond(self.pending, 487)

    def respond(
        self, request: Request, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> Response:
        extra = [("Contact", str(self.contact)), *(headers or [])]
        if body:
            extra.append(("Content-Type", "application/sdp"))
        response = make_response(request, status, to_tag=self.to_tag, headers=extra, body=body)
        self.tl.send_response(response, self.now)
        if request is self.pending and status >= 200:
            self.pending = None
            if status < 300:
                self.dialog = Dialog.from_uas(request, response)
        return response

    def answer(self, direction: Direction = Direction.SENDRECV, status: int = 200) -> SessionDescription:
        assert self.pending is not None
        answer, _ = answer_offer(parse_sdp(self.pending.body), self.addr[0], 4000, 5, 1, direction=direction)
        self.respond(self.pending, status, bytes(answer))
        return answer

    # UAC role
    def call(
        self,
        ruri: str,
        *,
        auth: DigestAuth | None = None,
        sdp: SessionDescription | None = None,
        dest: Address = EP_ADDR,
    ) -> Request:
        self.offer = sdp or make_offer(self.addr[0], 4000, 5, 1)
        self.auth = auth
        self.invite = make_request(
            "INVITE",
            parse_uri(ruri),
            via=self.via(),
            from_addr=NameAddress(
                SipURI("phones.example", user=self.user), "Alice", Params([("tag", "ft1")])
            ),
            to_addr=NameAddress(parse_uri(ruri)),
            call_id=new_call_id(self.rng),
            cseq=1,
            contact=self.contact,
            headers=[("Content-Type", "application/sdp")],
            body=bytes(self.offer),
        )
        self.tl.send_request(self.invite, dest, self.now)
        return self.invite

    def in_dialog(
        self, method: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> Request:
        assert self.dialog is not None
        extra = list(headers or [])
        if body:
            extra.append(("Content-Type", "application/sdp"))
        request = self.dialog.create_request(method, via=self.via(), headers=extra, body=body)
        if method == "INVITE":
            self.invite = request
        self.tl.send_request(request, EP_ADDR, self.now)
        return request

    def reinvite(self, direction: Direction | None, version: int = 2) -> Request:
        """A re-INVITE offering `direction`, or an offerless one for None."""
        self.offer = (
            None if direction is None else make_offer(self.addr[0], 4000, 5, version, direction=direction)
        )
        return self.in_dialog("INVITE", bytes(self.offer) if self.offer else b"")

    def cancel(self) -> None:
        assert self.invite is not None
        self.tl.send_request(make_cancel(self.invite), EP_ADDR, self.now)

    def _on_final(self, response: Response) -> None:
        if response.status in (401, 407) and self.auth is not None and self.invite is not None:
            retry = self.auth.authorize(self.invite, response)
            if retry is not None:
                self.invite = retry
                self.tl.send_request(retry, EP_ADDR, self.now)
            return
        if response.cseq.method != "INVITE" or response.status >= 300 or self.invite is None:
            return
        if self.dialog is None:
            self.dialog = Dialog.from_uac(self.invite, response)
        body = b""
        if self.offer is None and response.body:  # we sent no offer: the 2xx has one, answer in ACK
            answer, _ = answer_offer(parse_sdp(response.body), self.addr[0], 4000, 5, 3)
            body = bytes(answer)
        headers = [("Content-Type", "application/sdp")] if body else []
        self.last_ack = self.dialog.create_ack(
            self.invite.cseq.seq, via=self.via(), headers=headers, body=body
        )
        if self.send_acks:
            self.tl.send_stateless(self.last_ack, EP_ADDR)

    def register(
        self, *, expires: int | None = 3600, contact: str | None = None, auth: bool = True
    ) -> Request:
        self.auth = DigestAuth(self.user, ACCOUNTS.get(self.user, "wrong"), self.rng) if auth else None
        headers = [("Contact", contact or f"<sip:{self.user}@{self.addr[0]}:{self.addr[1]}>")]
        if expires is not None:
            headers.append(("Expires", str(expires)))
        seq = 1 if self.invite is None else self.invite.cseq.seq + 1  # one Call-ID, rising CSeq
        self.invite = make_request(
            "REGISTER",
            parse_uri(f"sip:{DOMAIN}"),
            via=self.via(),
            from_addr=NameAddress(SipURI(DOMAIN, user=self.user), None, Params([("tag", new_tag(self.rng))])),
            to_addr=NameAddress(SipURI(DOMAIN, user=self.user)),
            call_id=f"reg-{self.user}",
            cseq=seq,
            headers=headers,
        )
        self.tl.send_request(self.invite, EP_ADDR, self.now)
        return self.invite


def setup(phone_addr: Address = PHONE_ADDR, user: str = "alice") -> tuple[Net, EpNode, Phone]:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    phone = net.add(Phone(phone_addr, user))
    return net, node, phone


def names(events: list[EndpointEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def statuses(responses: list[Response]) -> list[int]:
    return [r.status for r in responses]


def answered_outbound(net: Net, node: EpNode, phone: Phone, leg_id: str = "leg1") -> LegAnswered:
    node.ep.dial(leg_id, phone.uri, caller_id="+14155550000", offer_sdp=ep_offer(), now=net.now)
    net.flush()
    assert phone.pending is not None
    phone.respond(phone.pending, 180)
    phone.answer()
    net.flush()
    answered = node.last()
    assert isinstance(answered, LegAnswered) and answered.leg_id == leg_id
    return answered


def answered_inbound(net: Net, node: EpNode, phone: Phone) -> IncomingCall:
    phone.call("sip:+14155551234@bridge.example", auth=DigestAuth("alice", "wonderland", phone.rng))
    net.flush()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall) and incoming.offer is not None
    answer, _ = answer_offer(incoming.offer, EP_ADDR[0], 30002, 9, 1)
    assert node.ep.answer_incoming(incoming.leg_id, answer, net.now)
    net.flush()
    return incoming


def assert_idle(net: Net, node: EpNode, until: float = 400.0) -> None:
    net.run(until)
    assert node.ep.state_sizes() == dict.fromkeys(node.ep.state_sizes(), 0)
    assert node.ep.stats["internal_errors"] == 0


# --- outbound legs ------------------------------------------------------------------------------


def test_outbound_call_answered_acked_and_hung_up() -> None:
    net, node, phone = setup()
    node.ep.dial("leg1", phone.uri, caller_id="+14155550000", offer_sdp=ep_offer(), now=0.0)
    net.flush()
    invite = phone.pending
    assert invite is not None
    assert str(invite.uri) == "sip:alice@198.51.100.7:5062"
    assert invite.from_addr.uri == SipURI(DOMAIN, user="+14155550000") and invite.from_addr.tag
    assert invite.headers.get("User-Agent") == "Bridgeline/test"
    assert invite.contacts[0].uri == SipURI(EP_ADDR[0], user="bridgeline", port=5060)
    phone.respond(invite, 100)
    phone.respond(invite, 180)
    net.flush()
    assert node.events == [LegTrying("leg1"), LegRinging("leg1", 180, None)]
    answer = phone.answer()
    net.flush()
    answered = node.last()
    assert isinstance(answered, LegAnswered)
    assert answered.media.remote_address == PHONE_ADDR[0] and answered.media.remote_port == 4000
    assert answered.media.codec.encoding == "PCMU" and answered.media.direction is Direction.SENDRECV
    assert str(answered.answer_sdp) == str(answer)
    assert len(phone.acks) == 1 and phone.acks[0].cseq.seq == invite.cseq.seq
    assert node.ep.hangup("leg1", net.now)
    net.flush()
    assert [r.method for r in phone.requests] == ["INVITE", "BYE"]
    assert node.last() == LegEnded("leg1", EndReason.LOCAL)
    assert not node.ep.hangup("leg1", net.now)  # already gone: a no-op
    assert_idle(net, node)


def test_lost_ack_is_resent_for_each_2xx_retransmission() -> None:
    net, node, phone = setup()
    acks_dropped: list[bytes] = []

    def drop(data: bytes, src: Address, dst: Address) -> bool:
        if data.startswith(b"ACK") and len(acks_dropped) < 2:
            acks_dropped.append(data)
            return True
        return False

    net.drop = drop
    answered_outbound(net, node, phone)
    assert phone.acks == []
    net.run(5.0)  # the phone retransmits its 200 (T1, 2*T1): each gets the ACK again
    assert len(acks_dropped) == 2 and len(phone.acks) == 1
    assert net.lines(PHONE_ADDR).count("SIP/2.0 200 OK") == 3
    assert names(node.events).count("LegAnswered") == 1


def test_early_media_183_is_reported_with_media() -> None:
    net, node, phone = setup()
    node.ep.dial("leg1", phone.uri, caller_id=None, offer_sdp=ep_offer(), now=0.0)
    net.flush()
    assert phone.pending is not None
    early, _ = answer_offer(parse_sdp(phone.pending.body), PHONE_ADDR[0], 4100, 5, 1)
    phone.respond(phone.pending, 183, bytes(early))
    net.flush()
    ringing = node.last()
    assert isinstance(ringing, LegRinging) and ringing.status == 183
    assert ringing.media is not None and ringing.media.remote_port == 4100


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (486, "busy"),
        (600, "busy"),
        (603, "rejected"),
        (408, "no_answer"),
        (480, "no_answer"),
        (404, "failed"),
        (484, "failed"),
        (410, "failed"),
        (503, "failed"),
        (488, "failed"),
        (302, "failed"),
    ],
)
def test_outbound_failures_are_mapped(status: int, reason: str) -> None:
    net, node, phone = setup()
    node.ep.dial("leg1", phone.uri, caller_id=None, offer_sdp=ep_offer(), now=0.0)
    net.flush()
    assert phone.pending is not None
    phone.respond(phone.pending, 180)
    phone.respond(phone.pending, status)
    net.flush()
    assert node.last() == LegFailed("leg1", status, FailReason(reason))
    assert net.lines(EP_ADDR)[-1].startswith("ACK")  # the transaction ACKs a non-2xx itself
    assert_idle(net, node)


def test_silent_peer_times_out() -> None:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    node.ep.dial("leg1", SipURI("192.0.2.99", user="nobody"), caller_id=None, offer_sdp=ep_offer(), now=0.0)
    net.run(40.0)
    assert node.events == [LegFailed("leg1", 408, FailReason.FAILED)]
    assert net.lines(EP_ADDR).count("INVITE sip:nobody@192.0.2.99 SIP/2.0") == 7  # Timer A doublings
    assert_idle(net, node)


def test_unreachable_targets_fail_at_once() -> None:
    node = EpNode(make_endpoint(trunk=None))
    offer = ep_offer()
    node.ep.dial("a", "1001", caller_id=None, offer_sdp=offer, now=0.0)  # an account, not registered
    node.ep.dial("b", "nobody", caller_id=None, offer_sdp=offer, now=0.0)
    node.ep.dial("c", "+14155551234", caller_id=None, offer_sdp=offer, now=0.0)  # no trunk configured
    node.ep.dial("d", "sip:bob@example.com;transport=sctp", caller_id=None, offer_sdp=offer, now=0.0)
    node.poll()
    assert node.events == [
        LegFailed("a", 480, FailReason.UNREACHABLE),
        LegFailed("b", 404, FailReason.UNREACHABLE),
        LegFailed("c", 404, FailReason.UNREACHABLE),
        LegFailed("d", 416, FailReason.FAILED),
    ]
    assert node.ep.datagrams_to_send() == []
    with pytest.raises(ValueError, match="caller id"):
        node.ep.dial("e", SipURI("192.0.2.99"), caller_id="Bob <x>", offer_sdp=offer, now=0.0)


def test_dial_rejects_a_leg_id_in_use() -> None:
    node = EpNode(make_endpoint())
    node.ep.dial("leg1", SipURI("192.0.2.99"), caller_id=None, offer_sdp=ep_offer(), now=0.0)
    with pytest.raises(ValueError, match="already exists"):
        node.ep.dial("leg1", SipURI("192.0.2.99"), caller_id=None, offer_sdp=ep_offer(), now=0.0)


# --- cancelling ---------------------------------------------------------------------------------


def test_hangup_before_any_provisional_waits_to_cancel() -> None:
    net, node, phone = setup()
    phone.tl.settings = replace(phone.tl.settings, trying_delay=60.0)  # a peer that sends no 100
    node.ep.dial("leg1", phone.uri, caller_id=None, offer_sdp=ep_offer(), now=0.0)
    net.flush()
    assert node.ep.hangup("leg1", net.now)
    net.flush()
    assert not any(line.startswith("CANCEL") for line in net.lines(EP_ADDR))  # RFC 3261 9.1
    assert phone.pending is not None
    phone.respond(phone.pending, 180)  # first provisional: now the CANCEL goes out
    net.flush()
    assert [r.method for r in phone.requests] == ["INVITE", "CANCEL"]
    assert statuses(phone.finals) == [] and "LegRinging" not in names(node.events)
    assert node.events == [LegFailed("leg1", 487, FailReason.CANCELLED)]
    assert_idle(net, node)


def test_hangup_after_ringing_cancels_at_once() -> None:
    net, node, phone = setup()
    node.ep.dial("leg1", phone.uri, caller_id=None, offer_sdp=ep_offer(), now=0.0)
    net.flush()
    assert phone.pending is not None
    invite = phone.pending
    phone.respond(invite, 180)
    net.flush()
    node.ep.hangup("leg1", net.now)
    net.flush()
    cancel = phone.requests[-1]
    assert cancel.method == "CANCEL" and cancel.cseq.seq == invite.cseq.seq
    assert cancel.top_via.branch == invite.top_via.branch
    assert node.last() == LegFailed("leg1", 487, FailReason.CANCELLED)
    assert net.lines(EP_ADDR)[-1] == "ACK sip:alice@198.51.100.7:5062 SIP/2.0"  # the 487's ACK
    assert_idle(net, node)


def test_cancel_200_race_acks_and_byes_the_answer() -> None:
    net, node, phone = setup()
    phone.auto_cancel = False
    node.ep.dial("leg1", phone.uri, caller_id=None, offer_sdp=ep_offer(), now=0.0)
    net.flush()
    assert phone.pending is not None
    invite = phone.pending
    phone.respond(invite, 180)
    net.flush()
    node.ep.hangup("leg1", net.now)
    net.flush()
    cancel = phone.requests[-1]
    phone.answer()  # the 200 crosses our CANCEL
    phone.respond(cancel, 200)
    net.flush()
    assert [r.method for r in phone.requests] == ["INVITE", "CANCEL", "BYE"]
    assert len(phone.acks) == 1
    assert "LegAnswered" not in names(node.events)
    assert node.last() == LegFailed("leg1", 487, FailReason.CANCELLED)
    assert_idle(net, node)


def test_cancel_without_final_response_gives_up_after_64_t1() -> None:
    net, node, phone = setup()
    phone.auto_cancel = False
    node.ep.dial("leg1", phone.uri, caller_id=None, offer_sdp=ep_offer(), now=0.0)
    net.flush()
    assert phone.pending is not None
    phone.respond(phone.pending, 180)
    net.flush()
    node.ep.hangup("leg1", net.now)
    net.run(31.0)
    assert node.last() == LegRinging("leg1", 180, None)
    net.run(33.0)
    assert node.last() == LegFailed("leg1", 408, FailReason.CANCELLED)
    assert node.ep.state_sizes()["legs"] == 0
    assert_idle(net, node)


def test_hangup_of_a_silent_call_ends_on_timer_b() -> None:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    node.ep.dial("leg1", SipURI("192.0.2.99"), caller_id=None, offer_sdp=ep_offer(), now=0.0)
    node.ep.hangup("leg1", 1.0)
    net.run(40.0)
    assert node.events == [LegFailed("leg1", 408, FailReason.CANCELLED)]
    assert_idle(net, node)


# --- BYE ------------------------------------------------------------------------------------------


def test_bye_from_the_peer_ends_the_leg() -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    bye = phone.in_dialog("BYE")
    net.flush()
    assert phone.finals[-1].status == 200 and phone.finals[-1].cseq == bye.cseq
    assert node.last() == LegEnded("leg1", EndReason.REMOTE)
    assert not node.ep.hangup("leg1", net.now)
    assert_idle(net, node)


def test_crossing_byes_end_the_leg_once() -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    phone.auto_bye = False
    node.ep.hangup("leg1", net.now)
    phone.in_dialog("BYE")
    net.flush()
    net.run(40.0)
    assert names(node.events).count("LegEnded") == 1
    assert node.last() == LegEnded("leg1", EndReason.LOCAL)
    assert_idle(net, node)


def test_unanswered_bye_still_ends_the_leg() -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    phone.auto_bye = False
    phone.on_request = lambda event: event.request.method == "BYE"  # swallow it, never answer
    node.ep.hangup("leg1", net.now)
    net.run(31.0)
    assert "LegEnded" not in names(node.events)
    net.run(33.0)  # Timer F
    assert node.last() == LegEnded("leg1", EndReason.LOCAL)
    assert_idle(net, node)


# --- digest towards a trunk -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "challenge", "credentials"),
    [
        (401, "WWW-Authenticate", "Authorization"),
        (407, "Proxy-Authenticate", "Proxy-Authorization"),
    ],
)
def test_trunk_challenge_is_answered_once(status: int, challenge: str, credentials: str) -> None:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    trunk = net.add(Phone(TRUNK_ADDR, "trunk"))
    node.ep.dial("leg1", "+14155551234", caller_id="+14155550100", offer_sdp=ep_offer(), now=0.0)
    net.flush()
    first = trunk.pending
    assert first is not None
    assert str(first.uri) == "sip:+14155551234@trunk.example"
    assert first.from_addr.uri == SipURI("trunk.example", user="+14155550100")
    trunk.respond(first, status, headers=[(challenge, make_challenge("trunk.example", "n0nce"))])
    net.flush()
    second = trunk.pending
    assert second is not None and second is not first
    assert second.cseq.seq == first.cseq.seq + 1 and second.call_id == first.call_id
    assert second.top_via.branch != first.top_via.branch
    header = second.headers.get(credentials)
    assert header is not None
    user = verify_authorization(
        header, "INVITE", {"bridgeuser": "trunkpass"}.get, "trunk.example", lambda n: True
    )
    assert user == "bridgeuser"
    trunk.answer()
    net.flush()
    assert isinstance(node.last(), LegAnswered)
    assert trunk.acks[-1].cseq.seq == second.cseq.seq


def test_trunk_challenge_after_credentials_fails_the_leg() -> None:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    trunk = net.add(Phone(TRUNK_ADDR, "trunk"))
    node.ep.dial("leg1", "+14155551234", caller_id=None, offer_sdp=ep_offer(), now=0.0)
    net.flush()
    for _ in range(3):
        if trunk.pending is None:
            break
        trunk.respond(
            trunk.pending, 407, headers=[("Proxy-Authenticate", make_challenge("trunk.example", "same"))]
        )
        net.flush()
    invites = [r for r in trunk.requests if r.method == "INVITE"]
    assert len(invites) == 2  # the credentials were refused: no second attempt with them
    assert invites[0].from_addr.uri == SipURI("trunk.example", user="+14155550000")  # trunk caller id
    assert node.last() == LegFailed("leg1", 407, FailReason.FAILED)
    assert_idle(net, node)


def test_challenge_from_a_direct_peer_without_credentials_fails() -> None:
    net, node, phone = setup()
    node.ep.dial("leg1", phone.uri, caller_id=None, offer_sdp=ep_offer(), now=0.0)
    net.flush()
    assert phone.pending is not None
    phone.respond(phone.pending, 401, headers=[("WWW-Authenticate", make_challenge("x", "y"))])
    net.flush()
    assert node.last() == LegFailed("leg1", 401, FailReason.FAILED)


# --- registrar ------------------------------------------------------------------------------------


def test_register_with_challenge_lookup_expiry_and_call() -> None:
    net, node, phone = setup(user="1001")
    phone.register(expires=120)
    net.flush()
    assert statuses(phone.finals) == [401, 200]
    challenge = phone.finals[0].headers.get("WWW-Authenticate")
    assert challenge is not None and 'realm="bridge.example"' in challenge and "qop=" in challenge
    ok = phone.finals[1]
    assert ok.headers.get_all("Contact") == ["<sip:1001@198.51.100.7:5062>;expires=120"]
    contact = SipURI(PHONE_ADDR[0], user="1001", port=PHONE_ADDR[1])
    assert node.events == [Registered("1001", contact, contact, 120)]
    assert node.ep.lookup("1001", net.now) == contact
    # Calls to the account go to the registered contact, To carrying the address-of-record.
    node.ep.dial("leg1", "1001", caller_id=None, offer_sdp=ep_offer(), now=net.now)
    net.flush()
    assert phone.pending is not None and phone.pending.uri == contact
    assert phone.pending.to_addr.uri == SipURI(DOMAIN, user="1001")
    phone.respond(phone.pending, 486)
    net.flush()
    assert node.last() == LegFailed("leg1", 486, FailReason.BUSY)
    net.run(119.0)
    assert node.ep.lookup("1001", net.now) == contact
    net.run(121.0)
    assert node.ep.lookup("1001", net.now) is None
    assert node.last() == Unregistered("1001", contact, "expired")
    assert_idle(net, node)


def test_register_refresh_unregister_and_wildcard() -> None:
    net, node, phone = setup(user="1001")
    phone.register(expires=3600)
    net.flush()
    phone.register(expires=3600, contact="<sip:1001@198.51.100.7:5062>, <sip:1001@198.51.100.7:5070>")
    net.flush()
    assert phone.finals[-1].status == 200
    assert sorted(phone.finals[-1].headers.get_list("Contact")) == [
        "<sip:1001@198.51.100.7:5062>;expires=3600",
        "<sip:1001@198.51.100.7:5070>;expires=3600",
    ]
    phone.register(expires=0, contact="<sip:1001@198.51.100.7:5070>")
    net.flush()
    assert phone.finals[-1].headers.get_list("Contact") == ["<sip:1001@198.51.100.7:5062>;expires=3600"]
    assert node.last() == Unregistered("1001", SipURI(PHONE_ADDR[0], user="1001", port=5070), "removed")
    phone.register(expires=0, contact="*")
    net.flush()
    assert phone.finals[-1].status == 200 and phone.finals[-1].headers.get("Contact") is None
    assert node.ep.lookup("1001", net.now) is None
    assert_idle(net, node)


@pytest.mark.parametrize(
    ("expires", "contact", "status", "granted"),
    [
        (30, None, 423, None),  # shorter than the minimum
        (10000, None, 200, "7200"),  # clamped to the maximum
        (None, None, 200, "3600"),  # the default
        (None, "<sip:1001@198.51.100.7:5062>;expires=90", 200, "90"),  # the contact parameter wins
        (3600, "*", 400, None),  # a wildcard needs Expires: 0
        (3600, "<tel:+1415>", 400, None),
    ],
)
def test_register_expiry_rules(
    expires: int | None, contact: str | None, status: int, granted: str | None
) -> None:
    net, _node, phone = setup(user="1001")
    phone.register(expires=expires, contact=contact)
    net.flush()
    final = phone.finals[-1]
    assert final.status == status
    if status == 423:
        assert final.headers.get("Min-Expires") == "60"
    if granted is not None:
        assert final.headers.get_list("Contact")[0].endswith(f";expires={granted}")


def test_register_behind_nat_is_reached_at_its_source() -> None:
    net, node, phone = setup(user="1001")
    phone.register(contact="<sip:1001@10.0.0.5:5060;transport=udp>")
    net.flush()
    registered = node.last()
    assert isinstance(registered, Registered)
    assert registered.contact == SipURI(
        "10.0.0.5", user="1001", port=5060, params=Params([("transport", "udp")])
    )
    target = SipURI(PHONE_ADDR[0], user="1001", port=PHONE_ADDR[1], params=Params([("transport", "udp")]))
    assert registered.target == target == node.ep.lookup("1001", net.now)
    assert phone.finals[-1].headers.get_list("Contact") == [
        "<sip:1001@10.0.0.5:5060;transport=udp>;expires=3600"
    ]


def test_register_with_wrong_password_or_for_someone_else_is_forbidden() -> None:
    net, node, phone = setup(user="mallory")  # not an account: its password is "wrong"
    phone.register()
    net.flush()
    assert statuses(phone.finals) == [401, 403]
    phone.user = "1001"
    request = phone.register(auth=False)
    net.flush()
    assert phone.finals[-1].status == 401
    # Valid credentials for alice cannot register 1001's address-of-record.
    auth = DigestAuth("alice", "wonderland", phone.rng)
    retry = auth.authorize(request, phone.finals[-1])
    assert retry is not None
    phone.tl.send_request(retry, EP_ADDR, net.now)
    net.flush()
    assert phone.finals[-1].status == 403
    assert node.ep.state_sizes()["bindings"] == 0


def test_replayed_or_expired_nonce_is_stale() -> None:
    net, _node, phone = setup(user="1001")
    phone.register()
    net.flush()
    authorised = phone.invite
    assert authorised is not None and authorised.headers.get("Authorization") is not None
    # The same credentials again (nonce count not increased) are a replay: re-challenged as stale.
    replay = Request("REGISTER", authorised.uri, authorised.headers.copy())
    replay.headers.set("Via", str(phone.via()))
    replay.headers.set("CSeq", f"{authorised.cseq.seq + 1} REGISTER")
    phone.auth = None
    phone.tl.send_request(replay, EP_ADDR, net.now)
    net.flush()
    stale = phone.finals[-1]
    assert stale.status == 401 and "stale=TRUE" in (stale.headers.get("WWW-Authenticate") or "")
    net.run(1000.0)  # far past the nonce lifetime
    phone.auth = DigestAuth("1001", ACCOUNTS["1001"], phone.rng)
    old = Request("REGISTER", authorised.uri, authorised.headers.copy())
    old.headers.set("Via", str(phone.via()))
    old.headers.set("CSeq", f"{authorised.cseq.seq + 5} REGISTER")
    phone.invite = old
    phone.tl.send_request(old, EP_ADDR, net.now)
    net.flush()
    assert statuses(phone.finals[-2:]) == [401, 200]  # stale, then DigestAuth retries on its own
    assert "stale=TRUE" in (phone.finals[-2].headers.get("WWW-Authenticate") or "")


# --- inbound calls ----------------------------------------------------------------------------------


def test_inbound_call_from_an_account_with_407_ring_answer_and_hangup() -> None:
    net, node, phone = setup()
    phone.call("sip:+14155551234@bridge.example", auth=DigestAuth("alice", "wonderland", phone.rng))
    net.flush()
    assert statuses(phone.finals) == [407]
    assert 'realm="bridge.example"' in (phone.finals[0].headers.get("Proxy-Authenticate") or "")
    assert statuses(phone.provisionals) == [100]  # for the authorised INVITE, at once
    incoming = node.last()
    assert isinstance(incoming, IncomingCall)
    assert incoming.to_user == "+14155551234" and incoming.account == "alice"
    assert incoming.from_uri == SipURI("phones.example", user="alice") and incoming.from_display == "Alice"
    assert incoming.source == PHONE_ADDR and incoming.offer.media[0].port == 4000
    assert node.ep.ring_incoming(incoming.leg_id, net.now)
    net.flush()
    assert statuses(phone.provisionals) == [100, 180]
    answer, _media = answer_offer(incoming.offer, EP_ADDR[0], 30002, 9, 1)
    assert node.ep.answer_incoming(incoming.leg_id, answer, net.now)
    net.flush()
    ok = phone.finals[-1]
    assert ok.status == 200 and ok.to_addr.tag == phone.provisionals[-1].to_addr.tag
    assert phone.offer is not None and read_answer(phone.offer, parse_sdp(ok.body)).remote_port == 30002
    assert len(net.lines(EP_ADDR)) == net.lines(EP_ADDR).count("SIP/2.0 200 OK") + 3  # 407, 100, 180
    assert not node.ep.answer_incoming(incoming.leg_id, answer, net.now)  # already answered
    node.ep.hangup(incoming.leg_id, net.now)
    net.flush()
    assert phone.requests[-1].method == "BYE"
    assert node.last() == LegEnded(incoming.leg_id, EndReason.LOCAL)
    assert_idle(net, node)


def test_inbound_call_from_the_trunk_is_trusted_by_address() -> None:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    trunk = net.add(Phone((TRUNK_ADDR[0], 5090), "+14155559999"))  # another port, same host
    trunk.call("sip:+14155551234@192.0.2.10")
    net.flush()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall) and incoming.account is None
    assert incoming.to_user == "+14155551234"
    node.ep.reject_incoming(incoming.leg_id, 486, net.now)
    net.flush()
    assert statuses(trunk.finals) == [486]
    assert node.last() == LegEnded(incoming.leg_id, EndReason.LOCAL)
    assert_idle(net, node)


def test_inbound_call_from_a_stranger_is_refused() -> None:
    net, node, phone = setup(STRANGER_ADDR)
    phone.call("sip:+14155551234@bridge.example")  # no credentials at all
    net.flush()
    assert statuses(phone.finals) == [407]
    phone.call("sip:+14155551234@bridge.example", auth=DigestAuth("alice", "guess", phone.rng))
    net.flush()
    assert statuses(phone.finals) == [407, 407, 403]
    assert node.events == []
    net2 = Net()  # with no endpoint accounts at all, strangers get 403 straight away
    config = replace(make_endpoint().config, accounts={})
    node2 = net2.add(EpNode(SipEndpoint(config, random.Random(1))))
    phone2 = net2.add(Phone(STRANGER_ADDR))
    phone2.call("sip:+14155551234@bridge.example")
    net2.flush()
    assert statuses(phone2.finals) == [403] and node2.events == []
    assert_idle(net, node)


def test_cancel_of_a_pending_inbound_call() -> None:
    net, node, phone = setup()
    phone.call("sip:+14155551234@bridge.example", auth=DigestAuth("alice", "wonderland", phone.rng))
    net.flush()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall)
    phone.cancel()
    net.flush()
    assert sorted((r.cseq.method, r.status) for r in phone.finals) == [
        ("CANCEL", 200),
        ("INVITE", 407),
        ("INVITE", 487),
    ]
    assert node.last() == LegEnded(incoming.leg_id, EndReason.REMOTE)
    answer, _ = answer_offer(incoming.offer, EP_ADDR[0], 30002, 9, 1)
    assert not node.ep.answer_incoming(incoming.leg_id, answer, net.now)  # too late: a no-op
    assert_idle(net, node)


def test_cancel_for_an_unknown_transaction_is_481() -> None:
    net, _node, phone = setup()
    phone.invite = make_request(
        "INVITE",
        parse_uri("sip:x@bridge.example"),
        via=phone.via(),
        from_addr=parse_name_address("<sip:a@b>;tag=1"),
        to_addr=parse_name_address("<sip:x@bridge.example>"),
        call_id="nope",
        cseq=1,
    )
    phone.cancel()
    net.flush()
    assert statuses(phone.finals) == [481]


def test_unacked_2xx_hangs_up_after_timer_l() -> None:
    net, node, phone = setup()
    phone.send_acks = False
    incoming = answered_inbound(net, node, phone)
    net.run(31.0)
    assert "LegEnded" not in names(node.events)
    net.run(40.0)
    assert phone.requests[-1].method == "BYE"
    assert node.last() == LegEnded(incoming.leg_id, EndReason.TIMEOUT)
    assert_idle(net, node)


def test_unanswered_inbound_call_times_out_with_480() -> None:
    net, node, phone = setup()
    phone.call("sip:+14155551234@bridge.example", auth=DigestAuth("alice", "wonderland", phone.rng))
    net.run(200.0)
    incoming = node.events[0]
    assert isinstance(incoming, IncomingCall)
    assert phone.finals[-1].status == 480
    assert node.last() == LegEnded(incoming.leg_id, EndReason.TIMEOUT)
    assert_idle(net, node)


def test_bye_before_the_answer_ends_an_inbound_call() -> None:
    net, node, phone = setup()
    phone.call("sip:+14155551234@bridge.example", auth=DigestAuth("alice", "wonderland", phone.rng))
    net.flush()
    incoming = node.last()
    assert isinstance(incoming, IncomingCall)
    node.ep.ring_incoming(incoming.leg_id, net.now)
    net.flush()
    assert phone.invite is not None
    phone.dialog = Dialog.from_uac(phone.invite, phone.provisionals[-1])
    phone.in_dialog("BYE")
    net.flush()
    assert sorted(r.status for r in phone.finals) == [200, 407, 487]
    assert node.last() == LegEnded(incoming.leg_id, EndReason.REMOTE)
    assert_idle(net, node)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"hello", "text/plain", 415),
        (b"v=0\r\nbogus\r\n", "application/sdp", 400),
    ],
)
def test_inbound_invite_with_unusable_body(body: bytes, content_type: str | None, status: int) -> None:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    trunk = net.add(Phone(TRUNK_ADDR))
    invite = trunk.call("sip:+14155551234@192.0.2.10")
    trunk.tl = TransactionLayer()  # forget that one; send a doctored copy instead
    invite.body = body
    invite.headers.remove("Content-Type")
    if content_type:
        invite.headers.add("Content-Type", content_type)
    trunk.tl.send_request(invite, EP_ADDR, 0.0)
    net.flush()
    assert statuses(trunk.finals) == [status] and node.events == []
    assert_idle(net, node)


# --- in-dialog requests -----------------------------------------------------------------------------


@pytest.mark.parametrize("inbound", [False, True])
def test_reinvite_hold_and_unhold_are_mirrored(inbound: bool) -> None:
    net, node, phone = setup()
    if inbound:
        leg_id = answered_inbound(net, node, phone).leg_id
        local_port, version = 30002, 1
    else:
        leg_id, local_port, version = answered_outbound(net, node, phone).leg_id, 30000, 1
    for n, (offered, mirrored) in enumerate(
        [
            (Direction.SENDONLY, Direction.RECVONLY),  # the peer holds us: we must stop sending
            (Direction.INACTIVE, Direction.INACTIVE),
            (Direction.RECVONLY, Direction.SENDONLY),
            (Direction.SENDRECV, Direction.SENDRECV),
        ]
    ):
        phone.reinvite(offered, version=2 + n)
        net.flush()
        ok = phone.finals[-1]
        assert ok.status == 200 and ok.cseq.method == "INVITE"
        answer = parse_sdp(ok.body)
        assert answer.media[0].direction is mirrored and answer.media[0].port == local_port
        assert answer.origin.version == version + 1 + n  # o= version goes up with every answer
        update = node.last()
        assert isinstance(update, MediaUpdated) and update.leg_id == leg_id
        assert update.media.direction is mirrored and update.media.remote_port == 4000
    assert names(node.events).count("MediaUpdated") == 4
    acks = [line for line in net.lines(PHONE_ADDR) if line.startswith("ACK")]
    assert len(acks) == 4 + 2 * inbound  # one per re-INVITE; inbound adds the 407 and 200 ACKs
    node.ep.hangup(leg_id, net.now)
    net.flush()
    assert node.last() == LegEnded(leg_id, EndReason.LOCAL)
    assert_idle(net, node)


def test_offerless_reinvite_gets_an_offer_and_the_ack_answers() -> None:
    net, node, phone = setup()
    answered = answered_outbound(net, node, phone)
    phone.reinvite(Direction.SENDONLY)
    net.flush()
    phone.reinvite(None)  # resume the RFC 3261 14.2 way: no offer in the re-INVITE
    net.flush()
    ok = phone.finals[-1]
    offer = parse_sdp(ok.body)
    assert offer.media[0].direction is Direction.SENDRECV and offer.origin.version == 3
    assert [c for c in offer.media[0].formats] == ["0", "8", "101"]  # our full codec list again
    update = node.last()
    assert isinstance(update, MediaUpdated) and update.leg_id == answered.leg_id
    assert update.media.direction is Direction.SENDRECV


def test_reinvite_with_unacceptable_or_broken_offer() -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    assert phone.dialog is not None
    g729 = (
        b"v=0\r\no=- 5 9 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 18\r\n"
    )
    phone.in_dialog("INVITE", g729)
    net.flush()
    assert phone.finals[-1].status == 488
    phone.in_dialog("INVITE", b"v=0\r\nnonsense\r\n")
    net.flush()
    assert phone.finals[-1].status == 400
    assert names(node.events).count("MediaUpdated") == 0
    phone.reinvite(Direction.SENDONLY, version=3)  # the session survived both
    net.flush()
    assert phone.finals[-1].status == 200


def test_reinvite_glare_is_491() -> None:
    net, node, phone = setup()
    answered = answered_outbound(net, node, phone)
    leg = node.ep._core.legs[answered.leg_id]
    leg.local_reinvite = leg.invite_key  # as if our own re-INVITE were in progress
    phone.reinvite(Direction.SENDONLY)
    net.flush()
    assert phone.finals[-1].status == 491
    leg.local_reinvite = None


def test_update_info_options_and_refused_methods_in_a_dialog() -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    hold = make_offer(PHONE_ADDR[0], 4000, 5, 2, direction=Direction.SENDONLY)
    phone.in_dialog("UPDATE", bytes(hold))
    phone.in_dialog("UPDATE")  # a session refresh, no offer
    phone.in_dialog("INFO", headers=[("Content-Type", "application/dtmf-relay")])
    phone.in_dialog("OPTIONS")
    phone.in_dialog("MESSAGE")
    phone.in_dialog("FOO")
    net.flush()
    assert [(r.cseq.method, r.status) for r in phone.finals[-6:]] == [
        ("UPDATE", 200),
        ("UPDATE", 200),
        ("INFO", 200),
        ("OPTIONS", 200),
        ("MESSAGE", 405),
        ("FOO", 501),
    ]
    assert parse_sdp(phone.finals[-6].body).media[0].direction is Direction.RECVONLY
    for refused in phone.finals[-2:]:  # 405 and 501 both say what is allowed
        assert refused.headers.get("Allow") == ALLOW
    update = node.last()
    assert isinstance(update, MediaUpdated) and update.media.direction is Direction.RECVONLY


def test_out_of_order_cseq_in_a_dialog_is_500() -> None:
    net, node, phone = setup()
    answered_outbound(net, node, phone)
    assert phone.dialog is not None
    phone.in_dialog("INFO")
    phone.in_dialog("INFO")
    phone.dialog.local_seq = 0  # the next request reuses CSeq 1, lower than the last one seen
    phone.in_dialog("INFO")
    net.flush()
    assert statuses(phone.finals[-3:]) == [200, 200, 500]


def test_requests_for_unknown_dialogs_are_481_and_stray_acks_ignored() -> None:
    net, node, phone = setup()
    for method in ("BYE", "INVITE", "INFO", "ACK"):
        request = make_request(
            method,
            parse_uri("sip:bridgeline@192.0.2.10"),
            via=phone.via(),
            from_addr=parse_name_address("<sip:alice@phones.example>;tag=aaa"),
            to_addr=parse_name_address("<sip:bridgeline@bridge.example>;tag=zzz"),
            call_id="no-such-call",
            cseq=7,
        )
        if method == "ACK":
            phone.tl.send_stateless(request, EP_ADDR)
        else:
            phone.tl.send_request(request, EP_ADDR, net.now)
    net.flush()
    assert sorted((r.cseq.method, r.status) for r in phone.finals) == [
        ("BYE", 481),
        ("INFO", 481),
        ("INVITE", 481),
    ]
    assert node.events == []
    assert_idle(net, node)


@pytest.mark.parametrize(
    ("method", "status"),
    [("OPTIONS", 200), ("MESSAGE", 405), ("SUBSCRIBE", 405), ("REFER", 481), ("BREW", 501), ("BYE", 481)],
)
def test_out_of_dialog_methods(method: str, status: int) -> None:
    net, node, phone = setup(STRANGER_ADDR)
    request = make_request(
        method,
        parse_uri("sip:bridgeline@192.0.2.10"),
        via=phone.via(),
        from_addr=parse_name_address("<sip:x@phones.example>;tag=aaa"),
        to_addr=parse_name_address("<sip:bridgeline@bridge.example>"),
        call_id="c1",
        cseq=1,
    )
    phone.tl.send_request(request, EP_ADDR, net.now)
    net.flush()
    final = phone.finals[-1]
    assert final.status == status and final.to_addr.tag is not None
    if status in (200, 405, 501):
        assert final.headers.get("Allow") == ALLOW
    if status == 200:
        assert final.headers.get("Accept") == "application/sdp"
    assert node.ep.responses_sent_by_status == {status: 1}
    assert_idle(net, node)


def test_required_extension_is_420() -> None:
    """Only the extensions we do not implement are refused (100rel and timer are: see
    test_sip_reliable_provisional / test_sip_session_timer)."""
    net, _node, phone = setup()
    invite = phone.call("sip:+1@bridge.example")
    phone.tl = TransactionLayer()
    invite.headers.add("Require", "100rel, precondition")
    invite.headers.add("Require", "Timer,foo")
    phone.tl.send_request(invite, EP_ADDR, 0.0)
    net.flush()
    assert statuses(phone.finals) == [420]
    assert phone.finals[0].headers.get("Unsupported") == "precondition, foo"


def test_malformed_requests_get_400_when_answerable() -> None:
    _net, node, phone = setup(STRANGER_ADDR)
    good = bytes(phone.call("sip:+1@bridge.example"))
    phone.tl = TransactionLayer()
    bad_max_forwards = good.replace(b"Max-Forwards: 70", b"Max-Forwards: lots")
    node.ep.receive_datagram(bad_max_forwards, STRANGER_ADDR, 0.0)
    out = node.ep.datagrams_to_send()
    assert len(out) == 1 and out[0][1] == STRANGER_ADDR  # rport: back to the source port
    assert out[0][0].startswith(b"SIP/2.0 400 Malformed Max-Forwards header\r\n")
    two_contacts = good.replace(b"Contact:", b"Contact: <sip:a@b>, ")  # parses, but no dialog target
    node.ep.receive_datagram(
        two_contacts.replace(b"ft1", b"ft2").replace(b"branch=", b"branch=x"), STRANGER_ADDR, 0
    )
    assert node.ep.stats["parse_errors"] == 1 and node.ep.stats["malformed_answered"] == 1
    for junk in (b"", b"\r\n\r\n", b"\x00\xff" * 40, b"SIP/2.0 200 OK\r\n\r\n", good[:100], b"x" * 70000):
        node.ep.receive_datagram(junk, STRANGER_ADDR, 0.0)
    assert node.ep.stats["keepalives"] == 2 and node.ep.stats["oversized"] == 1
    assert node.ep.stats["internal_errors"] == 0


def test_two_contacts_in_an_invite_is_400() -> None:
    net = Net()
    node = net.add(EpNode(make_endpoint()))
    trunk = net.add(Phone(TRUNK_ADDR))
    invite = trunk.call("sip:+14155551234@192.0.2.10")
    trunk.tl = TransactionLayer()
    invite.headers.add("Contact", "<sip:other@198.51.100.8>")
    trunk.tl.send_request(invite, EP_ADDR, 0.0)
    net.flush()
    assert statuses(trunk.finals) == [400] and node.events == []


# --- bookkeeping ---------------------------------------------------------------------------------------


def test_many_calls_leave_nothing_behind() -> None:
    net, node, phone = setup()
    trunk = net.add(Phone((TRUNK_ADDR[0], 5090), "+14155559999", seed=9))
    for i in range(12):
        leg = answered_outbound(net, node, phone, leg_id=f"out{i}")
        if i % 2:
            node.ep.hangup(leg.leg_id, net.now)
        else:
            phone.in_dialog("BYE")
        phone.dialog = None
        net.run(net.now + 1.0)
        trunk.dialog = None
        trunk.call("sip:+14155551234@192.0.2.10")
        net.flush()
        incoming = node.last()
        assert isinstance(incoming, IncomingCall)
        answer, _ = answer_offer(incoming.offer, EP_ADDR[0], 30002, 9, 1)
        node.ep.answer_incoming(incoming.leg_id, answer, net.now)
        net.flush()
        if i % 3 == 0:
            trunk.in_dialog("BYE")
        else:
            node.ep.hangup(incoming.leg_id, net.now)
        net.run(net.now + 1.0)
    assert names(node.events).count("LegAnswered") == names(node.events).count("IncomingCall") == 12
    assert names(node.events).count("LegEnded") == 24
    assert node.ep.state_sizes()["legs"] == node.ep.state_sizes()["dialogs"] == 0
    assert_idle(net, node, until=net.now + 100.0)
