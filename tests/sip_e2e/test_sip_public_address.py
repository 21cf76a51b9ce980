"""Behind NAT: `public_address` and `rtp.public_host` put a public address (a documentation one,
198.51.100.7, never sent to) in Via, Contact and SDP while every socket stays on 127.0.0.1. The sipp
peers send no RTP, so nothing goes to the SDP's address; what Bridgeline sends comes from loopback."""

from __future__ import annotations

import re
from typing import Any

from pcapkit import sip_messages
from sipkit import Ports
from siplab import Lab

PUBLIC = "198.51.100.7"
NUMBER, CALLER, PHLO_ID = "+14155550177", "+14155551277", "sip-e2e-public-address"


def sip_config(ports: Ports) -> dict[str, Any]:
    return {
        "public_address": PUBLIC,
        "rtp": {"public_host": PUBLIC},
        "trunk": {"proxy": f"127.0.0.1:{ports.take()}", "domain": "trunk.test"},  # trusts 127.0.0.1 callers
        "inbound": [{"number": NUMBER, "phlo_id": PHLO_ID, "payload": {"customer": "{{from}}"}}],
    }


def test_an_outbound_invite_names_the_public_address(lab: Lab) -> None:
    phone = lab.sipp("busy", "uas_reject.xml", substitutions={"FINAL_STATUS": "486 Busy Here"})
    phlo = lab.create_phlo(dial=[("{{customer}}", "customer")])
    lab.run(phlo, customer=phone.uri)
    lab.left(phlo, phone.uri, "busy")
    phone.assert_succeeded()
    invite = phone.received_messages()[0]
    assert invite.startswith("INVITE ")
    port = lab.server.sip_port
    assert re.search(rf"^Via: SIP/2.0/UDP {PUBLIC}:{port};", invite, re.M), invite
    assert f"Contact: <sip:bridgeline@{PUBLIC}:{port}>" in invite, invite
    assert f"c=IN IP4 {PUBLIC}" in invite, invite


def test_an_answered_inbound_call_names_the_public_address_and_media_comes_from_loopback(lab: Lab) -> None:
    phlo = lab.create_phlo(dial=[("{{customer}}", "customer")], phlo_id=PHLO_ID)  # the caller: skipped
    caller = lab.sipp(
        "caller",
        "uac_silent.xml",
        substitutions={"CALLER_NUMBER": CALLER},
        remote=lab.server.sip_address,
        service=NUMBER,
        user=CALLER,
    )
    lab.capture(caller)
    mpc_uuid = lab.connected(phlo, CALLER)["mpc_uuid"]
    lab.listen(seconds=0.3)
    lab.mpc(phlo).member(CALLER).hangup()
    lab.assert_ended(phlo, mpc_uuid, caller)

    answer = next(m for m in caller.received_messages() if m.startswith("SIP/2.0 200") and "INVITE" in m)
    port = lab.server.sip_port
    assert re.search(rf"^Contact: <sip:bridgeline@{PUBLIC}:{port}>", answer, re.M), answer
    assert (
        f"c=IN IP4 {PUBLIC}" in answer
        and int(re.findall(r"^m=audio (\d+) ", answer, re.M)[0]) in lab.server.rtp_range
    )
    bye = next(m for m in caller.received_messages() if m.startswith("BYE "))
    assert re.search(rf"^Via: SIP/2.0/UDP {PUBLIC}:{port};", bye, re.M), bye
    datagrams = lab.stop_capture()
    rtp = [d for d in datagrams if d.sport in lab.server.rtp_range]
    assert rtp, "no RTP reached the caller"
    assert {(d.src, d.dst) for d in rtp} == {("127.0.0.1", "127.0.0.1")}  # bound and sent on loopback
    sip = sip_messages(datagrams, caller.sip_port)
    assert {d.src for d, _ in sip} == {"127.0.0.1"}
