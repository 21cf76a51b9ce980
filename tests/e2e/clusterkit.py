"""Several real `bridgeline serve` nodes on one fresh PostgreSQL database, for the cluster tests (issue #12).

`Cluster` starts nodes by id (sim carrier, short leases) and stops only the processes it started; it reads
the store directly to prove who owns what.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from e2ekit import AUTH_ID, AUTH_TOKEN, Api, Phlo, ServerProcess, number, sdk_client, wait_until
from pgkit import database_url as database_url  # the fixture, for the cluster tests

LEASE_S = 3.0  # the defaults: a dead node's conferences move within lease + one scan


HEARTBEAT_S = 1.0


TAKEOVER_BOUND = 15.0  # every wait for a takeover gives up after this (under a loaded machine)


class Cluster:
    """Node processes of one test, by node id; stopped (only these pids) when the test ends."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url
        self.nodes: dict[str, ServerProcess] = {}

    def start(self, node_id: str, settings: dict[str, str] | None = None) -> ServerProcess:
        """Start (or start again) the node; `settings`: more environment, at its first start."""
        server = self.nodes.get(node_id)
        if server is None:
            env = {
                "DATABASE_URL": self.database_url,
                "BRIDGELINE_NODE_ID": node_id,
                "BRIDGELINE_NODE_LEASE_S": str(LEASE_S),
                "BRIDGELINE_NODE_HEARTBEAT_S": str(HEARTBEAT_S),
                "BRIDGELINE_DRAIN_TIMEOUT_S": "5",
                **(settings or {}),
            }
            server = ServerProcess(
                data_dir=self.root / node_id / "data", log_dir=self.root / node_id / "logs", env=env
            )
            self.nodes[node_id] = server
        server.start()
        return server

    def close(self) -> None:
        for server in self.nodes.values():
            if server.process is not None and server.process.poll() is None:
                os.kill(server.process.pid, signal.SIGCONT)  # a paused one must be able to die
                server.kill()

    def query(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as connection:
            return connection.execute(statement.encode(), params).fetchall()  # type: ignore[arg-type]

    def owner(self, mpc_uuid: str) -> tuple[str, int | None]:
        ((node, epoch),) = self.query(
            "SELECT owner_node, owner_epoch FROM conferences WHERE conference_id = %s", mpc_uuid
        )
        return node, epoch

    def epoch(self, node_id: str) -> int:
        ((epoch,),) = self.query("SELECT epoch FROM nodes WHERE node_id = %s", node_id)
        return int(epoch)

    def seqs(self, mpc_uuid: str) -> list[int]:
        return [
            int(seq)
            for (seq,) in self.query("SELECT seq FROM events WHERE conference_id = %s ORDER BY seq", mpc_uuid)
        ]

    def wait_owned_by_another(self, mpc_uuid: str, old: str) -> str:
        """The node (not `old`) that owns the conference under its current epoch."""

        def moved() -> str | None:
            node, epoch = self.owner(mpc_uuid)
            return node if node != old and epoch is not None and epoch == self.epoch(node) else None

        return wait_until(moved, timeout=TAKEOVER_BOUND, interval=0.05, what=f"{mpc_uuid} to leave {old}")


@pytest.fixture
def cluster(tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path, database_url)
    try:
        yield nodes
    finally:
        nodes.close()


def start_call(server: ServerProcess) -> tuple[Phlo, str, str, str]:
    """A conference started with the Plivo SDK on `server`: (phlo, mpc_uuid, agent, customer)."""
    api = Api(server)
    phlo = api.create_phlo()
    agent, customer = number(), number()
    sdk = sdk_client(server.url)
    run = sdk.phlo.get(phlo.phlo_id).run(agent=agent, customer=customer)
    assert run.phlo_run_id
    phlo.wait_member(agent, status="connected", hears=[customer])
    phlo.wait_member(customer, status="connected", hears=[agent])
    return phlo, phlo.conference()["mpc_uuid"], agent, customer


def view_on(server: ServerProcess, phlo: Phlo) -> Phlo:
    return Phlo(Api(server), phlo.phlo_id, phlo.node_id)


def members(view: dict[str, Any]) -> dict[str, str]:
    return {member["member_address"]: member["status"] for member in view["members"]}


def metrics(server: ServerProcess) -> dict[str, float]:
    with httpx.Client(auth=(AUTH_ID, AUTH_TOKEN), timeout=5) as http:
        text = http.get(f"{server.url}/metrics").text
    return {
        name: float(value)
        for name, value in (
            line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
        )
        if "{" not in name
    }
