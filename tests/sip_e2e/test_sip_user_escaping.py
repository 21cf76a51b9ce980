"""A SIP URI member whose user part holds characters RFC 3261's `user` production does not allow is
dialed with them percent-encoded (19.1.2), in the Request-URI and the To header."""

from __future__ import annotations

from urllib.parse import quote

from siplab import TONE_A, Lab

ODD_USER = "zo%C3%AB#1|x"  # a client-escaped 'ë' (kept as written), then '#' and '|' to escape
ON_THE_WIRE = "zo%C3%AB%231%7Cx"


def test_a_dialed_user_part_goes_on_the_wire_percent_encoded(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A)
    odd = lab.sipp("odd", "uas_reject.xml", substitutions={"FINAL_STATUS": "486 Busy Here"}, user=ODD_USER)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=odd.uri)
    mpc_uuid = lab.connected(phlo, agent.uri)["mpc_uuid"]
    # Before: '|' made the URI unparsable and the dial failed without an INVITE ('#' went out raw).
    # The member keeps its address as the client wrote it (percent-encoded once more in the API path).
    left = lab.left(phlo, quote(odd.uri, safe=":@+"), "busy")
    assert left["member_address"] == odd.uri
    odd.assert_succeeded()
    invite = odd.received_messages()[0]
    request_line, *headers = invite.splitlines()
    assert request_line == f"INVITE sip:{ON_THE_WIRE}@127.0.0.1:{odd.sip_port} SIP/2.0", invite
    to = next(h for h in headers if h.lower().startswith(("to:", "t:")))
    assert f"sip:{ON_THE_WIRE}@127.0.0.1:{odd.sip_port}" in to, to
    assert invite.isascii()
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid)
