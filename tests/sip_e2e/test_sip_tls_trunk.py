"""The trunk over TLS with a real peer: numbers are dialled over TLS to a trunk whose certificate is
checked against the configured CA and its host (baresip listening on TLS stands in for the
provider: Debian's sipp has no TLS), and the call is heard both ways."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sipaudio import assert_hears
from sipkit import Ports
from siplab import ALL_TONES, TONE_A, TONE_B, Lab
from tlscerts import CertFiles, make_certs

PORTS: dict[str, int] = {}
CERTS: list[CertFiles] = []


def sip_config(ports: Ports) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bridgeline-tls-trunk-test-"))
    atexit.register(shutil.rmtree, root, True)
    CERTS.append(make_certs(root))
    PORTS["trunk"] = ports.take(2)  # the provider's UDP port, and its TLS port after it
    return {
        "tls": {"ca_file": str(CERTS[0].ca), "verify_peers": True},  # dialling only: no listener
        "trunk": {
            "proxy": f"127.0.0.1:{PORTS['trunk'] + 1}",
            "transport": "tls",
            "domain": "127.0.0.1",
            "caller_id": "+14150000000",
        },
    }


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def test_numbers_go_to_the_trunk_over_tls(lab: Lab) -> None:
    number = "+14155550123"
    provider = lab.baresip(  # a phone whose user is the number: it answers the Request-URI we send
        "provider",
        TONE_A,
        account=f"<sip:{number}@127.0.0.1:{PORTS['trunk']}>;regint=0;answermode=auto;audio_codecs=PCMU",
        extra_config=f"sip_certificate {CERTS[0].combined}\n",
        sip_port=PORTS["trunk"],
    )
    customer = lab.sipp_phone("customer", TONE_B)
    lab.capture(provider, customer)
    phlo = lab.create_phlo()

    lab.run(phlo, agent=number, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[number])
    talking = lab.listen()
    for member in (customer.uri, number):
        lab.mpc(phlo).member(member).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], customer)
    provider.wait_event("CALL_CLOSED")

    assert_hears(lab.heard(provider, talking), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(customer, talking), [TONE_A], others(TONE_A))
    metrics = lab.server.metrics()
    assert metrics["bridgeline_sip_connections_dialled_total"] == 1
    assert metrics["bridgeline_sip_tls_handshake_failures_total"] == 0
