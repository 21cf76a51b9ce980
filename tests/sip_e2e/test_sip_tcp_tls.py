"""SIP over TCP and TLS with real peers: baresip registering over TLS and TCP and called over its
connection, sipp over TCP dialled by Bridgeline (a phone, the trunk) and calling into it, a baresip
listening on TLS dialled with its certificate checked, and what happens when a phone's
connection is gone or a peer's certificate is not trusted. Certificates are made at test time."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from sipaudio import assert_hears
from sipkit import Baresip, Ports, wait_for
from siplab import ALL_TONES, TONE_A, TONE_B, TONE_C, Lab
from tlscerts import CertFiles, make_certs

DOMAIN = "bridgeline.test"
PASSWORD = "phone-secret"
TRUNK_REALM, TRUNK_USER, TRUNK_PASSWORD = "trunk.test", "bridgeline", "trunk-secret"
INBOUND_NUMBER, INBOUND_PHLO = "+14155550100", "sip-e2e-tcp-inbound"
PORTS: dict[str, int] = {}
CERTS: list[CertFiles] = []


def sip_config(ports: Ports) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bridgeline-tls-test-"))
    atexit.register(shutil.rmtree, root, True)
    certs = make_certs(root)
    CERTS.append(certs)
    PORTS.update(tcp=ports.take(), tls=ports.take(), trunk=ports.take())
    return {
        "domain": DOMAIN,
        "endpoints": {"alice": PASSWORD, "bob": PASSWORD},
        "tcp": {"listen": f"127.0.0.1:{PORTS['tcp']}"},
        "tls": {
            "listen": f"127.0.0.1:{PORTS['tls']}",
            "certificate": str(certs.certificate),
            "key": str(certs.key),
            "ca_file": str(certs.ca),
            "verify_peers": True,
        },
        "connections": {"idle_timeout_s": 120},
        "trunk": {
            "proxy": f"127.0.0.1:{PORTS['trunk']}",
            "transport": "tcp",
            "domain": TRUNK_REALM,
            "username": TRUNK_USER,
            "password": TRUNK_PASSWORD,
            "caller_id": "+14150000000",
        },
        "inbound": [
            {
                "number": INBOUND_NUMBER,
                "phlo_id": INBOUND_PHLO,
                "role": "customer",
                "payload": {"customer": "{{from}}", "agent": "alice"},
            }
        ],
    }


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def registered(lab: Lab, name: str, freq: int, transport: str) -> Baresip:
    """baresip registering through Bridgeline over `transport` (tcp or tls), answering automatically."""
    port = PORTS[transport]
    account = (
        f"<sip:{name}@{DOMAIN};transport={transport}>;auth_pass={PASSWORD};"
        f'outbound="sip:127.0.0.1:{port};transport={transport}";regint=600;answermode=auto;audio_codecs=PCMU'
    )
    phone = lab.baresip(name, freq, account=account, extra_config=f"sip_cafile {CERTS[0].ca}\n")
    ok = re.compile(r"200 OK \(Bridgeline\) \[\d+ bindings?\]")
    wait_for(lambda: ok.search(phone.proc.stdout()), 10, f"{name} to register over {transport}")
    return phone


def test_phone_registered_over_tls_talks_with_a_tcp_phone(lab: Lab) -> None:
    alice = registered(lab, "alice", TONE_A, "tls")
    customer = lab.sipp_phone("customer", TONE_B, ring_ms=200, transport="t1")
    lab.capture(alice, customer)
    phlo = lab.create_phlo()
    agent = f"sip:alice@{DOMAIN}"

    lab.run(phlo, agent=agent, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[agent])
    lab.connected(phlo, agent, hears=[customer.uri])
    talking = lab.listen()
    lab.mpc(phlo).member(customer.uri).hangup()
    lab.mpc(phlo).member(agent).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], customer)  # sipp got its BYE over its TCP connection
    alice.wait_event("CALL_CLOSED")

    assert_hears(lab.heard(alice, talking), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(customer, talking), [TONE_A], others(TONE_A))
    invite = customer.received_messages()[0]
    assert re.search(r"^Via: SIP/2.0/TCP ", invite, re.M) and ";transport=tcp>" in invite, invite
    metrics = lab.server.metrics()
    assert metrics["bridgeline_sip_connections_accepted_total"] >= 1  # alice's TLS registration
    assert metrics["bridgeline_sip_connections_dialled_total"] >= 1  # to the sipp phone


def test_sipp_calls_in_over_tcp_and_the_trunk_is_dialled_over_tcp(lab: Lab) -> None:
    alice = registered(lab, "alice", TONE_A, "tcp")
    trunk = lab.sipp(
        "trunk",
        "uas_trunk.xml",
        substitutions={
            "AUDIO_WAV": str(lab.tones.ulaw(TONE_C)),
            "TRUNK_REALM": TRUNK_REALM,
            "TRUNK_USER": TRUNK_USER,
        },
        sip_port=PORTS["trunk"],
        ring_ms=200,
        transport="t1",
    )
    phlo = lab.create_phlo(phlo_id=INBOUND_PHLO)
    caller_number = "+14155551234"
    caller = lab.sipp(
        "caller",
        "uac_call.xml",
        substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_B)), "CALLER_NUMBER": caller_number},
        remote=f"127.0.0.1:{PORTS['tcp']}",
        service=INBOUND_NUMBER,
        user=caller_number,
        transport="t1",
    )
    lab.capture(alice, caller, trunk)
    lab.connected(phlo, "alice", hears=[caller_number])
    view = lab.connected(phlo, caller_number, hears=["alice"])
    number = "+14155550199"
    lab.mpc(phlo).call("alice", number, "agent")  # the trunk, over TCP, with its digest challenge
    lab.connected(phlo, number, hears=["alice", caller_number])
    talking = lab.listen()
    lab.mpc(phlo).member(caller_number).hangup()  # the caller gets a BYE over its connection
    caller.assert_succeeded()
    lab.mpc(phlo).member(number).hangup()
    lab.mpc(phlo).member("alice").hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], trunk)
    alice.wait_event("CALL_CLOSED")

    assert_hears(lab.heard(alice, talking), [TONE_B, TONE_C], others(TONE_B, TONE_C))
    assert_hears(lab.heard(caller, talking), [TONE_A, TONE_C], others(TONE_A, TONE_C))
    assert trunk.received()[:3] == ["INVITE", "ACK", "INVITE"], trunk.received()
    assert "Via: SIP/2.0/TCP" in trunk.received_messages()[2]


def test_dialling_a_tls_phone_checks_its_certificate(lab: Lab) -> None:
    certs = CERTS[0]
    trusted = lab.baresip("carol", TONE_A, extra_config=f"sip_certificate {certs.combined}\n")
    rogue_pem = lab.work / "rogue.pem"
    rogue_pem.write_bytes(certs.rogue_certificate.read_bytes() + certs.rogue_key.read_bytes())
    rogue = lab.baresip("mallory", TONE_C, extra_config=f"sip_certificate {rogue_pem}\n")
    customer = lab.sipp_phone("customer", TONE_B, transport="t1")
    lab.capture(trusted, customer)
    phlo = lab.create_phlo()
    carol = f"sip:carol@127.0.0.1:{trusted.sip_port + 1};transport=tls"  # baresip's TLS port
    mallory = f"sip:mallory@127.0.0.1:{rogue.sip_port + 1};transport=tls"
    before = lab.server.metrics()["bridgeline_sip_tls_handshake_failures_total"]

    lab.run(phlo, agent=carol, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[carol])
    talking = lab.listen()
    started = time.monotonic()
    lab.mpc(phlo).call(carol, mallory, "agent")
    lab.left(phlo, mallory, "failed", timeout=5)  # at once, not after Timer B's 32 s
    assert time.monotonic() - started < 5
    for member in (customer.uri, carol):
        lab.mpc(phlo).member(member).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], customer)
    trusted.wait_event("CALL_CLOSED")

    assert_hears(lab.heard(trusted, talking), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(customer, talking), [TONE_A], others(TONE_A))
    assert lab.server.metrics()["bridgeline_sip_tls_handshake_failures_total"] == before + 1
    assert "sip_tls_handshake_failed" in lab.server.stderr()
    assert "CALL_INCOMING" not in rogue.control.event_types()


def test_a_call_to_a_phone_whose_tcp_connection_is_gone_fails_at_once(lab: Lab) -> None:
    bob = registered(lab, "bob", TONE_A, "tcp")
    customer = lab.sipp_phone("customer", TONE_B)
    before = lab.server.metrics()["bridgeline_sip_flows_gone_total"]
    bob.control.close()
    os.killpg(bob.proc.pid, signal.SIGKILL)  # baresip and its `timeout`: no de-registration
    bob.proc.wait(5)
    metrics = lab.server.metrics
    wait_for(lambda: metrics()["bridgeline_sip_connections_open"] == 0, 5, "bob's connection to close")
    phlo = lab.create_phlo()
    agent = f"sip:bob@{DOMAIN}"
    started = time.monotonic()
    lab.run(phlo, agent=agent, customer=customer.uri)
    lab.left(phlo, agent, "failed", timeout=5)
    assert time.monotonic() - started < 5
    assert lab.server.metrics()["bridgeline_sip_flows_gone_total"] == before + 1
    assert "sip_connection_gone" in lab.server.stderr()
