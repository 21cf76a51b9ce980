"""OPTIONS keepalive of a trunk proxy named by host, with a real nameserver (dnsmasq) and a real
proxy stand-in (a sipp UAS answering OPTIONS): the pings go to the servers its SRV records name,
never to the name; the first server is dead, so after one miss they move on to the second, and
the trunk stays up. Until the nameserver answers (it starts after the server), the name does not
resolve: every ping is a miss and the trunk is down. Before this, a named proxy was pinged at its
name and marked down for good."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dnskit import Dnsmasq, host, srv
from e2ekit import wait_until
from sipkit import Ports, Sipp
from siplab import Lab

PORTS: dict[str, int] = {}


def sip_config(ports: Ports) -> dict[str, Any]:
    PORTS.update(dns=ports.take(), dead=ports.take(), proxy=ports.take())
    return {
        "trunk": {
            "proxy": "trunk.test",
            "domain": "carrier.test",
            "keepalive_s": 0.5,
            "keepalive_timeout_s": 0.3,
            "down_after": 3,
        },
        "dns": {"nameservers": [f"127.0.0.1:{PORTS['dns']}"], "timeout_s": 0.5, "negative_ttl_s": 0},
    }


def metric(lab: Lab, name: str) -> float:
    return lab.server.metrics().get(f"bridgeline_sip_{name}", 0.0)


def test_a_named_trunk_is_pinged_at_its_located_servers_and_stays_up_past_a_dead_one(
    lab: Lab, tmp_path: Path
) -> None:
    proxy: Sipp = lab.sipp("proxy", "uas_options.xml", sip_port=PORTS["proxy"], calls=10_000, timeout_s=60)
    records = [
        srv("_sip._udp.trunk.test", "p10.trunk.test", PORTS["dead"], 10),  # nothing answers there
        srv("_sip._udp.trunk.test", "p20.trunk.test", PORTS["proxy"], 20),
        host("p10.trunk.test", "127.0.0.1"),
        host("p20.trunk.test", "127.0.0.1"),
    ]
    with Dnsmasq(records, port=PORTS["dns"], log=tmp_path / "dnsmasq.log"):
        wait_until(lambda: "OPTIONS" in proxy.received(), timeout=10, interval=0.1, what="a ping at p20")
        wait_until(lambda: metric(lab, "trunk_up") == 1, timeout=5, interval=0.1, what="trunk up")
        answered_from = metric(lab, "trunk_keepalives_sent_total")
        time.sleep(2.0)  # four more intervals: the pings stay with the server that answers
        assert metric(lab, "trunk_up") == 1
        assert metric(lab, "trunk_keepalives_sent_total") >= answered_from + 3
    proxy.proc.stop()
    log = lab.server.stderr()
    assert "sip_trunk_dns_failed" in log.split("sip_trunk_down")[0]  # down while the name did not resolve
    assert "sip_trunk_down" not in log.split("sip_trunk_up")[-1]  # and never again once it did
