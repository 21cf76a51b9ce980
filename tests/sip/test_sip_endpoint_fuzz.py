"""Property tests: hostile datagrams never raise out of SipEndpoint, are answered or dropped and
counted, and leave no state behind once the timers have run."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sipfuzz import SPECIAL, mutated

from bridgeline.sip.dialog import Dialog
from bridgeline.sip.digest import DigestAuth
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import EndpointConfig, LegAnswered, TrunkConfig
from bridgeline.sip.headers import NameAddress, Via, parse_name_address
from bridgeline.sip.message import Request, make_request, make_response, new_branch, parse_message
from bridgeline.sip.offer_answer import answer_offer, make_offer
from bridgeline.sip.sdp import Direction, parse_sdp
from bridgeline.sip.syntax import Params
from bridgeline.sip.transaction import Address
from bridgeline.sip.uri import SipURI, parse_uri

DATA = Path(__file__).parent / "data"
EP_ADDR: Address = ("192.0.2.10", 5060)
PEER: Address = ("198.51.100.7", 5062)
TRUNK: Address = ("203.0.113.5", 5060)
RNG = random.Random(5)
# The message tokens plus the ones that steer the endpoint's dialog and SDP handling.
ENDPOINT_SPECIAL = [*SPECIAL, b"INVITE", b"tag=", b"application/sdp", b"m=audio "]


def endpoint(seed: int = 1) -> SipEndpoint:
    config = EndpointConfig(
        EP_ADDR,
        "bridge.example",
        accounts={"1001": "secret1001"},
        trunk=TrunkConfig(TRUNK, "trunk.example", "u", "p"),
    )
    return SipEndpoint(config, random.Random(seed))


def via() -> Via:
    return Via("UDP", PEER[0], PEER[1], Params([("branch", new_branch(RNG)), ("rport", None)]))


def request(method: str, *, to_tag: str | None = None, body: bytes = b"", auth: bool = False) -> bytes:
    to = parse_name_address("<sip:+14155551234@bridge.example>")
    headers = [("Content-Type", "application/sdp")] if body else []
    req = make_request(
        method,
        parse_uri("sip:+14155551234@192.0.2.10"),
        via=via(),
        from_addr=parse_name_address('"Eve" <sip:1001@bridge.example>;tag=f1'),
        to_addr=to.with_tag(to_tag) if to_tag else to,
        call_id="fuzz-call",
        cseq=5,
        contact=NameAddress(SipURI(PEER[0], user="eve", port=PEER[1])),
        headers=headers,
        body=body,
    )
    if auth:
        req.headers.add(
            "Authorization",
            'Digest username="1001", realm="bridge.example", nonce="1.2.3", uri="sip:x", response="00"',
        )
    return bytes(req)


OFFER = bytes(make_offer(PEER[0], 4000, 1, 1))
SEEDS = [p.read_bytes().replace(b"\n", b"\r\n") for p in sorted(DATA.glob("*.sip"))]
SEEDS += [
    request(m, body=OFFER if m == "INVITE" else b"") for m in ("INVITE", "REGISTER", "OPTIONS", "CANCEL")
]
SEEDS += [request("REGISTER", auth=True), request("BYE", to_tag="t1"), request("ACK", to_tag="t1")]


def settle(ep: SipEndpoint, start: float, until: float = 2000.0) -> None:
    """Run every timer up to `until`, discarding output."""
    now = start
    while (deadline := ep.get_timer()) is not None and deadline <= until:
        now = max(now, deadline)
        ep.handle_timer(now)
        ep.datagrams_to_send()
        while ep.next_event() is not None:
            pass


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.binary(max_size=300) | mutated(SEEDS, ENDPOINT_SPECIAL, 5), min_size=1, max_size=4),
    st.sampled_from([PEER, TRUNK]),
)
def test_garbage_from_anyone_never_raises_and_leaves_nothing(datagrams: list[bytes], source: Address) -> None:
    ep = endpoint()
    for i, data in enumerate(datagrams):
        ep.receive_datagram(data, source, float(i))
        for out, _ in ep.datagrams_to_send():
            parse_message(out)  # whatever we answer is well-formed
    assert ep.stats["internal_errors"] == 0, ep.last_error
    assert ep.stats["received"] == len(datagrams)
    # Only a (mutated) INVITE from the trusted trunk may create a leg; refuse it and let time pass.
    while (event := ep.next_event()) is not None:
        if hasattr(event, "leg_id") and type(event).__name__ == "IncomingCall":
            ep.reject_incoming(event.leg_id, 486, 10.0)
    settle(ep, 10.0)
    assert ep.state_sizes() == dict.fromkeys(ep.state_sizes(), 0)


def established(ep: SipEndpoint) -> tuple[Dialog, Request]:
    """An outbound call answered by a peer built by hand; the peer's dialog and our INVITE."""
    ep.dial(
        "leg",
        SipURI(PEER[0], user="peer", port=PEER[1]),
        caller_id=None,
        offer_sdp=make_offer(EP_ADDR[0], 30000, 1, 1),
        now=0.0,
    )
    [(data, _)] = ep.datagrams_to_send()
    invite = parse_message(data)
    assert isinstance(invite, Request)
    invite.headers.set("Via", f"{invite.headers.get('Via')};received={EP_ADDR[0]}")
    answer, _ = answer_offer(parse_sdp(invite.body), PEER[0], 4000, 1, 1)
    contact = [("Contact", f"<sip:peer@{PEER[0]}:{PEER[1]}>"), ("Content-Type", "application/sdp")]
    ok = make_response(invite, 200, to_tag="peer1", headers=contact, body=bytes(answer))
    ep.receive_datagram(bytes(ok), PEER, 0.1)
    ep.datagrams_to_send()
    assert isinstance(ep.next_event(), LegAnswered)
    return Dialog.from_uas(invite, ok), invite


