"""3xx answers to our INVITEs against real peers: a 302 to an allowed target is followed and the
member joins through the second phone; a 302 to a target outside `redirects.allowed_targets` is
not followed, and the member fails (docs/sip.md, docs/security.md)."""

from __future__ import annotations

import socket
from typing import Any

from sipkit import Ports
from siplab import TONE_A, TONE_B, Lab

PORTS: dict[str, int] = {}


def sip_config(ports: Ports) -> dict[str, Any]:
    PORTS["allowed"] = ports.take()
    PORTS["ringing"] = ports.take()
    PORTS["refused"] = ports.take()
    allowed = [f"127.0.0.1:{PORTS['allowed']}", f"127.0.0.1:{PORTS['ringing']}"]
    return {"redirects": {"max": 3, "allowed_targets": allowed}}


def test_a_302_to_an_allowed_target_is_followed(lab: Lab) -> None:
    agent = lab.sipp_phone("agent", TONE_A)
    second = lab.sipp(
        "second",
        "uas_play.xml",
        substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_B))},
        sip_port=PORTS["allowed"],
        user="second",
    )
    first = lab.sipp(
        "first", "uas_redirect.xml", substitutions={"REDIRECT_CONTACT": f"<{second.uri}>"}, user="first"
    )
    followed = lab.server.metrics()["bridgeline_sip_redirects_followed_total"]
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=first.uri)
    mpc_uuid = lab.connected(phlo, agent.uri)["mpc_uuid"]

    lab.connected(phlo, first.uri)  # the member, known by the address dialled, talks via `second`
    first.assert_succeeded()  # 302 sent, its ACK received
    assert first.received() == ["INVITE", "ACK"], first.received()
    lab.mpc(phlo).member(first.uri).hangup()
    lab.left(phlo, first.uri, "hangup")
    second.assert_succeeded()  # answered, then ended by our BYE
    assert second.received() == ["INVITE", "ACK", "BYE"], second.received()
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, agent)
    assert lab.server.metrics()["bridgeline_sip_redirects_followed_total"] == followed + 1


def test_the_ring_timeout_runs_across_the_redirect(lab: Lab) -> None:
    agent = lab.sipp_phone("agent", TONE_A)
    never = lab.sipp("never", "uas_ring.xml", sip_port=PORTS["ringing"], user="never")
    first = lab.sipp(
        "first", "uas_redirect.xml", substitutions={"REDIRECT_CONTACT": f"<{never.uri}>"}, user="first"
    )
    phlo = lab.create_phlo(ring_timeout=1.5)
    lab.run(phlo, agent=agent.uri, customer=first.uri)
    mpc_uuid = lab.connected(phlo, agent.uri)["mpc_uuid"]

    phlo.wait_member(first.uri, status="dialing", ringing=True)  # the redirected target rings
    lab.left(phlo, first.uri, "no_answer")
    never.assert_succeeded()  # CANCEL answered 200, INVITE answered 487, ACK received
    assert never.received() == ["INVITE", "CANCEL", "ACK"], never.received()
    assert first.received() == ["INVITE", "ACK"], first.received()
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, agent)


def test_a_302_to_a_target_not_allowed_is_refused(lab: Lab) -> None:
    agent = lab.sipp_phone("agent", TONE_A)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", PORTS["refused"]))
        listener.settimeout(0.5)
        first = lab.sipp(
            "first",
            "uas_redirect.xml",
            substitutions={"REDIRECT_CONTACT": f"<sip:premium@127.0.0.1:{PORTS['refused']}>"},
            user="first",
        )
        refused = lab.server.metrics()["bridgeline_sip_redirects_refused_total"]
        phlo = lab.create_phlo()
        lab.run(phlo, agent=agent.uri, customer=first.uri)
        mpc_uuid = lab.connected(phlo, agent.uri)["mpc_uuid"]

        first.assert_succeeded()  # 302 sent and ACKed: the redirect has been decided on
        assert first.received() == ["INVITE", "ACK"], first.received()
        try:
            data, _ = listener.recvfrom(65536)
        except TimeoutError:
            data = b""
        assert data == b"", f"the refused target was called: {data[:200]!r}"
        lab.left(phlo, first.uri, "failed")
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, agent)
    assert lab.server.metrics()["bridgeline_sip_redirects_refused_total"] == refused + 1
