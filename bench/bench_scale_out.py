"""Scale-out (issue #12): 1 node against 2 nodes in the same run, each node its own `bridgeline serve`
process pinned to a core of its own, on one fresh PostgreSQL database per cluster; runs placed by load.

- actions: member actions/s. A 1-node and a 2-node cluster (sim carrier) are both started; --connections
  conferences on each, created by runs sent to each node in turn (the cluster places them by load, in
  batches a heartbeat apart, since placement reads the loads the nodes' heartbeats wrote). Each
  connection of the load generator (bench/httpload.py: closed loop, one request in flight) alternates
  hold / unhold of its conference's customer and talks to the node that owns it, so the generator
  sends to every node. Windows alternate 1 node / 2 nodes (--rounds), the best of each is kept.
- rtp: SIP/RTP legs. A cluster of sip-carrier nodes whose trunk is bench_sip.py's UAS; 2-party
  conferences are added (runs placed by load) up to each N of a ladder, then bench_rtp_legs.py's sender
  (one socket, the address every leg's SDP answer names) sends each leg a PCMU packet every 20 ms and
  drains what comes back. bench_rtp_legs.py's criterion: an N passes when every node has < 1% late (or
  skipped) media ticks (> 5 ms after the deadline, from each node's /metrics) and the nodes take in
  >= 95% of the packets sent; a miss is retried (3 runs at most) unless a node's core was saturated.
  The capacity is the largest N that passed; the ladder stops at the first N that fails.

The ratio is 2 nodes / 1 node (issue #12: >= 1.8x). Cores: node 1 on CPU 1 and node 2 on CPU 0; the
load generators (httpload, the RTP sender) run on CPU 0 as in the other benchmarks, so with 2 nodes
they share node 2's core, and PostgreSQL runs wherever the kernel puts it: every window reports the
CPU of each node, of the generator, of the database's backends and of the rest of the machine, and
the actions part also gives actions per CPU-second of the nodes.

Bounded: windows of --measure seconds, RTP runs of --run seconds, no RTP run starts after --budget
seconds per cluster; only the processes this script started are stopped, by pid.
Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_scale_out.py [--part actions|rtp|both]
     [--connections 50] [--rounds 3] [--legs 250,500,...] [--budget 300] [--quick] [--out f.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchkit as kit
import psycopg
from bench_sip import Uas, sip_server
from bench_tick_isolation import CpuSampler

BENCH = Path(__file__).resolve().parent
HEARTBEAT_S = 1.0  # the default; placement reads the loads at most once per heartbeat
PLACE_BATCH = 40  # runs sent between two heartbeats: the most that can land on one node at once
LADDER = (250, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000)
ATTEMPTS = 3
RTP_RANGES = ("40000-47999", "48000-55999")  # 4,000 legs per node (two ports per leg)
NODE_CPUS = (kit.SERVER_CPU, kit.LOAD_CPU)  # node i runs on NODE_CPUS[i]


@dataclass
class Node(kit.Server):
    """benchkit's server process, pinned to `cpu` instead of the server core."""

    cpu: int = kit.SERVER_CPU

    def command(self) -> list[str]:
        command = super().command()
        return [*kit.pin_prefix(self.cpu), *command[len(kit.pin_prefix(kit.SERVER_CPU)) :]]


def node_env(index: int) -> dict[str, str]:
    return {
        "BRIDGELINE_NODE_ID": f"n{index + 1}",
        "BRIDGELINE_NODE_HEARTBEAT_S": str(HEARTBEAT_S),
        "BRIDGELINE_LOG_LEVEL": "warning",
    }


@dataclass
class Cluster:
    size: int
    database_url: str
    nodes: list[Node] = field(default_factory=list)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

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


def window_cpu(samplers: dict[str, CpuSampler], t0_ns: int, t1_ns: int) -> dict[str, float | None]:
    return {name: sampler.util(t0_ns, t1_ns) for name, sampler in samplers.items()}


