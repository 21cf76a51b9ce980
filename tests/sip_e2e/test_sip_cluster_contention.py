"""Two nodes racing for one member address (issue #12, docs/cluster.md "Member addresses"), with real
SIP peers on one PostgreSQL database: two calls to the same number arriving at the two nodes at once,
whose runs both dial the same agent, and the same address added to conferences of both nodes at once.
Exactly one wins: the other call is answered 486 Busy Here, the other action 400, and nothing of the
loser is written or dialed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from clusterkit import Cluster, database_url
from e2ekit import Api, Phlo, sdk_client
from sipcluster import sip_nodes
from sipkit import Ports, Sipp, SipServer, wait_for
from siplab import TONE_A, TONE_B, TONE_C, Lab, Tones

pytestmark = pytest.mark.postgres
__all__ = ["database_url"]  # a fixture, used by name
NUMBER, PHLO_ID = "+14155550177", "sip-e2e-cluster-contention"
CALLERS = ("+14155551301", "+14155551302")
PORTS: dict[str, int] = {}


@pytest.fixture
def nodes(tmp_path: Path, ports: Ports, database_url: str) -> Iterator[dict[str, SipServer]]:
    PORTS.update(agent=ports.take(), trunk=ports.take())
    config = {
        # A trunk on loopback: INVITEs from 127.0.0.1 are the trunk's (no digest challenge first).
        "trunk": {"proxy": f"127.0.0.1:{PORTS['trunk']}", "domain": "trunk.test"},
        "inbound": [
            {
                "number": NUMBER,
                "phlo_id": PHLO_ID,
                "payload": {"customer": "{{from}}", "agent": f"sip:agent@127.0.0.1:{PORTS['agent']}"},
            }
        ],
    }
    with sip_nodes(tmp_path, ports, database_url, ("a", "b"), config) as started:
        yield started


@pytest.fixture
def store(tmp_path: Path, database_url: str) -> Cluster:
    return Cluster(tmp_path / "store", database_url)


def at_once(*actions: Any) -> list[Any]:
    """Run the callables in threads released together; their results, in order."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = actions[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


class OnePortAtATime:
    """The session's Ports for peers started from several threads at once (taking is not thread-safe)."""

    def __init__(self, ports: Ports) -> None:
        self._ports, self._lock = ports, threading.Lock()

    def take(self, count: int = 1, *, even: bool = False) -> int:
        with self._lock:
            return self._ports.take(count, even=even)


def final(sipp: Sipp) -> str:
    """The status of the first final answer the caller got ("" before one)."""
    return next((status for status in sipp.received() if status[:1] in ("2", "4", "5", "6")), "")


def invites(sipp: Sipp) -> int:
    return sum(1 for line in sipp.received() if line.startswith("INVITE"))


def live_addresses(store: Cluster) -> list[tuple[str, str]]:
    return sorted(store.query("SELECT address, conference_id FROM conference_addresses"))


def test_two_calls_to_one_number_at_two_nodes_at_once_connect_one_and_the_other_is_busy(
    nodes: dict[str, SipServer], store: Cluster, ports: Ports, tones: Tones, tmp_path: Path
) -> None:
    a, b = nodes["a"], nodes["b"]
    lab = Lab(a, ports, tones, tmp_path)
    try:
        agent = lab.sipp(
            "agent",
            "uas_play.xml",
            substitutions={"AUDIO_WAV": str(tones.ulaw(TONE_A))},
            sip_port=PORTS["agent"],
        )
        phlo = lab.create_phlo(phlo_id=PHLO_ID)  # the run's dial list: {{agent}}, then {{customer}}

        shared_ports = OnePortAtATime(ports)

        def call(node: SipServer, caller: str) -> Any:
            def start() -> Sipp:
                sipp = Sipp(
                    lab.procs,
                    shared_ports,  # type: ignore[arg-type]  # duck-typed: take()
                    tmp_path,
                    f"caller-{caller}",
                    "uac_call_or_busy.xml",
                    substitutions={"AUDIO_WAV": str(tones.ulaw(TONE_B)), "CALLER_NUMBER": caller},
                    remote=node.sip_address,
                    service=NUMBER,
                    user=caller,
                )
                lab.sipps.append(sipp)  # its trace in the report of a failure
                return sipp

            return start

        callers = at_once(call(a, CALLERS[0]), call(b, CALLERS[1]))  # each INVITE to its own node
        wait_for(lambda: all(final(c) for c in callers), 15, "both callers to get a final answer")
        assert sorted(final(c) for c in callers) == ["200", "486"], [c.received_messages() for c in callers]
        winner = next(c for c in callers if final(c) == "200")
        loser = next(c for c in callers if c is not winner)
        winner_node = a if winner.user == CALLERS[0] else b
        view = Phlo(Api(winner_node), PHLO_ID, phlo.node_id)
        conference = view.wait_member(winner.user, status="connected", hears=[agent.uri], timeout=10)
        view.wait_member(agent.uri, status="connected", hears=[winner.user])

        # The store: one live conference, which holds the agent; the busy call left nothing live.
        mpc_uuid = conference["mpc_uuid"]
        assert [c["mpc_uuid"] for c in view.instances() if c["status"] == "live"] == [mpc_uuid]
        assert live_addresses(store) == sorted([(agent.uri, mpc_uuid), (winner.user, mpc_uuid)])
        ((failed,),) = store.query("SELECT count(*) FROM runs WHERE status = 'failed'")
        assert failed == 1  # the busy call's run, refused before its conference was written
        assert invites(agent) == 1  # the loser never dialed the agent
        loser.assert_succeeded()  # it ACKed the 486

        for address in (winner.user, agent.uri):
            assert view.member_action(address, "hangup").status_code == 201
        view.wait_ended(mpc_uuid)
        winner.assert_succeeded()  # it got the BYE
        agent.assert_succeeded()
    finally:
        leaked = lab.close()
        assert not leaked, f"processes left behind: {leaked}"


