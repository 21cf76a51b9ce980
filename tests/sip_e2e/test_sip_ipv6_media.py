"""Media over IPv6 with real peers: a server listening on [::1] with RTP on ::1 puts two sipp phones
on ::1 in a conference. Each hears the other's tone, hold moves the audio, a foreign IPv6 source is
refused as on IPv4 (after latching, and when it races a phone that is slow to talk), and an offer
whose media address is IPv4 gets 488 with Warning 301. Every datagram is captured on `lo` and read as
IPv6 (pcapkit)."""

from __future__ import annotations

import re
import time
from typing import Any

from pcapkit import Datagram
from rtpspray import Sprayer
from sipaudio import assert_hears, assert_silent
from sipkit import Ports, Sipp
from siplab import ALL_TONES, CUSTOMER_HOLD, TONE_A, TONE_B, TONE_D, Lab

SIP_HOST = "::1"
CALLER = "+14155551236"


def sip_config(ports: Ports) -> dict[str, Any]:
    # Calls from the trunk's host are taken without a digest challenge (the refused offer below).
    return {"trunk": {"proxy": f"[::1]:{ports.take()}", "domain": "trunk.test"}}


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def phone(lab: Lab, name: str, freq: int, **kwargs: Any) -> Sipp:
    return lab.sipp_phone(name, freq, local_ip="::1", **kwargs)


def assert_all_ipv6(datagrams: list[Datagram], peers: list[Sipp]) -> None:
    """Media went between ::1 addresses, on the phones' and the server's ports: audio over IPv6."""
    ports = set().union(*(p.media_ports for p in peers))
    media = [d for d in datagrams if d.dport in ports or d.sport in ports]
    assert media and all(d.src == d.dst == "::1" for d in media), media[:3]


def offered_port(peer: Sipp) -> int | None:
    """The RTP port of the server's offer in the INVITE the phone got (None until it came)."""
    found = re.search(r"^m=audio (\d+) ", peer.messages(), re.M)
    return int(found.group(1)) if found else None


def test_two_ipv6_phones_hear_each_other_and_hold_moves_the_audio(lab: Lab) -> None:
    agent = phone(lab, "agent", TONE_A)
    customer = phone(lab, "customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[agent.uri])
    lab.connected(phlo, agent.uri, hears=[customer.uri])
    talking = lab.listen()
    mpc = lab.mpc(phlo)
    mpc.member(customer.uri).hold()
    phlo.wait_member(customer.uri, status="on_hold")
    held = lab.listen()
    mpc.member(customer.uri).unhold()
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    back = lab.listen()
    for peer in (agent, customer):
        mpc.member(peer.uri).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], agent, customer)

    invite = agent.received_messages()[0]
    assert "c=IN IP6 ::1" in invite and f"Via: SIP/2.0/UDP {lab.server.sip_address};" in invite
    assert_all_ipv6(lab.stop_capture(), [agent, customer])
    for window in (talking, back):
        assert_hears(lab.heard(agent, window), [TONE_B], others(TONE_B))
        assert_hears(lab.heard(customer, window), [TONE_A], others(TONE_A))
    assert_hears(lab.heard(customer, held), [CUSTOMER_HOLD], others(CUSTOMER_HOLD))
    assert_silent(lab.heard(agent, held))


def test_a_foreign_ipv6_source_is_refused_once_the_phones_are_latched(lab: Lab) -> None:
    agent = phone(lab, "agent", TONE_A)
    customer = phone(lab, "customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    mpc_uuid = lab.connected(phlo, customer.uri, hears=[agent.uri])["mpc_uuid"]
    lab.connected(phlo, agent.uri, hears=[customer.uri])
    time.sleep(0.5)  # both legs have latched to their phones
    refused_before = lab.server.metrics()["bridgeline_sip_rtp_refused_foreign_source_total"]

    with Sprayer(lab.server.rtp_range, TONE_D, seconds=2.0, host="::1") as sprayer:
        under_attack = lab.listen(seconds=1.2, settle=0.4)
    for peer in (agent, customer):
        lab.mpc(phlo).member(peer.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, agent, customer)

    assert sprayer.received == 0, f"the spraying socket got {sprayer.received} datagrams"
    assert lab.server.metrics()["bridgeline_sip_rtp_refused_foreign_source_total"] > refused_before
    assert_hears(lab.heard(agent, under_attack), [TONE_B], others(TONE_B), min_seconds=1.0)
    assert_hears(lab.heard(customer, under_attack), [TONE_A], others(TONE_A), min_seconds=1.0)


def test_an_ipv6_source_that_latches_first_loses_to_the_phones_sdp_address(lab: Lab) -> None:
    """The customer's phone starts talking 600 ms after the ACK; a foreign ::1 socket aims at its leg
    from the moment the INVITE shows the port, so it is the first source the leg hears and latches.
    The phone's first packet, from the address and port of its SDP, takes the leg back for good (on
    IPv6 that rule never matched: recvfrom's 4-tuple is not the SDP's pair, and the spray kept the
    call)."""
    agent = phone(lab, "agent", TONE_A)
    customer = phone(lab, "customer", TONE_B, ring_ms=800, talk_after_ms=600)
    lab.capture(agent, customer)
    relatched_before = lab.server.metrics()["bridgeline_sip_rtp_relatched_total"]
    phlo = lab.create_phlo()
    with Sprayer(
        lambda: [p] if (p := offered_port(customer)) else None, TONE_D, 5.0, host="::1", interval_s=0.005
    ) as sprayer:
        lab.run(phlo, agent=agent.uri, customer=customer.uri)
        mpc_uuid = lab.connected(phlo, customer.uri, hears=[agent.uri], timeout=10)["mpc_uuid"]
        time.sleep(1.0)  # the phone talks after 600 ms
        window = lab.listen(seconds=1.2, settle=0.2)
    for peer in (agent, customer):
        lab.mpc(phlo).member(peer.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, agent, customer)

    assert sprayer.received > 0, "the spray never latched: the race did not happen"
    assert sprayer.received_since(window[0]) == 0, "the spray kept (some of) the call"
    assert lab.server.metrics()["bridgeline_sip_rtp_relatched_total"] > relatched_before
    assert_hears(lab.heard(agent, window), [TONE_B], others(TONE_B), min_seconds=1.0)
    assert_hears(lab.heard(customer, window), [TONE_A], others(TONE_A), min_seconds=1.0)


def test_an_offer_with_an_ipv4_media_address_gets_488_with_warning_301(lab: Lab) -> None:
    caller = lab.sipp(
        "caller",
        "uac_refused.xml",
        substitutions={"CALLER_NUMBER": CALLER},
        remote=lab.server.sip_address,
        service="+14155550000",
        user=CALLER,
        local_ip="::1",
        media_ip="127.0.0.1",  # c=IN IP4 127.0.0.1 from a phone that signals over IPv6
    )
    caller.assert_succeeded()
    (refusal,) = [m for m in caller.received_messages() if m.startswith("SIP/2.0 488")]
    assert "c=IN IP4 127.0.0.1" in caller.messages()
    warning = re.search(r"^Warning: (.*)$", refusal, re.M)
    assert warning and warning.group(1).startswith("301 "), refusal
    assert "127.0.0.1 is IPv4 and this server's RTP is IPv6 only" in warning.group(1), refusal
    assert lab.server.healthy()
