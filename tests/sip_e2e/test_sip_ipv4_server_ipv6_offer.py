"""One RTP family per server (docs/sip.md "IPv6"): a server on 127.0.0.1 called with an offer whose
media address is IPv6 answers 488 with Warning 301 saying why, instead of a call it cannot carry."""

from __future__ import annotations

import re
from typing import Any

from sipkit import Ports
from siplab import Lab

CALLER = "+14155551237"


def sip_config(ports: Ports) -> dict[str, Any]:
    # Calls from the trunk's host are taken without a digest challenge.
    return {"trunk": {"proxy": f"127.0.0.1:{ports.take()}", "domain": "trunk.test"}}


def test_an_offer_with_an_ipv6_media_address_gets_488_with_warning_301(lab: Lab) -> None:
    caller = lab.sipp(
        "caller",
        "uac_refused.xml",
        substitutions={"CALLER_NUMBER": CALLER},
        remote=lab.server.sip_address,
        service="+14155550000",
        user=CALLER,
        media_ip="::1",  # c=IN IP6 ::1 from a phone that signals over IPv4
    )
    caller.assert_succeeded()
    assert "c=IN IP6 ::1" in caller.messages()
    (refusal,) = [m for m in caller.received_messages() if m.startswith("SIP/2.0 488")]
    warning = re.search(r"^Warning: (.*)$", refusal, re.M)
    assert warning and warning.group(1).startswith("301 "), refusal
    assert "::1 is IPv6 and this server's RTP is IPv4 only" in warning.group(1), refusal
    assert lab.server.metrics()["bridgeline_sip_rtp_ports_in_use"] == 0
    assert lab.server.healthy()
