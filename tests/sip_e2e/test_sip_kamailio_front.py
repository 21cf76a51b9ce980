"""Two Bridgeline nodes on one PostgreSQL database behind a real Kamailio (deploy/kamailio/), all on
127.0.0.1 (issue #12, "SIP through Kamailio"):

- inbound calls through Kamailio reach a node and join a conference; after kill -9 of the node
  Kamailio picks first, a new call is answered by the other node (failover on no answer), and
  OPTIONS probing keeps a silent destination out of the rotation;
- a phone registered through Kamailio (landing on one node) is called by the other node: the
  binding is shared through the store, and the INVITE goes through Kamailio along the Path;
- a call through Kamailio whose node is killed is recovered by the other node along the route set,
  and the phone's BYE reaches the new owner through Kamailio.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from e2ekit import AUTH_ID, AUTH_TOKEN, Phlo
from kamkit import Kamailio, database, kill_node
from sipaudio import assert_hears
from sipkit import Baresip, Ports, ProcSet, Sipp, SipServer, wait_for
from siplab import ALL_TONES, TONE_A, TONE_B, TONE_C, Lab, Tones

pytestmark = pytest.mark.postgres

DOMAIN = "bridgeline.test"
PASSWORD = "alice-secret"
NUMBER, PHLO_ID = "+14155550177", "sip-e2e-kamailio-inbound"
CALLER = "+14155551177"


@dataclass
class Front:
    """Kamailio in front of two nodes, and one Lab (peers, API, capture) per node."""

    kamailio: Kamailio
    nodes: list[SipServer]
    labs: dict[str, Lab]  # by the node's SIP address
    database_url: str
    silent: str  # a destination in the dispatcher list that never answers

    def lab(self, sip_address: str) -> Lab:
        return self.labs[sip_address]

    def other(self, sip_address: str) -> SipServer:
        return next(n for n in self.nodes if n.sip_address != sip_address)


@pytest.fixture
def front(ports: Ports, tones: Tones, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Front]:
    """Two nodes (node-a, node-b) and Kamailio, plus a destination nobody answers (for probing)."""
    procs = ProcSet(tmp_path / "logs")
    node_procs: list[ProcSet] = []  # one each: a node's log files are named after its command
    kamailio_port, silent_port = ports.take(), ports.take()
    kamailio_address = f"127.0.0.1:{kamailio_port}"
    ping_interval_s = getattr(request, "param", 1)
    with database() as database_url:
        config = {
            "domain": DOMAIN,
            "endpoints": {"alice": PASSWORD},
            # Calls Kamailio relays are the trunk's (the carrier's), as in docs/cluster.md.
            "trunk": {"proxy": kamailio_address, "domain": "carrier.test"},
            "registrations": {"path_proxies": [kamailio_address]},
            "inbound": [
                {
                    "number": NUMBER,
                    "phlo_id": PHLO_ID,
                    "role": "customer",
                    "payload": {"customer": "{{from}}"},
                }
            ],
        }
        nodes: list[SipServer] = []
        labs: dict[str, Lab] = {}
        try:
            for name in ("node-a", "node-b"):
                env = {"DATABASE_URL": database_url, "BRIDGELINE_NODE_ID": name}
                node_procs.append(ProcSet(tmp_path / name / "logs"))
                auth = (AUTH_ID, AUTH_TOKEN)
                node = SipServer(tmp_path / name, ports, node_procs[-1], config, auth=auth, env=env)
                nodes.append(node)
                node.start()
                labs[node.sip_address] = Lab(node, ports, tones, tmp_path / f"lab-{name}")
            destinations = [("silent", f"127.0.0.1:{silent_port}")]
            destinations += [(f"node-{i}", n.sip_address) for i, n in enumerate(nodes)]
            kamailio = Kamailio(procs, tmp_path, kamailio_port, destinations, ping_interval_s=ping_interval_s)
            yield Front(kamailio, nodes, labs, database_url, f"sip:127.0.0.1:{silent_port}")
        finally:
            leaked = [name for lab in labs.values() for name in lab.close()]
            for node in nodes:
                if node.proc is not None and node.proc.running:
                    node.stop()
            leaked += procs.stop_all()
            for node_set in node_procs:
                leaked += node_set.stop_all()
            assert not leaked, f"processes left behind: {leaked}"
    for node in nodes:
        assert "Traceback" not in node.stderr(), f"a node logged an exception:\n{node.stderr()[-6000:]}"


def call_in(lab: Lab, name: str, kamailio: Kamailio, call_id: str) -> Sipp:
    """A caller (route-aware: its ACK follows the Record-Route) dialling NUMBER at Kamailio."""
    return lab.sipp(
        name,
        "uac_call.xml",
        substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_B)), "CALLER_NUMBER": CALLER},
        remote=kamailio.address,
        service=NUMBER,
        user=CALLER,
        extra_args=("-cid_str", call_id),  # sipp's Call-ID, fixed: Kamailio hashes it to pick a node
    )


def sent_ack(sipp: Sipp) -> str:
    """The ACK a sipp caller sent, as text."""
    sent = re.compile(r"message sent \(\d+ bytes\):\s*\n(ACK .*?)(?=^-{10,}|\Z)", re.M | re.S)
    found = sent.search(sipp.messages())
    return found.group(1) if found else ""


def answered_by(front: Front, phlo: Phlo, call_id: str, sip_address: str) -> None:
    """The call is in a conference on the node at sip_address; it hangs up there, and the caller
    gets the BYE through Kamailio (its call ends as scripted)."""
    on_node = Phlo(front.lab(sip_address).api, phlo.phlo_id, phlo.node_id)
    view = on_node.wait_member(CALLER, timeout=10, status="connected")
    assert view["mpc_uuid"], view
    assert on_node.member_action(CALLER, "hangup").status_code == 201
    on_node.wait_ended(view["mpc_uuid"], timeout=10)


@pytest.mark.parametrize("front", [3], indirect=True)  # probes every 3 s: the kill is not seen at once
def test_inbound_calls_reach_a_live_node_and_fail_over_when_it_dies(front: Front) -> None:
    kam = front.kamailio
    silent = front.silent
    # Probing alone: the destination nobody answers is marked inactive before any call, the nodes stay active.
    flags = wait_for(
        lambda: (d := kam.destinations()) and "I" in d.get(silent, "") and d,
        10,
        "probing to mark it inactive",
    )
    assert all(f.startswith("A") for uri, f in flags.items() if uri != silent), flags

    first_lab = next(iter(front.labs.values()))
    phlo = first_lab.create_phlo(dial=[("{{customer}}", "customer")], phlo_id=PHLO_ID)
    call_id = "kamailio-front-1@test"  # the same Call-ID: Kamailio's hash picks the same node first

    caller = call_in(first_lab, "caller-1", kam, call_id)
    first = wait_for(lambda: kam.node_for(call_id), 10, "Kamailio to dispatch the call")
    answered_by(front, phlo, call_id, first)
    caller.assert_succeeded()
    assert kam.failovers(call_id) == []
    # Our 200 carried Kamailio's Record-Route (RFC 3261 12.1.1): the caller's ACK is routed by it.
    assert f"Route: <sip:{kam.address};lr>" in sent_ack(caller), sent_ack(caller)

    dead = next(n for n in front.nodes if n.sip_address == first)
    survivor = front.other(first)
    kill_node(dead)
    caller = call_in(front.lab(survivor.sip_address), "caller-2", kam, call_id)
    # The dead node was still active: the INVITE went to it, got no answer, and moved on.
    wait_for(lambda: kam.failovers(call_id), 10, "Kamailio to fail the call over")
    assert kam.failovers(call_id) == [survivor.sip_address], kam.log()[-3000:]
    answered_by(front, phlo, call_id, survivor.sip_address)
    caller.assert_succeeded()

    # The dead node is now out of the rotation (marked on the timeout, kept so by the probes):
    # the next call goes straight to the survivor.
    assert "I" in kam.destinations()[f"sip:{first}"]
    caller = call_in(front.lab(survivor.sip_address), "caller-3", kam, call_id)
    answered_by(front, phlo, call_id, survivor.sip_address)
    caller.assert_succeeded()
    assert len(kam.failovers(call_id)) == 1


def registered_through_kamailio(lab: Lab, kamailio: Kamailio) -> Baresip:
    account = (
        f'<sip:alice@{DOMAIN}>;auth_pass={PASSWORD};outbound="sip:{kamailio.address}";'
        "regint=60;answermode=auto;audio_codecs=PCMU"
    )
    alice = lab.baresip("alice", TONE_A, account=account)
    registered = re.compile(r"200 OK \(Bridgeline\) \[\d+ bindings?\]")
    wait_for(lambda: registered.search(alice.proc.stdout()), 15, "alice to register through Kamailio")
    return alice


def test_a_phone_registered_through_one_node_is_called_by_the_other(front: Front) -> None:
    kam = front.kamailio
    any_lab = next(iter(front.labs.values()))
    alice = registered_through_kamailio(any_lab, kam)
    registrar = [n for n in front.nodes if "sip_registration" in n.stderr()]
    assert len(registrar) == 1, "the REGISTER (and its digest retry) reached exactly one node"
    caller_node = front.other(registrar[0].sip_address)
    assert "sip_registration" not in caller_node.stderr()

    # The binding is in the shared store, with Kamailio's Path and the phone's real address.
    with psycopg.connect(front.database_url) as connection:
        rows = connection.execute("SELECT sip_domain, username, binding FROM sip_registrations").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(DOMAIN, "alice")]
    assert f"sip:{kam.address};lr" in rows[0][2] and f"received=sip:127.0.0.1:{alice.sip_port}" in rows[0][2]

    lab = front.lab(caller_node.sip_address)
    agent = lab.sipp_phone("agent", TONE_C)
    lab.capture(alice, agent)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=f"sip:alice@{DOMAIN}", customer=agent.uri)
    view = lab.connected(phlo, f"sip:alice@{DOMAIN}", timeout=15)
    lab.connected(phlo, agent.uri)
    assert f"from node {caller_node.sip_address}: INVITE sip:alice" in kam.log()  # along the Path
    window = lab.listen(1.0)
    assert phlo.member_action(agent.uri, "hangup").status_code == 201
    # The BYE to alice follows the route set Kamailio recorded.
    assert phlo.member_action(f"sip:alice@{DOMAIN}", "hangup").status_code == 201
    lab.assert_ended(phlo, view["mpc_uuid"], agent)
    alice.wait_event("CALL_CLOSED")
    assert_hears(lab.heard(alice, window), [TONE_C], [f for f in ALL_TONES if f != TONE_C])
    assert_hears(lab.heard(agent, window), [TONE_A], [f for f in ALL_TONES if f != TONE_A])


def test_a_call_through_kamailio_moves_with_its_node_and_the_phones_requests_follow(front: Front) -> None:
    """The caller's dialog is record-routed by Kamailio. Its node is killed; the survivor recovers the leg
    with a re-INVITE along the saved route set (through Kamailio, with the survivor's Contact), so the
    phone's next in-dialog request (its BYE) is relayed by Kamailio to the survivor, which owns the
    dialog: no request meets a node without it, no 481 (docs/cluster.md, "Why 481 there")."""
    kam = front.kamailio
    labs = list(front.labs.values())
    agent = labs[0].baresip("agent", TONE_C)  # dialed by the run, straight from the node
    caller = labs[0].baresip("caller", TONE_A)
    created = labs[0].create_phlo(dial=[("{{customer}}", "customer"), (agent.uri, "agent")], phlo_id=PHLO_ID)
    caller.command("dial", f"sip:{NUMBER}@{kam.address}")

    def live() -> tuple[str, str] | None:
        with psycopg.connect(front.database_url) as connection:
            rows = connection.execute(
                "SELECT conference_id, owner_node FROM conferences WHERE status = 'live'"
            )
            found = rows.fetchall()
        return (found[0][0], found[0][1]) if found else None

    mpc_uuid, owner_id = wait_for(live, 15, "the inbound call's conference")
    owner = next(n for n in front.nodes if n.env["BRIDGELINE_NODE_ID"] == owner_id)
    survivor = front.other(owner.sip_address)
    lab = front.lab(survivor.sip_address)
    phlo = Phlo(lab.api, PHLO_ID, created.node_id)  # driven through the survivor from the start
    members = {m["member_address"]: m for m in phlo.conference(mpc_uuid)["members"]}
    (caller_address,) = [a for a in members if a != agent.uri]
    phlo.wait_member(caller_address, status="connected", hears=[agent.uri], timeout=10)
    phlo.wait_member(agent.uri, status="connected", hears=[caller_address], timeout=10)
    lab.capture(caller, agent)

    kill_node(owner)
    wait_for(
        lambda: survivor.metrics().get("bridgeline_sip_recoveries_succeeded_total") == 2,
        20,
        "the survivor to recover both legs",
    )
    phlo.wait_member(caller_address, status="connected", hears=[agent.uri], timeout=10)
    after = lab.listen(seconds=1.0, settle=1.0)

    caller.command("hangup")  # along the route set: Kamailio, then the survivor's Contact
    # taken by the survivor (a node without the dialog would answer 481 and the member would stay)
    phlo.wait_member(caller_address, status="left", leave_reason="remote_hangup", timeout=10)
    assert phlo.member_action(agent.uri, "hangup").status_code == 201
    phlo.wait_ended(mpc_uuid, timeout=10)
    agent.wait_event("CALL_CLOSED")
    assert_hears(lab.heard(caller, after), [TONE_C], [f for f in ALL_TONES if f != TONE_C])
    assert_hears(lab.heard(agent, after), [TONE_A], [f for f in ALL_TONES if f != TONE_A])
