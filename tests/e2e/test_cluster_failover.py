"""Conference ownership across real nodes (issue #12): three `bridgeline serve` processes on one PostgreSQL
database, sim carrier. A node killed (-9), paused past its lease (SIGSTOP), drained (SIGTERM) or restarted
alone: its conference carries on at another node (or at itself), proved by the store and the Plivo SDK.

Failover times are printed (`-s` shows them); nothing here asserts a wall-clock time but the bound
every wait has.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from pathlib import Path

import httpx
import pytest
from clusterkit import (
    HEARTBEAT_S,
    TAKEOVER_BOUND,
    Cluster,
    cluster,
    database_url,
    members,
    metrics,
    start_call,
    view_on,
)
from e2ekit import Api, Phlo, ServerProcess, sdk_client, sdk_mpc, wait_until

pytestmark = pytest.mark.postgres
__all__ = ["cluster", "database_url"]  # fixtures, used by name
FAILOVER_TIMES: list[tuple[str, float]] = []


def first_accepted_hold(server: ServerProcess, phlo: Phlo, address: str, since: float) -> float:
    """Hold `address` with the SDK on `server` until the server accepts it; seconds since `since`."""
    mpc = sdk_mpc(sdk_client(server.url), phlo)

    def accepted() -> bool:
        try:
            return bool(mpc.member(address).hold().error == "")
        except Exception:  # refused (not this node's yet): the SDK raises on a 4xx
            return False

    wait_until(accepted, timeout=TAKEOVER_BOUND, interval=0.05, what=f"a hold of {address} accepted")
    return time.monotonic() - since


def report(kind: str, seconds: float) -> None:
    FAILOVER_TIMES.append((kind, seconds))
    times = [s for _, s in FAILOVER_TIMES]
    print(
        f"\nfailover [{kind}]: {seconds:.2f} s from the signal to the first accepted action"
        f" (this session: n={len(times)}, p50={statistics.median(times):.2f} s, max={max(times):.2f} s)"
    )


def test_a_killed_owners_conference_carries_on_at_another_node(cluster: Cluster) -> None:
    for node_id in ("a", "b", "c"):
        cluster.start(node_id)
    b = cluster.nodes["b"]
    phlo, mpc_uuid, agent, customer = start_call(b)
    assert cluster.owner(mpc_uuid) == ("b", cluster.epoch("b"))
    before = members(view_on(b, phlo).conference(mpc_uuid))
    seqs_before = cluster.seqs(mpc_uuid)

    b.kill()  # SIGKILL: no drain, no goodbye; its lease just runs out
    killed_at = time.monotonic()
    new_owner = cluster.wait_owned_by_another(mpc_uuid, "b")
    server = cluster.nodes[new_owner]
    report("kill -9", first_accepted_hold(server, phlo, customer, killed_at))

    view = view_on(server, phlo)
    view.wait_member(customer, status="on_hold")
    view.wait_member(agent, status="connected")
    after = members(view.conference(mpc_uuid))
    assert set(after) == set(before) and after[agent] == before[agent] == "connected"
    seqs = cluster.seqs(mpc_uuid)
    assert seqs[: len(seqs_before)] == seqs_before and len(seqs) > len(seqs_before)
    assert seqs == sorted(set(seqs)) == list(range(1, len(seqs) + 1))  # continued, no gap, no repeat
    assert cluster.owner(mpc_uuid) == (new_owner, cluster.epoch(new_owner))
    figures = metrics(server)
    assert figures["bridgeline_node_lease_held"] == 1
    assert figures["bridgeline_node_epoch"] == cluster.epoch(new_owner)
    assert figures["bridgeline_node_takeovers_total"] >= 1
    assert figures["bridgeline_node_conferences_owned"] >= 1


def test_a_paused_owner_is_fenced_out_and_lets_the_conference_go(cluster: Cluster) -> None:
    for node_id in ("a", "b", "c"):
        cluster.start(node_id)
    b = cluster.nodes["b"]
    phlo, mpc_uuid, agent, customer = start_call(b)
    b_at_pause = b.stderr()
    assert b.process is not None
    os.kill(b.process.pid, signal.SIGSTOP)
    paused_at = time.monotonic()
    try:
        new_owner = cluster.wait_owned_by_another(mpc_uuid, "b")
        report("SIGSTOP", first_accepted_hold(cluster.nodes[new_owner], phlo, customer, paused_at))
    finally:
        os.kill(b.process.pid, signal.SIGCONT)
    owner_after_takeover = cluster.owner(mpc_uuid)
    seqs_after_takeover = cluster.seqs(mpc_uuid)

    # The old owner wakes up still holding the conference in memory: whatever it tries is refused.
    old = view_on(b, phlo)
    with httpx.Client(
        base_url=b.url, auth=(old.api.auth_id, "e2e-secret-token-0123456789"), timeout=10
    ) as http:
        # b's own answer (a forwarded request would be run by the new owner, which is right but not this test)
        own = {"X-Bridgeline-Forwarded-By": "test"}
        refused = http.post(old.member_path(agent), json={"action": "hold"}, headers=own)
        assert refused.status_code in (400, 404, 409), refused.text  # moved (fenced), or already forgotten
        wait_until(
            lambda: "lease_lost" in b.stderr()[len(b_at_pause) :],
            timeout=TAKEOVER_BOUND,
            what="b to log lease_lost",
        )
        # it forgot its copy (which had the customer connected): what it shows now is the store's
        wait_until(
            lambda: "bridgeline_node_conferences_owned 0.0" in http.get("/metrics").text,
            timeout=TAKEOVER_BOUND,
            what="b to own no conference",
        )
        assert http.get(old.member_path(customer)).json()["status"] == "on_hold"
    time.sleep(2 * HEARTBEAT_S)  # b re-registers and scans: it must not claim the conference back
    assert cluster.owner(mpc_uuid) == owner_after_takeover
    assert cluster.seqs(mpc_uuid) == seqs_after_takeover  # no commit from the old owner
    assert cluster.epoch("b") >= 2  # b started a new life rather than renewing the lost lease
    view = view_on(cluster.nodes[owner_after_takeover[0]], phlo)
    assert view.member(customer)["status"] == "on_hold" and view.member(agent)["status"] == "connected"


def test_a_drained_node_hands_its_conference_over_and_exits_cleanly(cluster: Cluster) -> None:
    for node_id in ("a", "b", "c"):
        cluster.start(node_id)
    b = cluster.nodes["b"]
    phlo, mpc_uuid, agent, customer = start_call(b)
    with httpx.Client(timeout=5) as http:
        assert http.get(f"{b.url}/ready").status_code == 200
    assert b.process is not None
    b.process.send_signal(signal.SIGTERM)
    drained_at = time.monotonic()

    def not_ready() -> bool:
        with httpx.Client(timeout=5) as http:
            if http.get(f"{b.url}/ready").status_code != 503:
                return False
            assert http.get(f"{b.url}/health").status_code == 200  # alive all the same
            return True

    wait_until(not_ready, timeout=5, interval=0.01, what="b's /ready to answer 503 while it drains")
    assert b.process.wait(timeout=15) == 0  # drained, then exited by itself
    new_owner = cluster.wait_owned_by_another(mpc_uuid, "b")
    report("SIGTERM drain", first_accepted_hold(cluster.nodes[new_owner], phlo, customer, drained_at))
    view = view_on(cluster.nodes[new_owner], phlo)
    view.wait_member(customer, status="on_hold")
    view.wait_member(agent, status="connected")
    assert "conference_handed_off" in b.stderr() and "lease_lost" not in b.stderr()
    ((state, lease_until),) = cluster.query("SELECT state, lease_until FROM nodes WHERE node_id = 'b'")
    assert (state, lease_until) == ("draining", 0)


def test_a_node_restarted_alone_gets_its_conference_back(cluster: Cluster) -> None:
    solo = cluster.start("solo")
    phlo, mpc_uuid, agent, customer = start_call(solo)
    assert cluster.owner(mpc_uuid) == ("solo", 1)
    solo.kill()
    killed_at = time.monotonic()
    cluster.start("solo")  # same node id, same database: a new epoch
    assert cluster.epoch("solo") == 2
    report("restart alone", first_accepted_hold(solo, phlo, customer, killed_at))
    assert cluster.owner(mpc_uuid) == ("solo", 2)
    view = view_on(solo, phlo)
    view.wait_member(customer, status="on_hold")
    view.wait_member(agent, status="connected")


def test_a_second_process_with_a_node_id_in_use_refuses_to_start(cluster: Cluster, tmp_path: Path) -> None:
    a = cluster.start("a")
    twin = ServerProcess(data_dir=tmp_path / "twin" / "data", log_dir=tmp_path / "twin" / "logs", env=a.env)
    with pytest.raises(AssertionError, match="exited with 2 during startup"):  # the CLI's usage error
        twin.start()
    assert "node id 'a' is in use by a live node" in twin.stderr()
    assert "Traceback" not in twin.stderr()
    assert cluster.epoch("a") == 1  # the live node was not fenced out
    assert Api(a).http.get("/v1/phlo").status_code == 200
