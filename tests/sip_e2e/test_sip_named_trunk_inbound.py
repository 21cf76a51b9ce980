"""Inbound calls from a trunk named by host, with a real nameserver (dnsmasq) and a real caller
(sipp): its SRV record names a server at 127.0.0.2, so an INVITE from 127.0.0.2 is the trunk's and
starts the number's PHLO run without a digest challenge, while the same INVITE from 127.0.0.1 (not
a server of the trunk) is challenged. Before this, a trunk named by host was trusted nowhere: its
calls got 403 (no endpoints) or 407."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnskit import Dnsmasq, host, srv
from e2ekit import wait_until
from sipkit import Ports
from siplab import TONE_A, TONE_B, Lab

NUMBER, PHLO_ID = "+14155550191", "sip-e2e-named-trunk-inbound"
CALLER = "+14155551236"
TRUNK_HOST = "127.0.0.2"  # loopback: the trunk's located server
PORTS: dict[str, int] = {}


def sip_config(ports: Ports) -> dict[str, Any]:
    PORTS.update(dns=ports.take(), agent=ports.take(), trunk=ports.take())
    agent = f"sip:agent@127.0.0.1:{PORTS['agent']}"
    return {
        # Keepalive every 0.5 s: the name is looked up again as often (nothing answers the pings).
        "trunk": {
            "proxy": "trunk.test",
            "domain": "carrier.test",
            "keepalive_s": 0.5,
            "keepalive_timeout_s": 0.3,
        },
        "dns": {"nameservers": [f"127.0.0.1:{PORTS['dns']}"], "timeout_s": 0.5, "negative_ttl_s": 0},
        "endpoints": {"alice": "alice-secret"},  # strangers are challenged (407), not refused outright
        "inbound": [
            {"number": NUMBER, "phlo_id": PHLO_ID, "payload": {"customer": "{{from}}", "agent": agent}}
        ],
    }


def call_in(lab: Lab, name: str, local_ip: str) -> Any:
    return lab.sipp(
        name,
        "uac_call.xml",
        substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_B)), "CALLER_NUMBER": CALLER},
        remote=lab.server.sip_address,
        service=NUMBER,
        user=CALLER,
        local_ip=local_ip,
    )


def test_a_call_from_a_located_server_of_a_named_trunk_is_the_trunks(lab: Lab, tmp_path: Path) -> None:
    records = [
        srv("_sip._udp.trunk.test", "edge.trunk.test", PORTS["trunk"], 10),
        host("edge.trunk.test", TRUNK_HOST),
    ]
    agent = lab.sipp(
        "agent",
        "uas_play.xml",
        substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_A))},
        sip_port=PORTS["agent"],
    )
    with Dnsmasq(records, port=PORTS["dns"], log=tmp_path / "dnsmasq.log"):
        # Located once the nameserver answers (the keepalive's lookups): then its host is trusted.
        wait_until(
            lambda: lab.server.metrics().get("bridgeline_sip_dns_lookups_total", 0) >= 2,
            timeout=10,
            interval=0.1,
            what="the trunk's name located",
        )
        stranger = call_in(lab, "stranger", "127.0.0.1")
        wait_until(
            lambda: not stranger.proc.running, timeout=10, interval=0.1, what="the stranger's sipp to end"
        )
        assert any(m.startswith("SIP/2.0 407") for m in stranger.received_messages())

        phlo = lab.create_phlo(phlo_id=PHLO_ID)
        caller = call_in(lab, "trunk", TRUNK_HOST)
        view = lab.connected(phlo, CALLER, hears=[agent.uri])
        assert not any(m.startswith("SIP/2.0 407") for m in caller.received_messages())
        assert phlo.member_action(CALLER, "hangup").status_code == 201
        caller.assert_succeeded()
        assert phlo.member_action(agent.uri, "hangup").status_code == 201
        lab.assert_ended(phlo, view["mpc_uuid"], agent)
