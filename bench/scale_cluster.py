"""The clusters of bench_scale_out.py: `bridgeline serve` nodes on one PostgreSQL database, each
pinned to a core of its own or, with a CPU budget, capped by a cgroup quota (bench/cpu_quota.py) and
left to float over the machine's cores; runs placed by load; the CPU that each party of a window
used (nodes, PostgreSQL, generators, the rest of the machine, the idle time left).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import benchkit as kit
import psycopg
from bench_tick_isolation import CpuSampler
from cpu_quota import CpuQuota, QuotaGroups
from psycopg import sql

HEARTBEAT_S = 1.0  # the default; placement reads the loads at most once per heartbeat
PLACE_BATCH = 40  # runs sent between two heartbeats: the most that can land on one node at once
NODE_CPUS = (kit.SERVER_CPU, kit.LOAD_CPU)  # without a budget, node i runs on NODE_CPUS[i]


@dataclass
class Node(kit.Server):
    """benchkit's server process, pinned to `cpu` (None: not pinned), in `quota`'s group if given."""

    cpu: int | None = kit.SERVER_CPU
    quota: CpuQuota | None = None
    nice: int = 0

    def command(self) -> list[str]:
        command = super().command()[len(kit.pin_prefix(kit.SERVER_CPU)) :]
        return command if self.cpu is None else [*kit.pin_prefix(self.cpu), *command]

    def start(self, timeout: float = 30.0) -> Node:
        super().start(timeout)
        if self.quota is not None:  # after start-up (imports, migrations), which the budget would slow
            self.quota.add(self.pid)
        if self.nice:  # per thread on Linux: every thread it has now; later ones inherit it
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                os.setpriority(os.PRIO_PROCESS, int(tid), self.nice)
        return self


def node_env(index: int) -> dict[str, str]:
    return {
        "BRIDGELINE_NODE_ID": f"n{index + 1}",
        "BRIDGELINE_NODE_HEARTBEAT_S": str(HEARTBEAT_S),
        "BRIDGELINE_LOG_LEVEL": "warning",
    }


def node_placement(
    index: int, quotas: QuotaGroups | None, nice: int = 0, realtime: bool = False
) -> dict[str, Any]:
    """Node keyword arguments: its own core, or (with a budget) no pinning and its own quota group
    (with `realtime`, a share of the real-time budget too, for its media thread)."""
    if quotas is None:
        return {"cpu": NODE_CPUS[index], "nice": nice}
    return {"cpu": None, "quota": quotas.new(f"n{index + 1}", realtime), "nice": nice}


def nice_prefix(nice: int) -> list[str]:
    return ["nice", "-n", str(nice)] if nice else []


@dataclass
class Cluster:
    size: int
    database_url: str
    nodes: list[Node] = field(default_factory=list)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
            if node.quota is not None:  # now, not at the end: the next cluster's groups need the budget
                node.quota.remove()

    def owners(self) -> dict[str, str]:
        """Live conferences' member addresses -> the owning node's id (from the store)."""
        with psycopg.connect(self.database_url) as connection:
            rows = connection.execute(
                "SELECT a.address, c.owner_node FROM conference_addresses a JOIN conferences c"
                " USING (conference_id) WHERE c.status = 'live'"
            ).fetchall()
        return {str(address): str(owner) for address, owner in rows}

    def backend_pids(self) -> list[int]:
        with psycopg.connect(self.database_url) as connection:
            name = connection.info.dbname
            rows = connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
            ).fetchall()
        return [int(pid) for (pid,) in rows]

    def by_id(self, node_id: str) -> Node:
        return self.nodes[int(node_id.removeprefix("n")) - 1]

    def samplers(self) -> dict[str, CpuSampler]:
        """What a window reports: each node's CPU (/proc/<pid>/stat), each node's quota periods and
        throttled periods, the database's backends (all and the busiest), and the machine's idle."""
        samplers: dict[str, CpuSampler] = {}
        for i, node in enumerate(self.nodes):
            samplers[f"n{i + 1}"] = CpuSampler(node.pid)
            if node.quota is not None:
                quota = node.quota
                samplers[f"n{i + 1} periods"] = FnSampler(lambda q=quota: q.stat()["nr_periods"])
                samplers[f"n{i + 1} throttled"] = FnSampler(lambda q=quota: q.stat()["nr_throttled"])
        backends = self.backend_pids()
        samplers["postgres backends"] = PidsSampler(backends)
        samplers["busiest backend"] = BusiestSampler(backends)
        samplers["idle"] = FnSampler(idle_cpu_s)
        return samplers


def set_async_commit(database_url: str) -> None:
    """synchronous_commit = off for every later session of this database (and of no other): a commit
    no longer waits for its WAL flush (at most 3 x wal_writer_delay of commits lost on a crash of the
    database server, never corruption), so that the nodes' commit latency is not the disk's."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        name = connection.info.dbname
        connection.execute(
            sql.SQL("ALTER DATABASE {} SET synchronous_commit = off").format(sql.Identifier(name))
        )


