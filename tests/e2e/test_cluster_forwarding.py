"""Any node answers for every conference (issue #12): three real nodes on one PostgreSQL database.

The Plivo SDK pointed at node A drives the whole walkthrough of a conference that node B owns (placed there by
load), node C's console shows it live, and an action sent to A while B lies dead is carried to the node that
takes B's conference over, and acts once.
"""

from __future__ import annotations

import time

import httpx
import pytest
from clusterkit import HEARTBEAT_S, TAKEOVER_BOUND, Cluster, cluster, database_url, metrics, start_call
from e2e_scenarios import AGENT, CUSTOMER, finish_walkthrough, run_walkthrough
from e2ekit import AUTH_ID, AUTH_TOKEN, Api, sdk_client, sdk_mpc, wait_until

pytestmark = pytest.mark.postgres
__all__ = ["cluster", "database_url"]  # fixtures, used by name


def legs_published(cluster: Cluster, node_id: str, legs: int) -> bool:
    return cluster.query("SELECT live_legs FROM nodes WHERE node_id = %s", node_id) == [(legs,)]


def test_the_sdk_on_one_node_drives_a_conference_another_node_owns(cluster: Cluster) -> None:
    a, b, c = (cluster.start(node_id) for node_id in ("a", "b", "c"))
    start_call(a)  # a and c carry two legs each: a new run goes to b, the least loaded node
    start_call(c)
    for node_id in ("a", "c"):
        wait_until(lambda node_id=node_id: legs_published(cluster, node_id, 2), what=f"{node_id}'s load")
    time.sleep(HEARTBEAT_S)  # a reads the loads at most once a heartbeat: let its last reading age out

    sdk = sdk_client(a.url)  # the SDK talks to node a only
    posts: list[str] = []
    sdk.session.hooks["response"].append(
        lambda r, *args, **kw: posts.append(r.url) if r.request.method == "POST" else None
    )
    phlo, mpc_uuid, run_id = run_walkthrough(Api(b), sdk)
    assert cluster.owner(mpc_uuid) == ("b", cluster.epoch("b"))

    with httpx.Client(base_url=c.url, auth=(AUTH_ID, AUTH_TOKEN), timeout=10) as http:
        state = http.get("/v1/console/state").json()
    [shown] = [conf for conf in state["conferences"] if conf["mpc_uuid"] == mpc_uuid]
    assert shown["view"]["status"] == "live"
    assert {m["member_address"] for m in shown["view"]["members"]} >= {AGENT, CUSTOMER}

    finish_walkthrough(phlo, sdk, mpc_uuid, run_id)
    forwarded_by_a = metrics(a)
    assert forwarded_by_a["bridgeline_forwarding_placed_total"] == 1
    # the run and every action the SDK posted were answered by b (its GETs of the PHLO and node are a's own)
    assert forwarded_by_a["bridgeline_forwarding_forwarded_total"] == len(posts) >= 9
    assert metrics(b)["bridgeline_forwarding_forwarded_total"] == 0  # b ran them itself
    assert cluster.owner(mpc_uuid)[0] == "b"


def test_an_action_sent_while_the_owner_is_dead_waits_for_the_takeover_and_acts_once(
    cluster: Cluster,
) -> None:
    a, b, _ = (cluster.start(node_id) for node_id in ("a", "b", "c"))
    phlo, mpc_uuid, agent, customer = start_call(b)
    holds_before = cluster.query(
        "SELECT count(*) FROM events WHERE conference_id = %s AND type = 'member_held'", mpc_uuid
    )
    assert holds_before == [(0,)]

    b.kill()
    killed_at = time.monotonic()
    sdk = sdk_client(a.url)
    sdk.timeout = TAKEOVER_BOUND  # the answer comes after the takeover, not at once
    answer = sdk_mpc(sdk, phlo).member(customer).hold()  # sent at once: b is dead, nobody owns it yet
    print(f"\nhold sent to a with the owner dead: answered after {time.monotonic() - killed_at:.2f} s")
    assert answer.error == ""
    new_owner = cluster.owner(mpc_uuid)[0]
    assert new_owner in ("a", "c")
    holds = cluster.query(
        "SELECT count(*) FROM events WHERE conference_id = %s AND type = 'member_held'", mpc_uuid
    )
    assert holds == [(1,)]
    assert metrics(a)["bridgeline_forwarding_forward_retries_total"] >= 1
    view = Api(cluster.nodes[new_owner])
    assert view.http.get(phlo.member_path(customer)).json()["status"] == "on_hold"
    assert view.http.get(phlo.member_path(agent)).json()["status"] == "connected"
