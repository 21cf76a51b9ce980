"""A phone in a conference sends REFER (baresip's `transfer` command): Bridgeline answers 202, NOTIFYs
the progress (message/sipfrag), dials the target through the trunk (a sipp UAS) and the transfer goes
as the API's cold transfer goes: the same member states and callback events, the referrer hung up."""

from __future__ import annotations

import time
from typing import Any

from e2ekit import CallbackReceiver, wait_until
from pcapkit import sip_messages
from sipaudio import assert_hears
from sipkit import Ports
from siplab import ALL_TONES, TONE_A, TONE_B, TONE_C, Lab

TARGET = "+14155550123"
TRUNK: dict[str, int] = {}


def sip_config(ports: Ports) -> dict[str, Any]:
    TRUNK["port"] = ports.take()
    return {
        "trunk": {"proxy": f"127.0.0.1:{TRUNK['port']}", "domain": "trunk.test"},
        # The agent is a phone dialed at its SIP URI; it may transfer to +1415 numbers only.
        "refer": {"allowed": ["+1415"], "transferors": ["uris"]},
    }


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def refer_exchange(lab: Lab, port: int) -> list[str]:
    """The REFER, its answer and the NOTIFYs (with their sipfrag line) on the agent's SIP port."""
    lines = []
    for datagram, first in sip_messages(lab.stop_capture(), port):
        text = datagram.payload.decode(errors="replace")
        if "REFER" in text.split("\r\nCSeq: ", 1)[-1].split("\r\n", 1)[0] or first.startswith("REFER"):
            lines.append(first)
        elif first.startswith("NOTIFY"):
            lines.append("NOTIFY " + text.rsplit("\r\n\r\n", 1)[-1].strip())
    return lines


def test_a_refer_from_the_agents_phone_is_a_cold_transfer_through_the_trunk(lab: Lab) -> None:
    with CallbackReceiver() as receiver:
        agent = lab.baresip("agent", TONE_A)
        customer = lab.sipp_phone("customer", TONE_B)
        target = lab.sipp(
            "trunk", "uas_play.xml", substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_C))},
            ring_ms=1000, sip_port=TRUNK["port"],
        )  # fmt: skip
        lab.capture(agent, customer, target)
        phlo = lab.create_phlo(callback_url=receiver.url())
        lab.run(phlo, agent=agent.uri, customer=customer.uri)
        mpc_uuid = lab.connected(phlo, customer.uri, hears=[agent.uri])["mpc_uuid"]

        agent.command("transfer", f"sip:{TARGET}@{lab.server.sip_address}")
        phlo.wait_member(TARGET, status="dialing", ringing=True)
        lab.left(phlo, agent.uri, "transferred")
        lab.connected(phlo, customer.uri, hears=[TARGET])
        transferred = lab.listen()

        lab.mpc(phlo).member(customer.uri).hangup()
        lab.mpc(phlo).member(TARGET).hangup()
        lab.assert_ended(phlo, mpc_uuid, customer, target)
        ended = lambda: "conference_ended" in [e for _, e in receiver.events(mpc_uuid)]  # noqa: E731
        wait_until(ended, timeout=10, what="the callbacks")
        events = [e for _, e in receiver.events(mpc_uuid)]

    transfer = phlo.conference(mpc_uuid)["transfers"][0]
    assert (transfer["transfer_type"], transfer["initiator"], transfer["target"]) == (
        "cold",
        agent.uri,
        TARGET,
    )
    assert (transfer["transfer_state"], transfer["outcome"]) == ("completed", "transferred")
    started = events.index("transfer_started")
    assert events[started : started + 2] == ["transfer_started", "member_dialing"], events
    assert events.index("transfer_answered") < events.index("transfer_completed"), events
    assert "INVITE" in target.received()[0]  # the trunk got the call for the number
    assert_hears(lab.heard(customer, transferred), [TONE_C], others(TONE_C))
    assert_hears(lab.heard(target, transferred), [TONE_B], others(TONE_B))
    exchange = refer_exchange(lab, agent.sip_port)
    assert exchange[0].startswith("REFER ") and exchange[1] == "SIP/2.0 202 Accepted", exchange
    notifies = [line for line in exchange if line.startswith("NOTIFY")]
    assert notifies == ["NOTIFY SIP/2.0 100 Trying", "NOTIFY SIP/2.0 180 Ringing", "NOTIFY SIP/2.0 200 OK"], (
        exchange
    )


def test_a_refer_to_a_number_outside_the_allow_list_is_refused_and_nothing_is_dialed(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    mpc_uuid = lab.connected(phlo, customer.uri, hears=[agent.uri])["mpc_uuid"]

    before = lab.server.metrics()
    agent.command("transfer", f"sip:+19005550123@{lab.server.sip_address}")
    counts = ("bridgeline_sip_refers_refused_total", "bridgeline_sip_refers_accepted_total")
    grown = lambda: [lab.server.metrics()[c] - before.get(c, 0) for c in counts]  # noqa: E731
    wait_until(lambda: grown()[0] >= 1, timeout=10, interval=0.2, what="the refusal")
    assert grown() == [1, 0]  # counted once, and nothing accepted
    # baresip hangs up once its transfer failed; the customer stays, alone, and nothing was dialed.
    lab.left(phlo, agent.uri, "remote_hangup")
    time.sleep(0.3)
    conference = phlo.conference(mpc_uuid)
    assert conference["transfers"] == []
    assert [m["member_address"] for m in conference["members"]] == [agent.uri, customer.uri]
    lab.mpc(phlo).member(customer.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, customer)
    exchange = refer_exchange(lab, agent.sip_port)
    assert exchange == [
        f"REFER sip:bridgeline@{lab.server.sip_address} SIP/2.0",
        "SIP/2.0 403 Transfer target not allowed",
    ], exchange


def test_a_busy_target_fails_the_transfer_and_the_referrer_is_told(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B)
    busy = lab.sipp(
        "trunk",
        "uas_reject.xml",
        substitutions={"FINAL_STATUS": "486 Busy Here"},
        ring_ms=300,
        sip_port=TRUNK["port"],
    )
    lab.capture(agent, customer)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    mpc_uuid = lab.connected(phlo, customer.uri, hears=[agent.uri])["mpc_uuid"]

    agent.command("transfer", f"sip:{TARGET}@{lab.server.sip_address}")
    lab.left(phlo, TARGET, "busy")
    busy.assert_succeeded()
    transfer = phlo.conference(mpc_uuid)["transfers"][0]
    assert (transfer["transfer_state"], transfer["initiator"]) == ("failed", agent.uri), transfer
    lab.left(phlo, agent.uri, "remote_hangup")  # baresip hangs up once told its transfer failed
    lab.mpc(phlo).member(customer.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, customer)
    notifies = [line for line in refer_exchange(lab, agent.sip_port) if line.startswith("NOTIFY")]
    assert notifies == [
        "NOTIFY SIP/2.0 100 Trying",
        "NOTIFY SIP/2.0 180 Ringing",
        "NOTIFY SIP/2.0 486 Busy Here",
    ]
