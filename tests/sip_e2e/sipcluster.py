"""Several real `bridgeline serve --carrier sip` nodes on one fresh PostgreSQL database (issue #12), for
the SIP cluster tests: each node with its own SIP address, RTP range, log and node id; stopped (only
the processes started here, a paused one resumed first) when the test ends."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clusterkit import Cluster
from e2ekit import AUTH_ID, AUTH_TOKEN, Api, Phlo, sdk_client
from sipkit import Ports, ProcSet, SipServer, wait_for
from siplab import Lab

TAKEN_OVER_S = 20.0  # from a node's loss to its legs recovered elsewhere: lease, scan, re-INVITEs (loaded CI)


@contextmanager
def sip_nodes(
    root: Path,
    ports: Ports,
    database_url: str,
    node_ids: tuple[str, ...],
    config: dict[str, Any] | None = None,
) -> Iterator[dict[str, SipServer]]:
    """Nodes started in the order given (a run placed from the first stays there while loads tie: a
    tie goes to the local node), each on the same SIP `config`."""
    started: dict[str, SipServer] = {}
    procs: list[ProcSet] = []
    try:
        for node_id in node_ids:
            env = {"DATABASE_URL": database_url, "BRIDGELINE_NODE_ID": node_id}
            procs.append(ProcSet(root / node_id / "logs"))  # a log of its own: stderr() is this node's
            server = SipServer(
                root / node_id, ports, procs[-1], config or {}, auth=(AUTH_ID, AUTH_TOKEN), env=env
            )
            server.start()
            started[node_id] = server
        yield started
    finally:
        for server in started.values():
            if server.proc is not None and server.proc.running:
                os.killpg(server.proc.pid, signal.SIGCONT)  # a paused one must be able to stop
                server.stop()
            for client in server.clients:  # a killed node's API clients (stop() closes a live one's)
                client.close()
        leaked = [name for node_procs in procs for name in node_procs.stop_all()]
        assert not leaked, f"processes left behind: {leaked}"


def drain(node: SipServer) -> None:
    """SIGTERM to the node's own process, not to its `timeout` wrapper: `timeout -k 2` SIGKILLs the
    command 2 s after passing any signal on, and a drain (hand-offs, a heartbeat to let balancers
    see /ready answer 503) may take longer on a loaded machine. The node's exit is the wrapper's."""
    assert node.proc is not None
    wrapper = node.proc.pid
    (child,) = Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()
    os.kill(int(child), signal.SIGTERM)


def drive_through(lab: Lab, node: SipServer, phlo: Phlo) -> Phlo:
    """From now on the API, the SDK and what `lab.heard` reads are node's (the old owner's are gone)."""
    lab.sdk.session.close()
    lab.server, lab.api, lab.sdk = node, Api(node), sdk_client(node.url)  # type: ignore[arg-type]
    return Phlo(lab.api, phlo.phlo_id, phlo.node_id)


def recovered_by(node: SipServer, legs: int = 2) -> None:
    wait_for(
        lambda: node.metrics().get("bridgeline_sip_recoveries_succeeded_total") == legs,
        TAKEN_OVER_S,
        f"{legs} legs recovered by node {node.env['BRIDGELINE_NODE_ID']}",
    )


def dialogs(store: Cluster, mpc_uuid: str) -> dict[str, dict[str, Any]]:
    """The conference's saved SIP dialogs, by leg id."""
    rows = store.query("SELECT leg_id, dialog FROM sip_dialogs WHERE conference_id = %s", mpc_uuid)
    return {leg_id: json.loads(dialog) for leg_id, dialog in rows}
