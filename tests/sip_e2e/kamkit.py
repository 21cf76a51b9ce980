"""Helpers of the cluster SIP tests: a real Kamailio (deploy/kamailio/, rendered by tools/cluster.py)
in front of real Bridgeline nodes on one real PostgreSQL database, all on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from pgkit import fresh_database
from sipkit import LOOPBACK, Proc, ProcSet, SipServer, wait_for

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

import cluster  # noqa: E402  - tools/cluster.py: the one renderer of the Kamailio config

KAMAILIO = "/usr/sbin/kamailio"
KAMCMD = "/usr/sbin/kamcmd"


def database() -> contextlib.AbstractContextManager[str]:
    """A new PostgreSQL database's URL, dropped at the end (after the nodes using it stopped)."""
    return fresh_database("bridgeline_cluster")


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """`kamailio -c -f FILE`: Kamailio's own check of a configuration (modules, routes, parameters)."""
    return subprocess.run([KAMAILIO, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)


class Kamailio:
    """Kamailio listening on 127.0.0.1:`port` (UDP), dispatching to `nodes` ((id, host:port) each)."""

    def __init__(
        self,
        procs: ProcSet,
        work: Path,
        port: int,
        nodes: list[tuple[str, str]],
        *,
        ping_interval_s: int = 1,
        failover_timeout_ms: int = 1000,
    ) -> None:
        self.address = f"{LOOPBACK}:{port}"
        self.dir = work / "kamailio"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = self.dir / "kamailio.cfg"
        self.config.write_text(
            cluster.render_kamailio(
                self.address,
                self.dir,
                ping_interval_s=ping_interval_s,
                failover_timeout_ms=failover_timeout_ms,
            )
        )
        (self.dir / "dispatcher.list").write_text(cluster.render_dispatcher(nodes))
        checked = check_config(self.config)
        assert checked.returncode == 0, f"kamailio -c failed:\n{checked.stderr[-3000:]}"
        argv = [
            KAMAILIO,
            "-DD",
            "-E",
            "-f",
            str(self.config),
            "-P",
            str(self.dir / "pid"),
            "-Y",
            str(self.dir),
        ]
        self.proc: Proc = procs.start("kamailio", argv, timeout_s=600)
        wait_for(
            lambda: cluster.sip_options_answered(self.address, timeout=0.3) or not self.proc.running,
            15,
            "kamailio to answer OPTIONS",
        )
        assert self.proc.running, f"kamailio exited at start:\n{self.proc.tail()}"

    def log(self) -> str:
        return self.proc.stderr()

    def destinations(self) -> dict[str, str]:
        """The dispatcher's view: node SIP URI -> flags (A active, I inactive, P probing)."""
        argv = [KAMCMD, "-s", f"unix:{self.dir / 'kamailio_ctl'}", "dispatcher.list"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        return dict(re.findall(r"URI:\s*(\S+)\s+FLAGS:\s*(\S+)", out))

    def node_for(self, call_id: str) -> str | None:
        """Where the request of this Call-ID was sent first ("host:port"), from our log lines."""
        found = re.search(rf"to node: \S+ {re.escape(call_id)} -> sip:(\S+)", self.log())
        return found.group(1) if found else None

    def failovers(self, call_id: str) -> list[str]:
        """The nodes a request of this Call-ID moved on to after a failure."""
        return re.findall(rf"failover: \S+ {re.escape(call_id)} -> sip:(\S+)", self.log())


def kill_node(node: SipServer) -> None:
    """kill -9 a node: its whole process group (`timeout` and the server under it), as a crash."""
    assert node.proc is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.proc.pid, signal.SIGKILL)
    node.proc.popen.wait(timeout=10)
