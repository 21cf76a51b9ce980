"""A node killed in the middle of a SIP call (issue #12): two real phones in a conference owned by node b,
two nodes on one PostgreSQL database; b is killed with SIGKILL, node a takes the conference over and
re-INVITEs both phones from its own SIP address and RTP ports, and the phones go on hearing each other
(by spectrum) and hold still works, driven through a."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterkit import database_url
from e2ekit import AUTH_ID, AUTH_TOKEN, Api, Phlo, sdk_client
from sipaudio import assert_hears
from sipkit import Ports, ProcSet, SipServer, wait_for
from siplab import ALL_TONES, CUSTOMER_HOLD, TONE_A, TONE_B, Lab, Tones

pytestmark = pytest.mark.postgres
__all__ = ["database_url"]  # a fixture, used by name
TAKEN_OVER_S = 20.0  # from the kill to both legs recovered at a: a lease, a scan, two re-INVITEs (loaded CI)


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


@pytest.fixture
def nodes(tmp_path: Path, ports: Ports, database_url: str) -> Iterator[dict[str, SipServer]]:
    procs = ProcSet(tmp_path / "node-logs")
    started: dict[str, SipServer] = {}
    try:
        for node_id in (
            "b",
            "a",
        ):  # b first: the run placed from b stays there (a tie goes to the local node)
            env = {"DATABASE_URL": database_url, "BRIDGELINE_NODE_ID": node_id}
            server = SipServer(tmp_path / node_id, ports, procs, {}, auth=(AUTH_ID, AUTH_TOKEN), env=env)
            server.start()
            started[node_id] = server
        yield started
    finally:
        for server in started.values():
            if server.proc is not None and server.proc.running:
                server.stop()
            for client in server.clients:  # a killed node's API clients (stop() closes a live one's)
                client.close()
        leaked = procs.stop_all()
        assert not leaked, f"processes left behind: {leaked}"


def test_a_killed_nodes_sip_calls_go_on_at_the_node_that_takes_them(
    nodes: dict[str, SipServer], ports: Ports, tones: Tones, tmp_path: Path
) -> None:
    a, b = nodes["a"], nodes["b"]
    lab = Lab(b, ports, tones, tmp_path)
    try:
        # baresip answers a moved peer where RFC 3261 18.2.2 says (sipp keeps the first INVITE's source).
        agent = lab.baresip("agent", TONE_A)
        customer = lab.baresip("customer", TONE_B)
        lab.capture(agent, customer)
        phlo = lab.create_phlo()
        lab.run(phlo, agent=agent.uri, customer=customer.uri)
        view = lab.connected(phlo, customer.uri, hears=[agent.uri])
        lab.connected(phlo, agent.uri, hears=[customer.uri])
        before = lab.listen()

        b.kill()
        wait_for(
            lambda: a.metrics().get("bridgeline_sip_recoveries_succeeded_total") == 2,
            TAKEN_OVER_S,
            "both legs recovered by node a",
        )
        assert a.metrics().get("bridgeline_node_takeovers_total", 0) >= 1
        lab.sdk.session.close()  # its connection was to b
        lab.server, lab.api, lab.sdk = a, Api(a), sdk_client(a.url)  # type: ignore[arg-type]
        at_a = Phlo(lab.api, phlo.phlo_id, phlo.node_id)
        lab.connected(at_a, agent.uri, hears=[customer.uri])
        lab.connected(at_a, customer.uri, hears=[agent.uri])
        after = lab.listen(seconds=1.0, settle=1.0)  # the media now flows through a's RTP ports

        mpc = lab.mpc(at_a)
        mpc.member(customer.uri).hold()
        at_a.wait_member(customer.uri, status="on_hold")
        held = lab.listen()
        mpc.member(customer.uri).unhold()
        lab.connected(at_a, customer.uri, hears=[agent.uri])
        agent.command("hangup")  # its BYE goes to the Contact of a's re-INVITE
        lab.left(at_a, agent.uri, "remote_hangup")
        mpc.member(customer.uri).hangup()
        lab.assert_ended(at_a, view["mpc_uuid"])
        customer.wait_event("CALL_CLOSED")

        lab.server = b  # what b sent before it died
        assert_hears(lab.heard(agent, before), [TONE_B], others(TONE_B))
        assert_hears(lab.heard(customer, before), [TONE_A], others(TONE_A))
        lab.server = a  # what a sends since it took the calls
        assert_hears(lab.heard(agent, after), [TONE_B], others(TONE_B))
        assert_hears(lab.heard(customer, after), [TONE_A], others(TONE_A))
        assert_hears(lab.heard(customer, held), [CUSTOMER_HOLD], others(CUSTOMER_HOLD))
    finally:
        leaked = lab.close()
        assert not leaked, f"processes left behind: {leaked}"