def test_the_same_address_added_on_two_nodes_at_once_joins_one_conference(
    nodes: dict[str, SipServer], store: Cluster, ports: Ports, tones: Tones, tmp_path: Path
) -> None:
    a, b = nodes["a"], nodes["b"]
    lab = Lab(a, ports, tones, tmp_path)
    try:
        target = lab.sipp_phone("target", TONE_C)  # answers one call: a second INVITE would fail it
        phlo = lab.create_phlo()
        conferences: dict[str, tuple[Phlo, str, Sipp]] = {}
        for node in (a, b):  # each run placed on the node it is posted to (a tie goes to the local node)
            name = node.env["BRIDGELINE_NODE_ID"]
            agent = lab.sipp_phone(f"agent-{name}", TONE_A)
            customer = lab.sipp_phone(f"customer-{name}", TONE_B)
            view = Phlo(Api(node), phlo.phlo_id, phlo.node_id)
            sdk = sdk_client(node.url)
            sdk.phlo.get(phlo.phlo_id).run(agent=agent.uri, customer=customer.uri)
            sdk.session.close()
            mpc_uuid = lab.connected(view, customer.uri, hears=[agent.uri])["mpc_uuid"]
            conferences[name] = (view, mpc_uuid, agent)
        owners = {name: store.owner(mpc_uuid)[0] for name, (_, mpc_uuid, _) in conferences.items()}
        assert owners == {"a": "a", "b": "b"}, owners

        def add_target(name: str) -> Any:
            view, _, agent = conferences[name]
            body = {"action": "call", "trigger_source": agent.uri, "to": target.uri, "role": "agent"}
            # this node's own answer: forwarding would carry the request to the other conference's owner
            return lambda: view.api.http.post(
                view.node_path, json=body, headers={"X-Bridgeline-Forwarded-By": "test"}
            )

        answers: list[httpx.Response] = at_once(add_target("a"), add_target("b"))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [201, 400], [r.text for r in answers]
        refused = next(r for r in answers if r.status_code == 400)
        assert f"{target.uri} is already in a live conference" in refused.json()["error"]
        won = "a" if answers[0].status_code == 201 else "b"
        lost = "b" if won == "a" else "a"
        won_view, won_uuid, _ = conferences[won]
        lost_view, lost_uuid, _ = conferences[lost]
        lab.connected(won_view, target.uri, timeout=10)
        assert target.uri not in {m["member_address"] for m in lost_view.conference(lost_uuid)["members"]}
        assert (target.uri, won_uuid) in live_addresses(store)
        assert all(address != target.uri or cid == won_uuid for address, cid in live_addresses(store))
        assert invites(target) == 1

        for view, mpc_uuid, _ in conferences.values():
            for member in view.conference(mpc_uuid)["members"]:
                if member["status"] != "left":
                    assert view.member_action(member["member_address"], "hangup").status_code == 201
            view.wait_ended(mpc_uuid)
        target.assert_succeeded()
    finally:
        leaked = lab.close()
        assert not leaked, f"processes left behind: {leaked}"
