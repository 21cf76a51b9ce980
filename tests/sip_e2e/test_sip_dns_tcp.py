"""A trunk named by host whose DNS says "SIP over TCP" (NAPTR SIP+D2T to `_sip._tcp` SRV records),
against a real DNS server (dnsmasq) and a real sipp UAS on TCP: with a TCP listener configured, the
lookup may choose TCP; the first SRV target refuses the connection, so the call goes to the second
at once (a transport error, not Timer B's 32 s), over TCP."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from dnskit import Dnsmasq, host, naptr, srv
from sipkit import Ports, wait_for
from siplab import TONE_A, TONE_B, Lab

NUMBER = "+14155550100"
PORTS: dict[str, int] = {}


def sip_config(ports: Ports) -> dict[str, Any]:
    PORTS.update(dns=ports.take(), tcp=ports.take())
    return {
        "tcp": {"listen": f"127.0.0.1:{PORTS['tcp']}"},  # what lets DNS choose TCP
        "trunk": {"proxy": "trunk.test", "domain": "carrier.test"},  # a name, no transport pinned
        "dns": {"nameservers": [f"127.0.0.1:{PORTS['dns']}"], "timeout_s": 1},
    }


def metric(lab: Lab, name: str) -> float:
    return lab.server.metrics().get(f"bridgeline_sip_{name}_total", 0.0)


def test_a_trunk_whose_naptr_chooses_tcp_is_reached_over_tcp_past_a_refusing_server(
    lab: Lab, tmp_path: Path
) -> None:
    refusing = lab.ports.take()  # nothing listens there: the connection is refused
    backup = lab.sipp_phone("backup", TONE_B, transport="t1")
    agent = lab.sipp_phone("agent", TONE_A)
    records = [
        naptr("trunk.test", 10, 10, "SIP+D2T", "_sip._tcp.trunk.test"),
        naptr("trunk.test", 20, 10, "SIP+D2U", "_sip._udp.trunk.test"),  # less preferred: unused
        srv("_sip._tcp.trunk.test", "p10.trunk.test", refusing, 10),
        srv("_sip._tcp.trunk.test", "p20.trunk.test", backup.sip_port, 20),
        host("p10.trunk.test", "127.0.0.1"),
        host("p20.trunk.test", "127.0.0.1"),
    ]
    failovers, connect_failures = metric(lab, "failovers"), metric(lab, "connect_failures")
    with Dnsmasq(records, port=PORTS["dns"], log=tmp_path / "dnsmasq.log") as dns:
        phlo = lab.create_phlo()
        lab.run(phlo, agent=agent.uri, customer=NUMBER)
        mpc_uuid = lab.connected(phlo, agent.uri)["mpc_uuid"]
        started = time.monotonic()
        lab.connected(phlo, NUMBER, timeout=8)  # Timer B would hold it for 32 s
        assert time.monotonic() - started < 8
        asked = dns.queries()
    lab.mpc(phlo).member(NUMBER).hangup()
    lab.left(phlo, NUMBER, "hangup")
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, backup, agent)
    wait_for(lambda: lab.server.metrics().get("bridgeline_sip_rtp_ports_in_use") == 0, 5, "RTP ports back")

    assert asked[:2] == ["query[NAPTR] trunk.test", "query[SRV] _sip._tcp.trunk.test"], asked
    invite = backup.received_messages()[0]
    assert invite.startswith(f"INVITE sip:{NUMBER}@carrier.test SIP/2.0"), invite
    assert re.search(r"^Via: SIP/2.0/TCP ", invite, re.M) and ";transport=tcp>" in invite, invite
    assert backup.received()[:2] == ["INVITE", "ACK"]
    assert metric(lab, "failovers") == failovers + 1
    assert metric(lab, "connect_failures") == connect_failures + 1  # the refusal, logged and counted
    assert "sip_connect_failed" in lab.server.stderr()
