"""An inbound INVITE without SDP (late offer, RFC 3261 13.2.1), as gateways send it: Bridgeline puts
its offer in the 200 and takes the answer from the ACK; an ACK without an answer ends the call."""

from __future__ import annotations

import re
from typing import Any

from sipaudio import assert_hears
from sipkit import Ports, Sipp, wait_for
from siplab import ALL_TONES, TONE_A, TONE_B, Lab

# A number (and PHLO) per test: the module's tests share one server.
TALKS, NO_ANSWER = ("+14155550188", "sip-e2e-late-offer"), ("+14155550189", "sip-e2e-late-offer-no-answer")
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
            {"number": number, "phlo_id": phlo, "payload": {"customer": "{{from}}", "agent": agent}}
            for number, phlo in (TALKS, NO_ANSWER)
        ],
    }


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def agent_phone(lab: Lab) -> Sipp:
    tone = {"AUDIO_WAV": str(lab.tones.ulaw(TONE_A))}
    return lab.sipp("agent", "uas_play.xml", substitutions=tone, sip_port=AGENT["port"])


def call_in(lab: Lab, scenario: str, number: str) -> Sipp:
    return lab.sipp(
        "caller",
        scenario,
        substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_B)), "CALLER_NUMBER": CALLER},
        remote=lab.server.sip_address,
        service=number,
        user=CALLER,
    )


def test_a_late_offer_call_is_connected_and_talks(lab: Lab) -> None:
    agent = agent_phone(lab)
    phlo = lab.create_phlo(phlo_id=TALKS[1])
    caller = call_in(lab, "uac_late_offer.xml", TALKS[0])
    lab.capture(agent, caller)

    view = lab.connected(phlo, CALLER, hears=[agent.uri])
    lab.connected(phlo, agent.uri, hears=[CALLER])
    talking = lab.listen()
    assert phlo.member_action(CALLER, "hangup").status_code == 201
    caller.assert_succeeded()  # it got our BYE
    assert phlo.member_action(agent.uri, "hangup").status_code == 201
    lab.assert_ended(phlo, view["mpc_uuid"], agent)

    ok = next(m for m in caller.received_messages() if m.startswith("SIP/2.0 200"))
    assert re.search(r"^m=audio \d+ RTP/AVP 0 8 9 101\r?$", ok, re.MULTILINE), ok  # our offer: rtp.codecs
    assert_hears(lab.heard(agent, talking), [TONE_B], others(TONE_B))  # the caller's audio
    assert_hears(lab.heard(caller, talking), [TONE_A], others(TONE_A))
    wait_for(lambda: lab.server.metrics()[PORTS_IN_USE] == 0, 5, "the RTP ports to be freed")


def test_an_ack_without_an_answer_ends_the_call_as_failed(lab: Lab) -> None:
    agent = agent_phone(lab)
    phlo = lab.create_phlo(phlo_id=NO_ANSWER[1])
    caller = call_in(lab, "uac_late_offer_no_answer.xml", NO_ANSWER[0])
    lab.capture(caller)

    view = lab.left(phlo, CALLER, "failed")
    caller.assert_succeeded()  # it got a BYE for its answerless ACK
    bye = caller.received_messages()[-1]
    assert bye.startswith("BYE "), bye
    assert re.search(r"^Reason: SIP;cause=488;text=\"[^\"]+\"\r?$", bye, re.MULTILINE), bye
    lab.connected(phlo, agent.uri)  # the agent the PHLO called stays until hung up
    assert phlo.member_action(agent.uri, "hangup").status_code == 201
    lab.assert_ended(phlo, view["mpc_uuid"], agent)
    wait_for(lambda: lab.server.metrics()[PORTS_IN_USE] == 0, 5, "the RTP ports to be freed")
    lab.assert_quiet_after([caller], 0.0)  # it never said where: nothing was sent to it
