"""A softphone that registers with digest auth, a trunk that challenges, and a call to an inbound
number: the server is configured with an endpoint account, a trunk and an inbound route."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from sipaudio import assert_hears
from sipkit import Baresip, Ports, wait_for
from siplab import ALL_TONES, TONE_A, TONE_B, TONE_C, Lab

DOMAIN = "bridgeline.test"
PASSWORD = "alice-secret"
TRUNK_REALM, TRUNK_USER, TRUNK_PASSWORD = "trunk.test", "bridgeline", "trunk-secret"
INBOUND_NUMBER, INBOUND_PHLO = "+14155550100", "sip-e2e-inbound"
TRUNK: dict[str, int] = {}


def sip_config(ports: Ports) -> dict[str, Any]:
    TRUNK["port"] = ports.take()
    return {
        "domain": DOMAIN,
        "endpoints": {"alice": PASSWORD},
        "trunk": {
            "proxy": f"127.0.0.1:{TRUNK['port']}",
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


def registered_alice(lab: Lab, freq: int) -> Baresip:
    """baresip registering as alice through Bridgeline (outbound proxy), answering automatically."""
    account = (
        f'<sip:alice@{DOMAIN}>;auth_pass={PASSWORD};outbound="sip:{lab.server.sip_address}";'
        "regint=60;answermode=auto;audio_codecs=PCMU"
    )
    alice = lab.baresip("alice", freq, account=account)
    # The registration may complete before the control connection is up: read baresip's own log.
    registered = re.compile(r"200 OK \(Bridgeline\) \[\d+ bindings?\]")  # an earlier alice may linger
    wait_for(lambda: registered.search(alice.proc.stdout()), 10, "alice to register")
    return alice


def digest_params(header: str) -> dict[str, str]:
    return {k: v1 or v2 for k, v1, v2 in re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', header)}


def assert_valid_digest(invite: str, password: str) -> None:
    """The Proxy-Authorization of an INVITE is a correct RFC 2617 digest for the password."""
    header = re.search(r"^Proxy-Authorization:\s*Digest\s+(.*)$", invite, re.MULTILINE | re.IGNORECASE)
    assert header, f"no Proxy-Authorization in:\n{invite}"
    p = digest_params(header.group(1))

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{p['username']}:{p['realm']}:{password}")
    ha2 = md5(f"INVITE:{p['uri']}")
    if p.get("qop"):
        expected = md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")
    else:
        expected = md5(f"{ha1}:{p['nonce']}:{ha2}")
    assert (p["username"], p["realm"]) == (TRUNK_USER, TRUNK_REALM), p
    assert p["response"] == expected, f"wrong digest response in {header.group(0)}"


def test_registered_phone_by_sip_address_and_a_number_through_the_challenging_trunk(lab: Lab) -> None:
    alice = registered_alice(lab, TONE_A)
    trunk = lab.sipp(
        "trunk",
        "uas_trunk.xml",
        substitutions={
            "AUDIO_WAV": str(lab.tones.ulaw(TONE_B)),
            "TRUNK_REALM": TRUNK_REALM,
            "TRUNK_USER": TRUNK_USER,
        },
        sip_port=TRUNK["port"],
        ring_ms=200,
    )
    lab.capture(alice, trunk)
    phlo = lab.create_phlo()
    agent, customer = f"sip:alice@{DOMAIN}", "+14155550123"

    lab.run(phlo, agent=agent, customer=customer)
    mpc_uuid = lab.connected(phlo, customer, hears=[agent])["mpc_uuid"]
    lab.connected(phlo, agent, hears=[customer])
    talking = lab.listen()
    lab.mpc(phlo).member(customer).hangup()
    lab.mpc(phlo).member(agent).hangup()
    lab.assert_ended(phlo, mpc_uuid, trunk)
    alice.wait_event("CALL_CLOSED")

    assert_hears(lab.heard(alice, talking), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(trunk, talking), [TONE_A], others(TONE_A))
    assert trunk.received()[:3] == ["INVITE", "ACK", "INVITE"], trunk.received()
    first, _, second = trunk.received_messages()[:3]
    assert "Proxy-Authorization" not in first
    assert second.startswith(f"INVITE sip:{customer}@{TRUNK_REALM} SIP/2.0"), second
    assert re.search(r"^From:.*sip:\+14150000000@", second, re.MULTILINE), second
    assert_valid_digest(second, TRUNK_PASSWORD)


def test_registered_phone_by_bare_username(lab: Lab) -> None:
    alice = registered_alice(lab, TONE_A)
    customer = lab.sipp_phone("customer", TONE_C)
    lab.capture(alice, customer)
    phlo = lab.create_phlo()

    lab.run(phlo, agent="alice", customer=customer.uri)
    mpc_uuid = lab.connected(phlo, customer.uri, hears=["alice"])["mpc_uuid"]
    talking = lab.listen()
    lab.mpc(phlo).member("alice").hangup()
    lab.mpc(phlo).member(customer.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, customer)
    alice.wait_event("CALL_CLOSED")

    assert_hears(lab.heard(alice, talking), [TONE_C], others(TONE_C))
    assert_hears(lab.heard(customer, talking), [TONE_A], others(TONE_A))


def test_inbound_call_to_the_number_starts_the_phlo_and_reaches_the_agent(lab: Lab) -> None:
    alice = registered_alice(lab, TONE_A)
    phlo = lab.create_phlo(phlo_id=INBOUND_PHLO)
    caller_number = "+14155551234"
    caller = lab.sipp(
        "caller",
        "uac_call.xml",
        substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_B)), "CALLER_NUMBER": caller_number},
        remote=lab.server.sip_address,
        service=INBOUND_NUMBER,
        user=caller_number,
    )
    lab.capture(alice, caller)  # started after the INVITE: only media matters here

    lab.connected(phlo, "alice", hears=[caller_number])
    view = lab.connected(phlo, caller_number, hears=["alice"])
    assert view["role"] == "customer"
    talking = lab.listen()
    lab.mpc(phlo).member(caller_number).hangup()  # the caller gets a BYE
    caller.assert_succeeded()
    lab.mpc(phlo).member("alice").hangup()
    lab.assert_ended(phlo, view["mpc_uuid"])
    alice.wait_event("CALL_CLOSED")

    assert_hears(lab.heard(alice, talking), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(caller, talking), [TONE_A], others(TONE_A))
    assert caller.received()[-1] == "BYE", caller.received()
