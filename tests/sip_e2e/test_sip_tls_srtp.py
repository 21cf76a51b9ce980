"""SIP over TLS with SDES-SRTP end to end (issue #11): a baresip registered over TLS with
`mediaenc=srtp-mand`, whose endpoint requires SRTP, is called by a PHLO with a plain sipp phone over
UDP. Each hears the other (the TLS phone's own recording, the sipp phone's captured RTP); the RTP to
the TLS phone is SRTP, and its signalling, keys included, travelled only inside TLS."""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pcapkit import Capture
from sipaudio import assert_hears
from sipkit import Baresip, Ports, wait_for
from siplab import ALL_TONES, TONE_A, TONE_B, Lab
from test_sip_srtp import SRTP_MODULES, assert_not_g711_of, assert_suite, recorded
from test_sip_srtp_gcm import GCM_TAG
from tlscerts import CertFiles, make_certs

DOMAIN = "bridgeline.test"
PASSWORD = "phone-secret"
PORTS: dict[str, int] = {}
CERTS: list[CertFiles] = []
TLS_APPLICATION_DATA = b"\x17\x03\x03"  # a TLS 1.2/1.3 application_data record header


def sip_config(ports: Ports) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bridgeline-tls-srtp-test-"))
    atexit.register(shutil.rmtree, root, True)
    certs = make_certs(root)
    CERTS.append(certs)
    PORTS["tls"] = ports.take()
    return {
        "domain": DOMAIN,
        "endpoints": {"alice": {"password": PASSWORD, "srtp": "required"}},  # the default stays off
        "tls": {
            "listen": f"127.0.0.1:{PORTS['tls']}",
            "certificate": str(certs.certificate),
            "key": str(certs.key),
            "ca_file": str(certs.ca),
            "verify_peers": True,
        },
        "connections": {"idle_timeout_s": 120},
    }


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def tls_srtp_phone(lab: Lab, name: str, freq: int) -> Baresip:
    """baresip registered through Bridgeline over TLS, encrypting its media (RTP/SAVP only),
    answering automatically and recording what it decodes in <work>/rec-<name>."""
    rec = lab.work / f"rec-{name}"
    rec.mkdir()
    account = (
        f"<sip:{name}@{DOMAIN};transport=tls>;auth_pass={PASSWORD};"
        f'outbound="sip:127.0.0.1:{PORTS["tls"]};transport=tls";regint=600;answermode=auto;'
        "audio_codecs=PCMU;mediaenc=srtp-mand"
    )
    extra = SRTP_MODULES + f"snd_path {rec}\nsip_cafile {CERTS[0].ca}\n"
    phone = lab.baresip(name, freq, account=account, extra_config=extra)
    ok = re.compile(r"200 OK \(Bridgeline\) \[\d+ bindings?\]")
    wait_for(lambda: ok.search(phone.proc.stdout()), 10, f"{name} to register over TLS")
    return phone


def test_a_phone_on_tls_with_srtp_talks_with_a_plain_udp_phone(lab: Lab) -> None:
    alice = tls_srtp_phone(lab, "alice", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B, ring_ms=200)
    lab.capture(alice, customer)
    # The TLS connection (alice's SIP port only for its UDP, where nothing must go).
    signalling = Capture(lab.procs, lab.work, "tls", [alice.sip_port], tcp_ports=[PORTS["tls"]])
    phlo = lab.create_phlo()
    agent = f"sip:alice@{DOMAIN}"
    accepted = lab.server.metrics()["bridgeline_sip_connections_accepted_total"]

    lab.run(phlo, agent=agent, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[agent])
    lab.connected(phlo, agent, hears=[customer.uri])
    talking = lab.listen(1.5)
    lab.mpc(phlo).member(customer.uri).hangup()
    lab.mpc(phlo).member(agent).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], customer)
    alice.wait_event("CALL_CLOSED")

    assert_hears(recorded(alice), [TONE_B], others(TONE_B))  # decrypted by alice herself
    assert_hears(lab.heard(customer, talking), [TONE_A], others(TONE_A))  # plain G.711 to sipp
    assert_suite(alice, "AEAD_AES_128_GCM")  # the first suite of our default offer
    assert_not_g711_of(lab, alice, TONE_B, talking, tag=GCM_TAG)  # SRTP with its tag, not the tone

    # The call went over alice's TLS connection (opened by her REGISTER, none accepted since),
    # in records no one on the wire can read: no SIP, no a=crypto key, nothing on her UDP port.
    assert lab.server.metrics()["bridgeline_sip_connections_accepted_total"] == accepted
    wire = signalling.stop()
    assert not wire, f"{len(wire)} UDP datagrams on alice's SIP port"
    raw = signalling.path.read_bytes()
    assert raw.count(TLS_APPLICATION_DATA) >= 4, "no TLS records of the INVITE, ACK, BYE and answers"
    for clear in (b"SIP/2.0", b"a=crypto", b"RTP/SAVP", b"INVITE sip:"):
        assert clear not in raw, f"{clear!r} in clear on the TLS connection"
