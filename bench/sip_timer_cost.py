"""Micro-measure: what `SipEndpoint.get_timer()` and an idle `handle_timer(now)` cost with few vs
many ringing call legs (each with a ring-timeout deadline). Both run after every datagram and
timer tick, so their cost must not grow with the number of calls.

Pure and in-process (no socket): N inbound INVITEs from the trunk are fed to one endpoint, then
each call is timed in a loop. To compare with another tree, run its copy with PYTHONPATH set:
    PYTHONPATH=/tmp/old/src .venv/bin/python bench/sip_timer_cost.py

Run: .venv/bin/python bench/sip_timer_cost.py [--legs 10,5000] [--repeat 20000]
"""

from __future__ import annotations

import argparse
import random
import time

from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import EndpointConfig, IncomingCall, TrunkConfig
from bridgeline.sip.headers import NameAddress, Via
from bridgeline.sip.message import make_request
from bridgeline.sip.offer_answer import make_offer
from bridgeline.sip.syntax import Params
from bridgeline.sip.uri import SipURI

EP = ("192.0.2.10", 5060)
TRUNK = ("203.0.113.5", 5060)


def ringing_endpoint(legs: int) -> SipEndpoint:
    trunk = TrunkConfig(TRUNK, "trunk.example", "user", "pass", from_user="+14155550000")
    ep = SipEndpoint(EndpointConfig(EP, "bridge.example", trunk=trunk), random.Random(1))
    body = bytes(make_offer(TRUNK[0], 4000, 5, 1))
    to = NameAddress(SipURI(EP[0], user="+14155551234"))
    for n in range(legs):
        invite = make_request(
            "INVITE",
            to.uri,
            via=Via("UDP", TRUNK[0], TRUNK[1], Params([("branch", f"z9hG4bKcost{n}")])),
            from_addr=NameAddress(
                SipURI("trunk.example", user=f"+1415{n:07d}"), None, Params([("tag", f"t{n}")])
            ),
            to_addr=to,
            call_id=f"cost-{n}",
            cseq=1,
            contact=NameAddress(SipURI(TRUNK[0], user="trunk", port=TRUNK[1])),
            headers=[("Content-Type", "application/sdp")],
            body=body,
        )
        ep.receive_datagram(bytes(invite), TRUNK, n * 1e-3)
    ep.datagrams_to_send()
    calls = 0
    while (event := ep.next_event()) is not None:
        calls += isinstance(event, IncomingCall)
    if calls != legs:
        raise SystemExit(f"expected {legs} ringing legs, got {calls}")
    return ep


def per_call_us(fn: object, repeat: int) -> float:
    assert callable(fn)
    best = float("inf")
    for _ in range(5):  # the best of 5 runs: the least disturbed by the other processes
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / repeat * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", default="10,5000")
    parser.add_argument("--repeat", type=int, default=20000)
    args = parser.parse_args()
    for legs in map(int, args.legs.split(",")):
        ep = ringing_endpoint(legs)
        now = legs * 1e-3  # before any ring timeout or retransmission is due
        get_timer = per_call_us(ep.get_timer, args.repeat)
        handle_timer = per_call_us(lambda ep=ep, now=now: ep.handle_timer(now), args.repeat)
        print(f"{legs:6d} legs: get_timer {get_timer:8.3f} us, idle handle_timer {handle_timer:8.3f} us")


if __name__ == "__main__":
    main()