def in_dialog_seeds(dialog: Dialog) -> list[bytes]:
    hold = bytes(make_offer(PEER[0], 4000, 1, 2, direction=Direction.SENDONLY))
    seeds = []
    for method, body in [("INVITE", hold), ("INVITE", b""), ("UPDATE", hold), ("INFO", b""), ("BYE", b"")]:
        headers = [("Content-Type", "application/sdp")] if body else []
        seeds.append(bytes(dialog.create_request(method, via=via(), headers=headers, body=body)))
    seeds.append(bytes(dialog.create_ack(dialog.local_seq, via=via(), body=hold)))
    return seeds


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_garbage_inside_a_call_never_raises_and_cleans_up(data: st.DataObject) -> None:
    ep = endpoint()
    dialog, invite = established(ep)
    seeds = in_dialog_seeds(dialog)
    ok_again = make_response(invite, 200, to_tag="peer1", headers=[("Contact", f"<sip:peer@{PEER[0]}>")])
    seeds.append(bytes(ok_again))
    for i in range(data.draw(st.integers(1, 4))):
        ep.receive_datagram(data.draw(mutated(seeds, ENDPOINT_SPECIAL, 5)), PEER, 1.0 + i)
        for out, _ in ep.datagrams_to_send():
            parse_message(out)
    assert ep.stats["internal_errors"] == 0, ep.last_error
    while ep.next_event() is not None:
        pass
    ep.hangup("leg", 10.0)  # whatever state the call is in now, hanging up must end it
    settle(ep, 10.0)
    assert ep.state_sizes() == dict.fromkeys(ep.state_sizes(), 0)


def test_registration_auth_garbage_is_refused_without_state() -> None:
    ep = endpoint()
    auth = DigestAuth("1001", "secret1001", RNG)
    ep.receive_datagram(request("REGISTER"), PEER, 0.0)
    [(challenge_bytes, _)] = ep.datagrams_to_send()
    challenge = parse_message(challenge_bytes)
    register = parse_message(request("REGISTER"))
    assert isinstance(register, Request) and challenge.status == 401  # type: ignore[union-attr]
    retry = auth.authorize(register, challenge)  # type: ignore[arg-type]
    assert retry is not None
    tampered = bytes(retry).replace(b'response="', b'response="0')
    ep.receive_datagram(tampered, PEER, 0.5)
    [(forbidden, _)] = ep.datagrams_to_send()
    assert forbidden.startswith(b"SIP/2.0 403")
    settle(ep, 1.0)
    assert ep.state_sizes() == dict.fromkeys(ep.state_sizes(), 0)
