"""Reliable provisional responses (RFC 3262) with real peers: a caller that requires 100rel PRACKs
our 180 and is answered; a phone that answers our INVITE with a reliable 183 and early SDP gets our
PRACK, answers without SDP, and the call talks."""

from __future__ import annotations

import re
from typing import Any

from sipaudio import assert_hears
from sipkit import Ports, Sipp, wait_for
from siplab import ALL_TONES, TONE_A, TONE_B, Lab

INBOUND = ("+14155550177", "sip-e2e-prack-inbound")
CALLER = "+14155551234"
AGENT: dict[str, int] = {}
PORTS_IN_USE = "bridgeline_sip_rtp_ports_in_use"


def sip_config(ports: Ports) -> dict[str, Any]:
    AGENT["port"] = ports.take()
    agent = f"sip:agent@127.0.0.1:{AGENT['port']}"
    return {
        # Calls from the trunk's host are trusted without a digest challenge: the caller is "the trunk".
        "trunk": {"proxy": f"127.0.0.1:{ports.take()}", "domain": "trunk.test"},
        "inbound": [
            {"number": INBOUND[0], "phlo_id": INBOUND[1], "payload": {"customer": "{{from}}", "agent": agent}}
        ],
    }


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def test_a_caller_requiring_100rel_pracks_our_180_and_talks(lab: Lab) -> None:
    agent = lab.sipp(
        "agent",
        "uas_play.xml",
        substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_A))},
        sip_port=AGENT["port"],
    )
    phlo = lab.create_phlo(phlo_id=INBOUND[1])
    caller: Sipp = lab.sipp(
        "caller",
        "uac_prack.xml",
        substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_B)), "CALLER_NUMBER": CALLER},
        remote=lab.server.sip_address,
        service=INBOUND[0],
        user=CALLER,
    )
    lab.capture(agent, caller)

    view = lab.connected(phlo, CALLER, hears=[agent.uri])
    lab.connected(phlo, agent.uri, hears=[CALLER])
    talking = lab.listen()
    assert phlo.member_action(CALLER, "hangup").status_code == 201
    caller.assert_succeeded()  # it PRACKed, got both 200s, and our BYE
    assert phlo.member_action(agent.uri, "hangup").status_code == 201
    lab.assert_ended(phlo, view["mpc_uuid"], agent)

    received = caller.received_messages()
    ringing = next(m for m in received if m.startswith("SIP/2.0 180"))
    assert re.search(r"^Require: 100rel\r?$", ringing, re.MULTILINE), ringing
    assert re.search(r"^RSeq: \d+\r?$", ringing, re.MULTILINE), ringing
    prack_ok = [m for m in received if m.startswith("SIP/2.0 200") and re.search(r"^CSeq: 2 PRACK", m, re.M)]
    assert len(prack_ok) == 1, received
    assert_hears(lab.heard(agent, talking), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(caller, talking), [TONE_A], others(TONE_A))
    wait_for(lambda: lab.server.metrics()[PORTS_IN_USE] == 0, 5, "the RTP ports to be freed")


def test_a_reliable_183_with_early_sdp_is_pracked_and_the_call_talks(lab: Lab) -> None:
    agent = lab.sipp("prack-agent", "uas_prack.xml", substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_A))})
    customer = lab.sipp_phone("customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()

    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, agent.uri, hears=[customer.uri])
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    talking = lab.listen()
    for phone in (agent, customer):
        lab.mpc(phlo).member(phone.uri).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], agent, customer)  # the agent checked Supported and RAck

    prack = next(m for m in agent.received_messages() if m.startswith("PRACK "))
    assert re.search(r"^RAck: 1 \d+ INVITE\r?$", prack, re.MULTILINE), prack
    bye = next(m for m in agent.received_messages() if m.startswith("BYE "))
    prack_cseq = int(re.findall(r"^CSeq: (\d+) PRACK", prack, re.MULTILINE)[0])
    assert int(re.findall(r"^CSeq: (\d+) BYE", bye, re.MULTILINE)[0]) > prack_cseq
    # The 200 had no SDP: the 183's answer is where we send, so the agent hears the customer.
    assert_hears(lab.heard(agent, talking), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(customer, talking), [TONE_A], others(TONE_A))
    wait_for(lambda: lab.server.metrics()[PORTS_IN_USE] == 0, 5, "the RTP ports to be freed")
