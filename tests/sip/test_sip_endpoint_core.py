"""EndpointCore's leg tables: dropping a leg unmaps its dialogs through the leg's own index (it no
longer scans every dialog), and only the entries that still name that leg."""

from __future__ import annotations

import random

from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.endpoint_core import EndpointCore
from bridgeline.sip.events import EndpointConfig, IncomingCall, TrunkConfig
from bridgeline.sip.headers import NameAddress, Via
from bridgeline.sip.message import make_request
from bridgeline.sip.offer_answer import make_offer
from bridgeline.sip.syntax import Params
from bridgeline.sip.uri import SipURI

EP = ("192.0.2.10", 5060)
PEER = ("203.0.113.5", 5060)  # the trunk: its calls need no digest


def ringing(calls: int) -> tuple[SipEndpoint, EndpointCore, list[str]]:
    """An endpoint with `calls` inbound calls ringing (each has its early dialog registered)."""
    trunk = TrunkConfig(PEER, "trunk.example", "user", "pass", from_user="+14155550000")
    ep = SipEndpoint(EndpointConfig(EP, "bridge.example", trunk=trunk), random.Random(1))
    to = NameAddress(SipURI(EP[0], user="+14155551234"))
    for n in range(calls):
        invite = make_request(
            "INVITE",
            to.uri,
            via=Via("UDP", PEER[0], PEER[1], Params([("branch", f"z9hG4bKcore{n}")])),
            from_addr=NameAddress(SipURI("peer.example", user=f"u{n}"), None, Params([("tag", f"t{n}")])),
            to_addr=to,
            call_id=f"core-{n}",
            cseq=1,
            contact=NameAddress(SipURI(PEER[0], user="peer", port=PEER[1])),
            headers=[("Content-Type", "application/sdp")],
            body=bytes(make_offer(PEER[0], 4000, 5, 1)),
        )
        ep.receive_datagram(bytes(invite), PEER, 0.0)
    leg_ids = []
    while (event := ep.next_event()) is not None:
        if isinstance(event, IncomingCall):
            leg_ids.append(event.leg_id)
    assert len(leg_ids) == calls
    return ep, ep._core, leg_ids


def test_drop_unmaps_exactly_the_legs_dialogs() -> None:
    ep, core, leg_ids = ringing(4)
    assert ep.state_sizes()["dialogs"] == 4
    first = core.legs[leg_ids[0]]
    assert len(first.dialog_ids) == 1 and all(core.by_dialog[d] == first.leg_id for d in first.dialog_ids)
    core.drop(first)
    assert ep.state_sizes()["dialogs"] == 3
    assert first.leg_id not in core.by_dialog.values() and not first.dialog_ids
    core.drop(first)  # twice: nothing more goes
    assert sorted(core.by_dialog.values()) == sorted(leg_ids[1:])


def test_a_dialog_id_now_naming_another_leg_stays_mapped() -> None:
    _, core, leg_ids = ringing(2)
    old, new = core.legs[leg_ids[0]], core.legs[leg_ids[1]]
    (shared,) = old.dialog_ids
    core.track_dialog(new, shared)  # the id now names the other leg
    core.drop(old)
    assert core.by_dialog[shared] == new.leg_id
    core.drop(new)
    assert core.by_dialog == {}
