"""Scenarios the e2e suite runs on more than one server (SQLite and PostgreSQL): the issue's SDK
walkthrough, and simultaneous requests that race for one address.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from e2ekit import AUTH_ID, Api, Phlo, guarded_client, hearing, number, wait_until

EXAMPLE = Path(__file__).parents[2] / "examples" / "support.yaml"

AGENT = "+14152223333"
CUSTOMER = "+14152225555"
SECOND_AGENT = "+14152226666"
SUPERVISOR = "+14152227777"


def members_by_address(conference: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["member_address"]: m for m in conference["members"]}


def check_hearing(
    api: Api, phlo: Phlo, mpc_uuid: str, expected: dict[str, tuple[set[str], str | None]]
) -> None:
    """Every member's view, its row in the instances view and its phone agree with `expected`."""
    for address, heard in expected.items():
        phlo.wait_member(address, hears=sorted(heard[0]), music=heard[1])
    members = members_by_address(phlo.conference(mpc_uuid))
    for address, heard in expected.items():
        assert hearing(members[address]) == heard, members[address]
        assert api.phone_hears(address, mpc_uuid) == heard, address


def run_walkthrough(api: Api, sdk: Any) -> tuple[Phlo, str, str]:
    """The walkthrough up to the last unhold; returns the PHLO, the conference id and the run id."""
    definition = yaml.safe_load(EXAMPLE.read_text())
    created = api.http.post("/v1/phlo", json=definition)
    assert created.status_code == 201, created.text
    assert created.json()["phlo_id"] == "support"
    assert created.json()["nodes"] == [
        {"node_id": "support-mpc", "node_type": "multi_party_call", "name": "Multi-Party Call_1"}
    ]
    phlo = Phlo(api, "support", "support-mpc")

    # phlo = client.phlo.get(phlo_id)
    sdk_phlo = sdk.phlo.get("support")
    assert sdk_phlo.phlo_id == "support"
    assert sdk_phlo.name == "support"
    assert sdk_phlo.created_on

    # phlo.run(agent=..., customer=...)
    run = sdk_phlo.run(agent=AGENT, customer=CUSTOMER)
    run_id = run.phlo_run_id
    assert run.api_id == run_id
    assert run.phlo_id == "support"
    assert isinstance(run.message, str) and run.message
    phlo.wait_member(AGENT, status="connected", role="agent", room="main")
    phlo.wait_member(CUSTOMER, status="connected", role="customer", room="main")
    conference = phlo.conference()
    mpc_uuid = conference["mpc_uuid"]
    assert conference["phlo_run_id"] == run_id
    assert conference["queued"] == []
    assert set(members_by_address(conference)) == {AGENT, CUSTOMER}
    check_hearing(api, phlo, mpc_uuid, {AGENT: ({CUSTOMER}, None), CUSTOMER: ({AGENT}, None)})
    stored_run = phlo.get_run(run_id)
    assert stored_run["status"] == "running"
    assert stored_run["mpc_uuids"] == [mpc_uuid]
    assert stored_run["payload"] == {"agent": AGENT, "customer": CUSTOMER}

    # mpc = phlo.multi_party_call(node_id)
    mpc = sdk_phlo.multi_party_call("support-mpc")
    assert mpc.node_id == "support-mpc"
    assert mpc.node_type == "multi_party_call"
    assert mpc.phlo_id == "support"
    assert mpc.name == "Multi-Party Call_1"

    # mpc.call(agent, x, "agent")
    answer = mpc.call(AGENT, SECOND_AGENT, "agent")
    assert answer.error == "" and answer.api_id
    phlo.wait_member(SECOND_AGENT, status="connected", role="agent", room="main")
    check_hearing(
        api,
        phlo,
        mpc_uuid,
        {
            AGENT: ({CUSTOMER, SECOND_AGENT}, None),
            CUSTOMER: ({AGENT, SECOND_AGENT}, None),
            SECOND_AGENT: ({AGENT, CUSTOMER}, None),
        },
    )

    # mpc.warm_transfer(agent, y, "agent"): the agent consults the supervisor privately
    answer = mpc.warm_transfer(AGENT, SUPERVISOR, "agent")
    assert answer.error == ""
    supervisor = phlo.wait_member(SUPERVISOR, status="connected", role="agent")
    agent = phlo.member(AGENT)
    assert agent["room"] == supervisor["room"] != "main"
    assert agent["transfer"]["transfer_state"] == "consulting"
    assert agent["transfer"]["transfer_type"] == "warm"
    assert agent["transfer"]["initiator"] == AGENT
    assert agent["transfer"]["target"] == SUPERVISOR
    assert supervisor["transfer"] == agent["transfer"]
    consulting = {
        AGENT: ({SUPERVISOR}, None),
        SUPERVISOR: ({AGENT}, None),
        CUSTOMER: ({SECOND_AGENT}, None),
        SECOND_AGENT: ({CUSTOMER}, None),
    }
    check_hearing(api, phlo, mpc_uuid, consulting)
    assert phlo.member(CUSTOMER)["room"] == "main"

    # mpc.member(customer).hold()
    answer = mpc.member(CUSTOMER).hold()
    assert answer.error == ""
    held = phlo.member(CUSTOMER)
    assert held["status"] == "on_hold"
    check_hearing(
        api,
        phlo,
        mpc_uuid,
        {
            CUSTOMER: (set(), "customer_hold"),
            # alone in the main room while the agent consults: its role's hold music
            SECOND_AGENT: (set(), "agent_hold"),
            AGENT: ({SUPERVISOR}, None),
            SUPERVISOR: ({AGENT}, None),
        },
    )
    statuses = {m["member_address"]: m["status"] for m in phlo.conference(mpc_uuid)["members"]}
    assert statuses == {
        AGENT: "connected",
        CUSTOMER: "on_hold",
        SECOND_AGENT: "connected",
        SUPERVISOR: "connected",
    }

    # .unhold()
    answer = mpc.member(CUSTOMER).unhold()
    assert answer.error == ""
    assert phlo.member(CUSTOMER)["status"] == "connected"
    check_hearing(api, phlo, mpc_uuid, consulting)
    return phlo, mpc_uuid, run_id


