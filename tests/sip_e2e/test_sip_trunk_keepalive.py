"""OPTIONS keepalive of the trunk against a real proxy stand-in (a sipp UAS answering OPTIONS): up
while it answers, `bridgeline_sip_trunk_up` 0 once it stops (and dials through the trunk fail at
once, sending nothing), 1 again when it is back."""

from __future__ import annotations

import time
from typing import Any

from e2ekit import wait_until
from sipkit import Ports, Sipp
from siplab import TONE_A, Lab

TRUNK: dict[str, int] = {}


def sip_config(ports: Ports) -> dict[str, Any]:
    TRUNK["port"] = ports.take()
    return {
        "trunk": {
            "proxy": f"127.0.0.1:{TRUNK['port']}",
            "domain": "trunk.test",
            "keepalive_s": 0.5,
            "keepalive_timeout_s": 0.3,
            "down_after": 2,
        }
    }


def trunk_up(lab: Lab) -> float | None:
    return lab.server.metrics().get("bridgeline_sip_trunk_up")


def proxy(lab: Lab, name: str) -> Sipp:
    return lab.sipp(name, "uas_options.xml", sip_port=TRUNK["port"], calls=10_000, timeout_s=60)


def test_the_trunk_goes_down_when_its_proxy_stops_answering_and_up_when_it_is_back(lab: Lab) -> None:
    first = proxy(lab, "proxy")
    wait_until(lambda: trunk_up(lab) == 1, timeout=10, interval=0.1, what="trunk up")
    answered = lab.server.metrics()["bridgeline_sip_trunk_keepalives_sent_total"]
    time.sleep(1.2)
    assert trunk_up(lab) == 1
    assert lab.server.metrics()["bridgeline_sip_trunk_keepalives_sent_total"] >= answered + 2
    assert "OPTIONS" in first.received()

    first.proc.stop()
    down_since = time.monotonic()
    wait_until(lambda: trunk_up(lab) == 0, timeout=10, interval=0.1, what="trunk down")
    assert time.monotonic() - down_since < 5.0  # two pings 0.5 s apart, each given 0.3 s
    assert "sip_trunk_down" in lab.server.stderr()

    # While it is down, a dial through the trunk fails at once, with a log line saying why.
    agent = lab.baresip("agent", TONE_A)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer="+14155550199")
    mpc_uuid = lab.connected(phlo, agent.uri)["mpc_uuid"]
    lab.left(phlo, "+14155550199", "failed", timeout=2)
    assert "sip_dial_trunk_down" in lab.server.stderr()
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid)

    again = proxy(lab, "proxy-again")
    wait_until(lambda: trunk_up(lab) == 1, timeout=10, interval=0.1, what="trunk up again")
    assert "sip_trunk_up" in lab.server.stderr()
    assert lab.server.metrics()["bridgeline_sip_trunk_keepalives_missed_total"] >= 2
    again.proc.stop()
    assert "INVITE" not in first.received() + again.received()