class PidsSampler(CpuSampler):
    """CPU of a set of processes (the database's backends) every 100 ms."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(0)
        self.pids = pids

    def run(self) -> None:
        while True:
            total = 0.0
            for pid in self.pids:
                with contextlib.suppress(OSError, ValueError):
                    total += kit.process_cpu_s(pid)
            self.samples.append((time.perf_counter_ns(), total))
            if self.done.wait(0.1):
                return


# --------------------------------------------------------------------------- member actions/s
def actions_cluster(size: int, database_url: str, connections: int) -> tuple[Cluster, dict[str, Any]]:
    cluster = Cluster(size, database_url)
    for i in range(size):
        cluster.nodes.append(
            Node(env=node_env(i), args=["--database-url", database_url], cpu=NODE_CPUS[i]).start()
        )
    with cluster.nodes[0].client() as client:
        phlo_id, node_id = kit.create_phlo(client)
    pairs = [(f"+1555{size}{2 * i:06d}", f"+1555{size}{2 * i + 1:06d}") for i in range(connections)]
    place_runs(cluster, phlo_id, pairs)
    with cluster.nodes[0].client() as client:
        kit.wait_connected(client, phlo_id, node_id, [x for pair in pairs for x in pair])
    owners = cluster.owners()
    node_path = f"/v1/phlo/{phlo_id}/multi_party_call/{node_id}"
    scripts = [
        [
            {"method": "POST", "path": f"{node_path}/members/{customer}", "body": {"action": "hold"}},
            {"method": "POST", "path": f"{node_path}/members/{customer}", "body": {"action": "unhold"}},
        ]
        for _, customer in pairs
    ]
    spec = {
        "host": "127.0.0.1",
        "port": cluster.nodes[0].port,
        "ports": [cluster.by_id(owners[customer]).port for _, customer in pairs],
        "auth": kit.basic_auth(),
        "connections": scripts,
        "rate": None,
        "expect": [201],
    }
    split = {node: sum(1 for _, c in pairs if owners[c] == node) for node in sorted(set(owners.values()))}
    return cluster, {"spec": spec, "conferences_per_node": split}


def actions_window(cluster: Cluster, spec: dict[str, Any], warmup: float, measure: float) -> dict[str, Any]:
    samplers: dict[str, CpuSampler] = {
        f"n{i + 1}": CpuSampler(node.pid) for i, node in enumerate(cluster.nodes)
    }
    samplers["postgres backends"] = PidsSampler(cluster.backend_pids())
    watch = kit.Disturbance(*(node.pid for node in cluster.nodes))
    with contextlib.ExitStack() as stack:
        for sampler in samplers.values():
            stack.enter_context(sampler)
        started = time.monotonic()
        load = kit.run_load({**spec, "warmup_s": warmup, "measure_s": measure})
        wall = time.monotonic() - started
    b0, b1 = (int(x * 1e9) for x in load["window_perf_s"])
    cpu = window_cpu(samplers, b0, b1)
    other = watch.stop()
    nodes_cpu = sum(v or 0.0 for k, v in cpu.items() if k.startswith("n"))
    # Disturbance counts the generator and the database as "other": take out what is known.
    known = load["generator_cpu_util"] * measure / wall + (cpu["postgres backends"] or 0.0) * measure / wall
    return {
        "ok_per_s": load["ok_per_s"],
        "not_ok": load["not_ok"],
        "statuses": load["statuses"],
        "unexpected": load["unexpected_samples"],
        "latency_ms": load["latency_ms"],
        "cpu": {**cpu, "generator": load["generator_cpu_util"]},
        "nodes_cpu": round(nodes_cpu, 3),
        "actions_per_node_cpu_s": round(load["ok_per_s"] / nodes_cpu, 1) if nodes_cpu else None,
        "rest_of_machine_cpu": round(max(other["other_cpu_util"] - known, 0.0), 3),
        "steal": other["steal_util"],
    }


def actions_part(opts: argparse.Namespace) -> dict[str, Any]:
    with kit.fresh_database() as one_url, kit.fresh_database() as two_url:
        clusters: dict[int, tuple[Cluster, dict[str, Any]]] = {}
        try:
            for size, url in ((1, one_url), (2, two_url)):
                with kit.timed(f"actions: {size}-node cluster and {opts.connections} conferences"):
                    clusters[size] = actions_cluster(size, url, opts.connections)
            windows: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
            for round_ in range(opts.rounds):
                for size in (1, 2):
                    cluster, setup = clusters[size]
                    window = actions_window(cluster, setup["spec"], opts.warmup, opts.measure)
                    windows[size].append(window)
                    print(
                        f"actions round {round_ + 1}, {size} node(s): {window['ok_per_s']:,.0f}/s"
                        f" (not OK {window['not_ok']}), p99 {window['latency_ms']['p99']} ms,"
                        f" CPU {window['cpu']},"
                        f" rest of machine {window['rest_of_machine_cpu']}",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            for cluster, _ in clusters.values():
                cluster.stop()
    best = {size: max(ws, key=lambda w: w["ok_per_s"]) for size, ws in windows.items()}
    per_cpu = [best[s]["actions_per_node_cpu_s"] for s in (1, 2)]
    return {
        "connections": opts.connections,
        "warmup_s": opts.warmup,
        "measure_s": opts.measure,
        "conferences_per_node": {size: clusters[size][1]["conferences_per_node"] for size in (1, 2)},
        "windows": {str(size): ws for size, ws in windows.items()},
        "best": {str(size): w for size, w in best.items()},
        "ratio_2_over_1": round(best[2]["ok_per_s"] / best[1]["ok_per_s"], 3),
        "ratio_per_node_cpu_s": round(per_cpu[1] / per_cpu[0], 3) if all(per_cpu) else None,
    }


# --------------------------------------------------------------------------- RTP legs
class SharedPortUas(Uas):
    """bench_sip's UAS answering every call with one RTP address (the sender's socket), noting the
    server's RTP port from each offer."""

    def __init__(self, rtp_port: int) -> None:
        super().__init__(set())
        self.rtp_port = rtp_port
        self.server_ports: dict[str, int] = {}  # call-id -> the port the node offered

    def answer_sdp(self, number: str, call_id: str, offer: bytes) -> bytes:
        port = re.search(rb"^m=audio (\d+)", offer, re.M)
        assert port, f"INVITE for {number} without an audio offer: {offer!r}"
        with self.cond:
            self.server_ports[call_id] = int(port.group(1))
        return self.sdp(self.rtp_port)

    def answered_calls(self) -> int:
        with self.cond:
            return len(self.acked & self.server_ports.keys())


