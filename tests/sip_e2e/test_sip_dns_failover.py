"""A trunk and dialled URIs named by host (RFC 3263) against a real DNS server (dnsmasq on
127.0.0.1, started per test with that test's records) and real sipp peers: the call goes to the
priority-10 SRV target, and on to the priority-20 one when the first answers 503 or nothing listens
there; a 3xx contact named by host is looked up too; a nameserver that never answers fails the
leg with a clear reason and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnskit import Dnsmasq, SilentNameserver, host, naptr, srv
from sipkit import Ports, wait_for
from siplab import TONE_A, TONE_B, Lab

NUMBER = "+14155550100"
DNS_PORT: dict[str, int] = {}


def sip_config(ports: Ports) -> dict[str, Any]:
    DNS_PORT["port"] = ports.take()
    return {
        "trunk": {"proxy": "trunk.test", "domain": "carrier.test"},  # a name: SRV (no port given)
        "dns": {"nameservers": [f"127.0.0.1:{DNS_PORT['port']}"], "timeout_s": 1},
        "failover": {"no_response_s": 1},
        "redirects": {"allowed_targets": ["redir.test"]},
    }


@pytest.fixture
def dns_log(tmp_path: Path) -> Path:
    return tmp_path / "dnsmasq.log"


def dnsmasq(records: list[str], log: Path) -> Dnsmasq:
    return Dnsmasq(records, port=DNS_PORT["port"], log=log)


def metric(lab: Lab, name: str) -> float:
    return lab.server.metrics().get(f"bridgeline_sip_{name}_total", 0.0)


def no_leg_left(lab: Lab) -> None:
    """Every leg's RTP ports are back in the pool (a leaked leg would hold its pair)."""
    in_use = "bridgeline_sip_rtp_ports_in_use"
    wait_for(lambda: lab.server.metrics().get(in_use) == 0, 5, "the RTP ports to be released")


def call_and_hang_up(lab: Lab, agent: Any, customer: str, answering: Any) -> None:
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer)
    mpc_uuid = lab.connected(phlo, agent.uri)["mpc_uuid"]
    lab.connected(phlo, customer)
    lab.mpc(phlo).member(customer).hangup()
    lab.left(phlo, customer, "hangup")
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, answering, agent)
    no_leg_left(lab)


def test_the_trunk_named_by_host_fails_over_from_a_503_to_the_next_srv_target(
    lab: Lab, dns_log: Path
) -> None:
    overloaded = lab.sipp(
        "overloaded", "uas_reject.xml", substitutions={"FINAL_STATUS": "503 Service Unavailable"}
    )
    backup = lab.sipp_phone("backup", TONE_B)
    agent = lab.sipp_phone("agent", TONE_A)
    records = [
        naptr("trunk.test", 10, 10, "SIP+D2U", "_sip._udp.trunk.test"),
        naptr("trunk.test", 20, 10, "SIP+D2T", "_sip._tcp.trunk.test"),  # TCP: not ours, skipped
        srv("_sip._udp.trunk.test", "p10.trunk.test", overloaded.sip_port, 10),
        srv("_sip._udp.trunk.test", "p20.trunk.test", backup.sip_port, 20),
        host("p10.trunk.test", "127.0.0.1"),
        host("p20.trunk.test", "127.0.0.1"),
    ]
    failovers = metric(lab, "failovers")
    with dnsmasq(records, dns_log) as dns:
        call_and_hang_up(lab, agent, NUMBER, backup)
        asked = dns.queries()
    overloaded.assert_succeeded()  # it got the INVITE, answered 503 and got the ACK
    assert overloaded.received() == ["INVITE", "ACK"]
    assert backup.received()[0] == "INVITE"
    assert asked[:2] == ["query[NAPTR] trunk.test", "query[SRV] _sip._udp.trunk.test"], asked
    assert "query[SRV] _sip._tcp.trunk.test" not in asked
    assert metric(lab, "failovers") == failovers + 1
    assert metric(lab, "dns_lookups") >= 4


def test_a_dialled_uri_named_by_host_skips_a_target_where_nothing_listens(lab: Lab, dns_log: Path) -> None:
    nothing = lab.ports.take()  # a port nobody listens on: no answer, not even 100 Trying
    backup = lab.sipp_phone("backup", TONE_B)
    agent = lab.sipp_phone("agent", TONE_A)
    records = [
        srv("_sip._udp.down.test", "dead.down.test", nothing, 10),
        srv("_sip._udp.down.test", "live.down.test", backup.sip_port, 20),
        host("dead.down.test", "127.0.0.1"),
        host("live.down.test", "127.0.0.1"),
    ]
    failovers = metric(lab, "failovers")
    with dnsmasq(records, dns_log):
        call_and_hang_up(lab, agent, "sip:callee@down.test", backup)
    assert metric(lab, "failovers") == failovers + 1  # after failover.no_response_s (1 s)
    invite = backup.received_messages()[0]
    assert invite.startswith("INVITE sip:callee@down.test SIP/2.0")  # the Request-URI keeps the name


@pytest.fixture
def silent() -> Iterator[SilentNameserver]:
    with SilentNameserver() as nameserver:
        yield nameserver


def test_a_nameserver_that_never_answers_fails_the_leg_with_the_reason(
    lab: Lab, dns_log: Path, silent: SilentNameserver
) -> None:
    agent = lab.sipp_phone("agent", TONE_A)
    # dnsmasq hands silent.test to a socket that swallows the queries: no answer ever comes.
    records = [f"--server=/silent.test/127.0.0.1#{silent.port}"]
    failures = metric(lab, "dns_failures")
    offset = len(lab.server.stderr())
    with dnsmasq(records, dns_log):
        phlo = lab.create_phlo()
        lab.run(phlo, agent=agent.uri, customer="sip:callee@silent.test")
        mpc_uuid = lab.connected(phlo, agent.uri)["mpc_uuid"]
        lab.left(phlo, "sip:callee@silent.test", "failed")
        lab.connected(phlo, agent.uri)  # the other call is untouched
    assert silent.swallowed() >= 1
    wait_for(lambda: "sip_dns_failed" in lab.server.stderr()[offset:], 5, "the log line")
    log = lab.server.stderr()[offset:]
    assert "no answer within 1 s" in log and "silent.test" in log, log[-2000:]
    assert metric(lab, "dns_failures") > failures
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, agent)
    no_leg_left(lab)


def test_a_redirect_to_a_host_name_is_looked_up_and_followed(lab: Lab, dns_log: Path) -> None:
    agent = lab.sipp_phone("agent", TONE_A)
    second = lab.sipp_phone("second", TONE_B)
    contact = {"REDIRECT_CONTACT": "<sip:second@redir.test>"}
    first = lab.sipp("first", "uas_redirect.xml", substitutions=contact, user="first")
    records = [
        srv("_sip._udp.redir.test", "phone.redir.test", second.sip_port, 10),
        host("phone.redir.test", "127.0.0.1"),
    ]
    followed = metric(lab, "redirects_followed")
    with dnsmasq(records, dns_log) as dns:
        call_and_hang_up(lab, agent, first.uri, second)  # the member keeps the address dialled
        asked = dns.queries()
    first.assert_succeeded()  # 302 sent, its ACK received
    assert "query[SRV] _sip._udp.redir.test" in asked
    assert second.received_messages()[0].startswith("INVITE sip:second@redir.test SIP/2.0")
    assert metric(lab, "redirects_followed") == followed + 1
