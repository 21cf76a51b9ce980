"""The SIP endpoint's asyncio adapter on both event loops the server runs on (asyncio, uvloop)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest
import uvloop

from bridgeline.adapters.carriers.sip.transport_udp import SipUdpTransport
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import EndpointConfig, EndpointEvent, IncomingCall, TrunkConfig

TRUNK = ("127.0.0.1", 5070)
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"
INVITE = (
    "INVITE sip:+14155550100@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-armed\r\n"
    "From: <sip:14155551@127.0.0.1:5070>;tag=caller\r\n"
    "To: <sip:+14155550100@127.0.0.1:5060>\r\n"
    "Call-ID: armed@127.0.0.1\r\nCSeq: 1 INVITE\r\n"
    "Contact: <sip:14155551@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n"
    f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}"
).encode()


def endpoint() -> SipEndpoint:
    config = EndpointConfig(("127.0.0.1", 5060), "bench", trunk=TrunkConfig(TRUNK, "trunk", None, None))
    return SipEndpoint(config, random.Random(1))


async def deadline_already_due() -> tuple[list[EndpointEvent], list[object]]:
    """An INVITE handled late (as under load): the transaction's first deadline has passed when
    the adapter arms its timer, and the carrier flushes again before the loop runs that timer."""
    loop = asyncio.get_running_loop()
    errors: list[object] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    events: list[EndpointEvent] = []
    transport = SipUdpTransport(endpoint(), events.append)
    late = transport.now - 1.0
    transport.endpoint.receive_datagram(INVITE, TRUNK, late)
    transport.flush()
    (call,) = events
    assert isinstance(call, IncomingCall)
    transport.endpoint.reject_incoming(call.leg_id, 486, late)  # 486 retransmits from late + T1
    transport.flush()  # arms for a deadline half a second ago
    transport.flush()  # as the carrier may before the loop runs it: must not trip over the handle
    await asyncio.sleep(0.05)  # the overdue retransmission runs and re-arms from now
    due = transport.endpoint.get_timer()
    assert due is not None and due > transport.now
    transport.close()
    return events, errors


@pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_a_timer_already_due_when_armed_fires_on_either_loop(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        events, errors = runner.run(deadline_already_due())
    assert [type(e).__name__ for e in events] == ["IncomingCall", "LegEnded"]
    assert errors == []
