"""SIP signalling over IPv6 with a real peer: a server listening on [::1] calls a sipp UAS on ::1,
dialled as a `sip:user@[::1]:port` literal and through a trunk named by host whose SRV target has
only an AAAA record (dnsmasq on 127.0.0.1). RTP stays on 127.0.0.1 here (signalling and media may be
of different families); media over IPv6 is test_sip_ipv6_media.py's."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnskit import Dnsmasq, host, srv
from e2ekit import AUTH_ID, AUTH_TOKEN
from sipkit import Ports, ProcSet, SipServer, wait_for
from siplab import Lab

NUMBER = "+14155550166"
DNS_PORT: dict[str, int] = {}


class Ipv6SipServer(SipServer):
    @property
    def sip_address(self) -> str:
        return f"[::1]:{self.sip_port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ports: Ports) -> Iterator[SipServer]:
    DNS_PORT["port"] = ports.take()
    config = {
        "trunk": {"proxy": "v6.test", "domain": "carrier.test"},
        "dns": {"nameservers": [f"127.0.0.1:{DNS_PORT['port']}"]},
    }
    root = tmp_path_factory.mktemp("bridgeline-sip-ipv6")
    procs = ProcSet(root / "logs")
    process = Ipv6SipServer(root, ports, procs, config, auth=(AUTH_ID, AUTH_TOKEN))
    try:
        process.start()
        yield process
    finally:  # as conftest.sip_server: a clean exit, nothing left behind
        if process.proc is not None:
            status = process.stop()
            assert not procs.stop_all(), "processes left behind"
            assert status in (0, -15, 143), f"bridgeline exited with {status}:\n{process.stderr()[-4000:]}"


def udp6_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("::1", port))
        except OSError:
            return True
        return False


class Sipp6:
    """sipp's built-in UAS (180, 200, then waits for the BYE) on [::1], one call."""

    def __init__(self, lab: Lab, name: str) -> None:
        self.port = lab.ports.take()
        self.messages = lab.work / f"{name}-messages.log"
        argv = [
            "sipp", "-sn", "uas", "-i", "::1", "-p", str(self.port), "-mi", "127.0.0.1",
            "-mp", str(lab.ports.take(4, even=True)), "-cp", str(lab.ports.take()), "-m", "1",
            "-nostdin", "-timeout", "30s", "-timeout_error",
            "-trace_msg", "-message_file", str(self.messages),
        ]  # fmt: skip
        self.proc = lab.procs.start(name, argv, timeout_s=40, cwd=lab.work)
        wait_for(
            lambda: udp6_bound(self.port) or not self.proc.running, 10, f"{name} to bind [::1]:{self.port}"
        )

    @property
    def uri(self) -> str:
        return f"sip:bob@[::1]:{self.port}"

    def text(self) -> str:
        return self.messages.read_text(errors="replace") if self.messages.exists() else ""


def call(lab: Lab, to: str, peer: Sipp6) -> None:
    phlo = lab.create_phlo(dial=[("{{agent}}", "agent")])
    lab.run(phlo, agent=to)
    mpc_uuid = lab.connected(phlo, to)["mpc_uuid"]
    lab.mpc(phlo).member(to).hangup()
    lab.assert_ended(phlo, mpc_uuid)
    assert peer.proc.wait(10) == 0, peer.text()[-3000:]  # answered, then got our BYE


def test_a_call_to_an_ipv6_literal(lab: Lab) -> None:
    peer = Sipp6(lab, "sipp-v6")
    call(lab, peer.uri, peer)
    invite = peer.text().split("INVITE sip:", 1)[1]
    assert f"Via: SIP/2.0/UDP {lab.server.sip_address};" in invite
    assert f"Contact: <sip:bridgeline@{lab.server.sip_address}>" in invite


def test_a_trunk_whose_server_has_only_an_aaaa_record(lab: Lab, tmp_path: Path) -> None:
    peer = Sipp6(lab, "sipp-v6-trunk")
    records: list[Any] = [
        srv("_sip._udp.v6.test", "only6.v6.test", peer.port, 10),
        host("only6.v6.test", "::1"),
    ]
    with Dnsmasq(records, port=DNS_PORT["port"], log=tmp_path / "dnsmasq.log") as dns:
        call(lab, NUMBER, peer)
        asked = dns.queries()
    assert "query[AAAA] only6.v6.test" in asked and "query[A] only6.v6.test" not in asked
    assert f"INVITE sip:{NUMBER}@carrier.test SIP/2.0" in peer.text()