@contextlib.contextmanager
def rtp_sender(sock: socket.socket, ports: list[int], seconds: float) -> Iterator[subprocess.Popen[str]]:
    """bench_rtp_legs.py's sender (its own process, on the load core) sending from `sock` to `ports`."""
    fd = sock.fileno()
    proc = subprocess.Popen(
        [kit.PYTHON, str(BENCH / "bench_rtp_legs.py"), "--sender", str(fd), f"{seconds:g}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=[fd],
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(ports))
        proc.stdin.close()
        started, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if started else "(nothing within 30 s)"
        if line.strip() != "ready":
            raise RuntimeError(f"RTP sender failed to start: {line!r}")
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=seconds + 10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


COUNTER = re.compile(
    r"^bridgeline_\w+?_(media_ticks|media_late_ticks|media_skipped_ticks|rtp_packets_in)_total (\S+)$"
)


def media_counters(node: Node) -> dict[str, float]:
    with node.client(timeout=10) as client:
        text = client.get("/metrics").text
    values: dict[str, float] = {}
    for line in text.splitlines():
        m = COUNTER.match(line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return values


def rtp_run(
    cluster: Cluster, sock: socket.socket, ports: list[int], run_s: float, warmup: float
) -> dict[str, Any]:
    """One run of the sender at the legs set up so far: each node's late ticks, input, CPU."""
    samplers = {f"n{i + 1}": CpuSampler(node.pid) for i, node in enumerate(cluster.nodes)}
    watch = kit.Disturbance(*(node.pid for node in cluster.nodes))
    with contextlib.ExitStack() as stack:
        for sampler in samplers.values():
            stack.enter_context(sampler)
        sender = stack.enter_context(rtp_sender(sock, ports, run_s))
        time.sleep(warmup)
        before = [media_counters(node) for node in cluster.nodes]
        t0, w0 = time.perf_counter_ns(), time.monotonic()
        time.sleep(run_s - warmup - 0.3)
        after = [media_counters(node) for node in cluster.nodes]
        t1, wall = time.perf_counter_ns(), time.monotonic() - w0
        sender.wait(timeout=run_s + 10)  # it stops on its own after run_s
        assert sender.stdout is not None
        out = sender.stdout.read()
    other = watch.stop()
    child = json.loads(out.strip().splitlines()[-1])
    nodes = []
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        d = {k: a.get(k, 0.0) - b.get(k, 0.0) for k in a}
        ticks = d.get("media_ticks", 0.0) + d.get("media_skipped_ticks", 0.0)
        late = d.get("media_late_ticks", 0.0) + d.get("media_skipped_ticks", 0.0)
        low, high = (int(x) for x in RTP_RANGES[i].split("-"))
        legs = sum(1 for p in ports if low <= p <= high)
        nodes.append(
            {
                "node": f"n{i + 1}",
                "legs": legs,
                "late_pct": round(100 * late / ticks, 3) if ticks else 100.0,
                "packets_in_per_s": round(d.get("rtp_packets_in", 0.0) / wall),
                "cpu": samplers[f"n{i + 1}"].util(t0, t1),
            }
        )
    sender_cpu = child["cpu_s"] / run_s
    packets_in = sum(n["packets_in_per_s"] for n in nodes)
    return {
        "legs": len(ports),
        "nodes": nodes,
        "late_pct": max(n["late_pct"] for n in nodes),
        "input_share": round(packets_in / (50 * len(ports)), 3),
        "sender": {"cpu": round(sender_cpu, 3), "late_sends": child["late"], "received": child["received"]},
        "rest_of_machine_cpu": round(max(other["other_cpu_util"] - sender_cpu, 0.0), 3),
        "steal": other["steal_util"],
    }


def passed(run: dict[str, Any]) -> bool:
    return bool(run["late_pct"] < 1 and run["input_share"] >= 0.95)


def limited_by(run: dict[str, Any]) -> str | None:
    """Why a run missed: the nodes' media ticks, or the sender, which could not send it all (it shares
    a core with node 2, and the rest of the machine takes what it takes)."""
    if passed(run):
        return None
    return "nodes (late ticks)" if run["late_pct"] >= 1 else "generator (< 95% of the packets sent)"


def rtp_cluster(size: int, opts: argparse.Namespace) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    uas = SharedPortUas(sock.getsockname()[1])
    uas.start()
    runs: list[dict[str, Any]] = []
    largest = 0
    deadline = time.monotonic() + opts.budget
    try:
        with kit.fresh_database() as database_url:
            cluster = Cluster(size, database_url)
            try:
                for i in range(size):
                    server = sip_server(uas.port, kit.free_port(socket.SOCK_DGRAM), RTP_RANGES[i])
                    node = Node(
                        carrier="sip",
                        env=node_env(i),
                        args=[*server.args, "--database-url", database_url],
                        root=server.root,
                        cpu=NODE_CPUS[i],
                    )
                    cluster.nodes.append(node.start())
                with cluster.nodes[0].client() as client:
                    phlo_id, _ = kit.create_phlo(client)
                pairs: list[tuple[str, str]] = []
                for legs in opts.ladder:
                    if time.monotonic() > deadline:
                        break
                    new = [
                        (f"+1415{size}{2 * i:06d}", f"+1415{size}{2 * i + 1:06d}")
                        for i in range(len(pairs), legs // 2)
                    ]
                    uas.answer.update(x for pair in new for x in pair)
                    with kit.timed(f"rtp: {size} node(s), {legs} legs set up"):
                        place_runs(cluster, phlo_id, new)
                        pairs += new
                        end = time.monotonic() + 120
                        while uas.answered_calls() < 2 * len(pairs):
                            if time.monotonic() > end:
                                raise RuntimeError(
                                    f"{uas.answered_calls()} of {2 * len(pairs)} legs answered"
                                )
                            time.sleep(0.1)
                    with uas.cond:
                        ports = sorted(uas.server_ports.values())
                    best: dict[str, Any] | None = None
                    for _ in range(ATTEMPTS):
                        run = rtp_run(cluster, sock, ports, opts.run, opts.rtp_warmup)
                        print(
                            f"rtp {size} node(s), {legs} legs: late {run['late_pct']}%, input"
                            f" {run['input_share']:.0%}, nodes {run['nodes']}, sender {run['sender']},"
                            f" rest {run['rest_of_machine_cpu']}",
                            file=sys.stderr,
                            flush=True,
                        )
                        if best is None or run["late_pct"] < best["late_pct"]:
                            best = run
                        saturated = any((n["cpu"] or 0) >= 0.9 for n in run["nodes"])
                        if passed(best) or saturated:
                            break
                    assert best is not None
                    runs.append({**best, "limited_by": limited_by(best)})
                    if not passed(best):
                        break
                    largest = legs
            finally:
                cluster.stop()
    finally:
        uas.stop()
        sock.close()
    stopped = runs[-1]["limited_by"] if runs else None
    return {
        "nodes": size,
        "largest_legs_passed": largest,
        "stopped_by": stopped or "the ladder's top or the budget",
        "ladder": list(opts.ladder),
        "runs": runs,
    }


def rtp_part(opts: argparse.Namespace) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the nodes inherit it: two sockets per leg
    result = {str(size): rtp_cluster(size, opts) for size in (1, 2)}
    one, two = result["1"]["largest_legs_passed"], result["2"]["largest_legs_passed"]
    return {
        "run_s": opts.run,
        "clusters": result,
        "ratio_2_over_1": round(two / one, 3) if one else None,
        "ladder_top_reached": two == opts.ladder[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("actions", "rtp", "both"), default="both")
    parser.add_argument("--connections", type=int, default=50, help="conferences and connections (actions)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated windows per cluster (actions)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--measure", type=float, default=5.0, help="seconds per window (actions)")
    parser.add_argument("--legs", default=None, help="comma-separated ladder of total legs (rtp)")
    parser.add_argument("--run", type=float, default=6.0, help="seconds per RTP run, warm-up included")
    parser.add_argument("--rtp-warmup", type=float, default=1.5, help="seconds of RTP before the window")
    parser.add_argument("--budget", type=float, default=300.0, help="per cluster: no RTP run starts after")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, short windows")
    parser.add_argument("--out", default=None, help="JSON results file")
    opts = parser.parse_args()
    opts.ladder = LADDER if opts.legs is None else tuple(int(n) for n in opts.legs.split(","))
    if opts.quick:
        opts.connections, opts.rounds, opts.measure, opts.run = 10, 1, 2.0, 4.0
        opts.ladder = opts.ladder if opts.legs else (100, 200)
    kit.pin_self(kit.LOAD_CPU)  # this process and its UAS thread
    result: dict[str, Any] = {"machine": kit.machine(), "loadavg_start": kit.loadavg()}
    if opts.part in ("actions", "both"):
        result["actions"] = actions_part(opts)
    if opts.part in ("rtp", "both"):
        result["rtp"] = rtp_part(opts)
    result["loadavg_end"] = kit.loadavg()
    result["command"] = "OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_scale_out.py " + " ".join(
        sys.argv[1:]
    )
    kit.write_result(opts.out, "scale_out", result)


if __name__ == "__main__":
    main()
