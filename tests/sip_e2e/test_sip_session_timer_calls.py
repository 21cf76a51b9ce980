"""Session timers (RFC 4028) with real peers. This server allows intervals down to 2 s (a test
setting: RFC 4028's floor is 90 s), so refreshes and expiries happen within seconds: a phone whose
200 makes us the refresher gets re-INVITEs every 2 s and the call talks on; a phone that should
refresh and never does gets our BYE with a Reason, and its member leaves `failed`. Hostile session
timer values in an INVITE get the right status and reason phrase."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from sipaudio import assert_hears
from sipkit import Ports, SipServer, wait_for
from siplab import ALL_TONES, TONE_A, TONE_B, Lab
from test_sip_answers import ask, final, request

PORTS_IN_USE = "bridgeline_sip_rtp_ports_in_use"


def sip_config(ports: Ports) -> dict[str, Any]:
    return {
        "trunk": {"proxy": f"127.0.0.1:{ports.take()}", "domain": "trunk.test"},
        "session_timers": {"enabled": True, "session_expires_s": 4, "min_se_s": 2},
    }


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def timed_phone(lab: Lab, name: str, session_expires: str) -> Any:
    substitutions = {"AUDIO_WAV": str(lab.tones.ulaw(TONE_A)), "SESSION_EXPIRES_VALUE": session_expires}
    return lab.sipp(name, "uas_session_timer.xml", substitutions=substitutions)


def invites(messages: list[str]) -> list[str]:
    return [m for m in messages if m.startswith("INVITE ")]


def test_we_refresh_when_the_answer_says_so_and_the_call_talks_on(lab: Lab) -> None:
    agent = timed_phone(lab, "refreshed", "4;refresher=uac")
    customer = lab.sipp_phone("customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()

    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, agent.uri, hears=[customer.uri])
    first = invites(agent.received_messages())[0]
    assert re.search(r"^Supported: .*timer", first, re.MULTILINE), first
    assert re.search(r"^Session-Expires: 4\r?$", first, re.MULTILINE), first
    wait_for(lambda: len(invites(agent.received_messages())) >= 3, 8, "two refreshes (every 2 s)")
    lab.connected(phlo, agent.uri, hears=[customer.uri])  # still there after the expiry time
    talking = lab.listen()
    for phone in (agent, customer):
        lab.mpc(phlo).member(phone.uri).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], agent, customer)

    refresh = invites(agent.received_messages())[1]
    assert re.search(r"^Session-Expires: 4;refresher=uac\r?$", refresh, re.MULTILINE), refresh
    assert re.search(r"^m=audio \d+ RTP/AVP", refresh, re.MULTILINE), refresh  # our SDP, unchanged
    assert_hears(lab.heard(agent, talking), [TONE_B], others(TONE_B))
    wait_for(lambda: lab.server.metrics()[PORTS_IN_USE] == 0, 5, "the RTP ports to be freed")


def test_a_peer_that_never_refreshes_is_hung_up_with_a_reason(lab: Lab) -> None:
    agent = timed_phone(lab, "silent", "4;refresher=uas")
    customer = lab.sipp_phone("customer", TONE_B)
    phlo = lab.create_phlo()

    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, agent.uri)
    answered = time.monotonic()
    lab.left(phlo, agent.uri, "failed", timeout=8.0)
    elapsed = time.monotonic() - answered
    assert 1.5 < elapsed < 5.0, elapsed  # due at 4 - 4/3 s after the answer
    agent.assert_succeeded()  # it got a BYE
    bye = next(m for m in agent.received_messages() if m.startswith("BYE "))
    assert re.search(r'^Reason: SIP;cause=408;text="Session timer expired"\r?$', bye, re.MULTILINE), bye
    assert len(invites(agent.received_messages())) == 1  # it was the refresher: we did not refresh
    assert lab.server.metrics()["bridgeline_sip_session_timers_expired_total"] >= 1
    lab.connected(phlo, customer.uri)
    lab.mpc(phlo).member(customer.uri).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], customer)
    wait_for(lambda: lab.server.metrics()[PORTS_IN_USE] == 0, 5, "the RTP ports to be freed")


@pytest.mark.parametrize(
    ("header", "status_line", "extra"),
    [
        ("Session-Expires: soon", b"SIP/2.0 400 Bad Session-Expires Header\r\n", None),
        ("Session-Expires: 1800;refresher=me", b"SIP/2.0 400 Bad Session-Expires Header\r\n", None),
        ("Session-Expires: 1", b"SIP/2.0 422 Session Interval Too Small\r\n", b"\r\nMin-SE: 2\r\n"),
        ("Min-SE: 99999999999999999999", b"SIP/2.0 400 Bad Min-SE Header\r\n", None),
        ("Session-Expires: 60\r\nMin-SE: 4000", b"SIP/2.0 400 Min-SE Above Session-Expires\r\n", None),
        (
            "Require: timer, precondition",
            b"SIP/2.0 420 Bad Extension\r\n",
            b"\r\nUnsupported: precondition\r\n",
        ),
    ],
)
def test_hostile_session_timer_values_get_the_right_answer(
    server: SipServer, header: str, status_line: bytes, extra: bytes | None
) -> None:
    data = request(server, f"st-{abs(hash(header)) % 10**8}")
    answer = final(
        ask(server, data.replace(b"Max-Forwards: 70\r\n", f"Max-Forwards: 70\r\n{header}\r\n".encode()))
    )
    assert answer.startswith(status_line), answer
    assert extra is None or extra in answer, answer
    if b" 400 " in status_line or b" 422 " in status_line:
        assert server.metrics()["bridgeline_sip_session_timer_refusals_total"] >= 1
    assert server.proc is not None and server.proc.running


def test_a_prack_for_no_dialog_is_481(server: SipServer) -> None:
    data = (
        request(server, "prack-1")
        .replace(b"INVITE", b"PRACK")
        .replace(b"To: <sip:+14155559999@", b"RAck: 1 1 INVITE\r\nTo: <sip:+14155559999@")
    )
    data = data.replace(b">\r\nCall-ID", b">;tag=nosuchdialog\r\nCall-ID", 1)
    answer = final(ask(server, data))
    assert answer.startswith(b"SIP/2.0 481 "), answer
    assert server.proc is not None and server.proc.running
