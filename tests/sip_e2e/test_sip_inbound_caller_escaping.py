"""An inbound caller whose From user part is not ASCII joins under its percent-encoded SIP URI, which
fits the address grammar: the API can name it, and nothing non-ASCII becomes a member address."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sipkit import Ports
from siplab import TONE_A, TONE_B, Lab

NUMBER, PHLO = "+14155550177", "sip-e2e-escaped-caller"
AGENT: dict[str, int] = {}
ESCAPED_CALLER = "sip:zo%C3%AB@127.0.0.1"


def sip_config(ports: Ports) -> dict[str, Any]:
    AGENT["port"] = ports.take()
    agent = f"sip:agent@127.0.0.1:{AGENT['port']}"
    return {
        # Calls from the trunk's host are trusted without a digest challenge: the caller is "the trunk".
        "trunk": {"proxy": f"127.0.0.1:{ports.take()}", "domain": "trunk.test"},
        "inbound": [{"number": NUMBER, "phlo_id": PHLO, "payload": {"customer": "{{from}}", "agent": agent}}],
    }


def test_a_non_ascii_caller_joins_under_its_percent_encoded_address(lab: Lab) -> None:
    tone = {"AUDIO_WAV": str(lab.tones.ulaw(TONE_A))}
    agent = lab.sipp("agent", "uas_play.xml", substitutions=tone, sip_port=AGENT["port"], user="agent")
    phlo = lab.create_phlo(phlo_id=PHLO)
    caller = lab.sipp(
        "caller",
        "uac_call.xml",
        substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_B)), "CALLER_NUMBER": "zoë"},
        remote=lab.server.sip_address,
        service=NUMBER,
        user="zoe",
    )
    in_path = quote(ESCAPED_CALLER, safe=":@+")  # the address, percent-encoded once more for the URL
    # Before: the member was "sip:zoë@127.0.0.1", an address no API call could name in the grammar.
    view = lab.connected(phlo, in_path, hears=[agent.uri])
    assert view["member_address"] == ESCAPED_CALLER and view["role"] == "customer", view
    assert phlo.member_action(in_path, "hangup").status_code == 201
    caller.assert_succeeded()  # the caller got its BYE
    assert phlo.member_action(agent.uri, "hangup").status_code == 201
    lab.assert_ended(phlo, view["mpc_uuid"], agent)