def place_runs(cluster: Cluster, phlo_id: str, pairs: list[tuple[str, str]]) -> None:
    """One run per (agent, customer), sent to each node in turn and placed by the cluster; a heartbeat
    between batches, so that placement sees the loads the previous batch made."""
    clients = [node.client() for node in cluster.nodes]
    try:
        for start in range(0, len(pairs), PLACE_BATCH):
            for i, (agent, customer) in enumerate(pairs[start : start + PLACE_BATCH]):
                client = clients[(start + i) % len(clients)]
                run = client.post(
                    f"/v1/account/{kit.AUTH_ID}/phlo/{phlo_id}", json={"agent": agent, "customer": customer}
                )
                run.raise_for_status()
            if cluster.size > 1 and start + PLACE_BATCH < len(pairs):
                time.sleep(HEARTBEAT_S * 1.2)
    finally:
        for client in clients:
            client.close()


# --------------------------------------------------------------------------- CPU over a window
def idle_cpu_s() -> float:
    """Idle + iowait CPU seconds of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (fields[3] + fields[4]) / os.sysconf("SC_CLK_TCK")


class FnSampler(CpuSampler):
    """Any growing count, every 100 ms; util() is then its rate over the window."""

    def __init__(self, read: Callable[[], float]) -> None:
        super().__init__(0)
        self.read = read

    def run(self) -> None:
        while True:
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.samples.append((time.perf_counter_ns(), float(self.read())))
            if self.done.wait(0.1):
                return


class PidsSampler(FnSampler):
    """CPU of a set of processes (the database's backends) every 100 ms."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(lambda: sum(pids_cpu_s(pids).values()))


class BusiestSampler(CpuSampler):
    """The CPU of the busiest of a set of processes: one saturated backend would cap a node."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(0)
        self.pids = pids
        self.per_pid: list[tuple[int, dict[int, float]]] = []

    def run(self) -> None:
        while True:
            self.per_pid.append((time.perf_counter_ns(), pids_cpu_s(self.pids)))
            if self.done.wait(0.1):
                return

    def util(self, t0_ns: int, t1_ns: int) -> float | None:
        inside = [(t, c) for t, c in self.per_pid if t0_ns <= t <= t1_ns]
        if len(inside) < 2:
            return None
        (ta, ca), (tb, cb) = inside[0], inside[-1]
        deltas = [cb[pid] - ca[pid] for pid in cb.keys() & ca.keys()]
        return round(max(deltas, default=0.0) / ((tb - ta) / 1e9), 3)


def pids_cpu_s(pids: list[int]) -> dict[int, float]:
    values = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            values[pid] = kit.process_cpu_s(pid)
    return values


def window_cpu(samplers: dict[str, CpuSampler], t0_ns: int, t1_ns: int) -> dict[str, Any]:
    """Each sampler's rate over the window; quota periods become each node's throttled share."""
    rates = {name: sampler.util(t0_ns, t1_ns) for name, sampler in samplers.items()}
    cpu: dict[str, Any] = {}
    for name, rate in rates.items():
        if name.endswith(" periods"):
            node = name.removesuffix(" periods")
            throttled = rates.get(f"{node} throttled")
            share = None if not rate or throttled is None else round(throttled / rate, 3)
            cpu[f"{node} throttled share"] = share
        elif not name.endswith(" throttled"):
            cpu[name] = rate
    return cpu