def finish_walkthrough(phlo: Phlo, sdk: Any, mpc_uuid: str, run_id: str) -> None:
    """Everybody hangs up: the conference ends and the run completes."""
    mpc = sdk.phlo.get(phlo.phlo_id).multi_party_call(phlo.node_id)
    for address in (AGENT, SUPERVISOR, SECOND_AGENT, CUSTOMER):
        assert mpc.member(address).hangup().error == ""
    ended = phlo.wait_ended(mpc_uuid)
    assert ended["end_reason"] == "empty"
    assert {m["leave_reason"] for m in ended["members"]} == {"hangup"}
    run = phlo.get_run(run_id)
    assert run["status"] == "completed"
    assert run["mpc_uuids"] == [mpc_uuid]


def simultaneously(api: Api, requests: list[tuple[str, dict[str, Any]]]) -> list[int]:
    """POST every (path, body) at the same moment, each on a connection of its own; the statuses."""
    clients = [guarded_client(api.url) for _ in requests]
    try:
        for client in clients:
            client.get("/health")  # connect before the start line
        start = threading.Barrier(len(requests))

        def post(index: int) -> int:
            path, body = requests[index]
            start.wait()
            return clients[index].post(path, json=body).status_code

        with ThreadPoolExecutor(len(requests)) as pool:
            return list(pool.map(post, range(len(requests))))
    finally:
        for client in clients:
            client.close()


def holders(phlo: Phlo, address: str) -> list[str]:
    """The live conferences of the node in which `address` is a live member."""
    return [
        o["mpc_uuid"]
        for o in phlo.instances()
        if o["status"] == "live"
        and any(m["member_address"] == address and m["status"] != "left" for m in o["members"])
    ]


def check_an_address_is_in_one_conference_at_most(api: Api, trials: int = 3) -> None:
    """Simultaneous runs, or calls from different conferences, cannot put one address in two conferences."""
    phlo = api.create_phlo()
    run_path = f"/v1/account/{AUTH_ID}/phlo/{phlo.phlo_id}"
    for _ in range(trials):
        agent = number()
        statuses = simultaneously(api, [(run_path, {"agent": agent, "customer": number()}) for _ in range(6)])
        assert sorted(statuses) == [201] + [400] * 5, statuses
        wait_until(lambda a=agent: holders(phlo, a), what="the run's conference")
        assert len(holders(phlo, agent)) == 1
    agents = []
    for _ in range(4):
        agent = number()
        phlo.connect(agent, number())
        agents.append(agent)
    for _ in range(trials):
        target = number()
        body = {"action": "call", "to": target}
        statuses = simultaneously(api, [(phlo.node_path, {**body, "trigger_source": a}) for a in agents])
        assert sorted(statuses) == [201, 400, 400, 400], statuses
        phlo.wait_member(target, status="connected")
        assert len(holders(phlo, target)) == 1
        assert phlo.member_action(target, "hangup").status_code == 201
