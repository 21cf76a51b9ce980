"""bench_scale_out.py's RTP part: the largest number of 2-party SIP/RTP legs a cluster carries with
< 1% late media ticks on every node, for a 1-node and a 2-node cluster in turn.

Each node's trunk is bench_sip.py's UAS, which answers every call with the address of the sender
socket of the node that dialled it (told by the RTP port range of the offer); conferences are added
(runs placed by load) up to each N of a ladder. Then one rtp_load.py sender process per node
sends, from that node's socket, one PCMU packet per leg every 20 ms to each of its legs and drains
what comes back: two senders for two nodes, so that the generator grows with the cluster.

Each run reads every node's /metrics at once (a thread per node) four times: before the senders
start (A), after the warm-up (B), at the end of the window (C), after the senders have stopped (D).
- late ticks: `media_late_ticks` + `media_skipped_ticks` against `media_ticks` between B and C;
- packets taken: `rtp_packets_in` between A and D against what the node's sender sent in all (the
  sender's own count: timing does not enter it, so a shortfall is packets the node lost);
- the sender's pace: what it sent between B and C (its own timeline, on the machine's monotonic
  clock) against 50 packets per leg per second: below 95% the generator, not the node, fell behind.
An N passes when every node has < 1% late ticks and took >= 95% of its packets, with every sender at
>= 95% of its pace. A run whose sender fell behind is retried (it says nothing about the nodes), as is
one that missed without saturating a node's CPU (its core, or its budget); 3 runs at most. The ladder
stops at the first N that fails and says what stopped it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import benchkit as kit
import httpx
from bench_sip import Uas, sip_server
from cpu_quota import QuotaGroups
from rtp_load import REALTIME_ENV, SENDER_CPU_ENV
from scale_cluster import (
    Cluster,
    Node,
    nice_prefix,
    node_env,
    node_placement,
    place_runs,
    set_async_commit,
    window_cpu,
)

BENCH = Path(__file__).resolve().parent
RTP_RANGES = ("40000-47999", "48000-55999")  # 4,000 legs per node (two ports per leg)
ATTEMPTS = 3
PACKETS_PER_S = 50  # one per 20 ms
PASS_SHARE = 0.95  # of the packets taken by a node; of the sender's pace


def port_range(index: int) -> tuple[int, int]:
    low, high = RTP_RANGES[index].split("-")
    return int(low), int(high)


class PerNodeSenderUas(Uas):
    """bench_sip's UAS answering each call with the address of the sender socket of the node that
    dialled it (the node whose RTP range holds the offered port), noting that port."""

    def __init__(self, sender_ports: list[int]) -> None:
        super().__init__(set())
        self.sender_ports = sender_ports
        self.server_ports: dict[str, int] = {}  # call-id -> the port the node offered

    def answer_sdp(self, number: str, call_id: str, offer: bytes) -> bytes:
        found = re.search(rb"^m=audio (\d+)", offer, re.M)
        assert found, f"INVITE for {number} without an audio offer: {offer!r}"
        port = int(found.group(1))
        index = next(i for i in range(len(self.sender_ports)) if port_range(i)[0] <= port <= port_range(i)[1])
        with self.cond:
            self.server_ports[call_id] = port
        return self.sdp(self.sender_ports[index])

    def answered_calls(self) -> int:
        with self.cond:
            return len(self.acked & self.server_ports.keys())

    def ports_per_node(self) -> list[list[int]]:
        with self.cond:
            ports = sorted(self.server_ports.values())
        return [
            [p for p in ports if port_range(i)[0] <= p <= port_range(i)[1]]
            for i in range(len(self.sender_ports))
        ]


@contextlib.contextmanager
def rtp_senders(
    socks: list[socket.socket], ports: list[list[int]], seconds: float, opts: argparse.Namespace
) -> Iterator[list[subprocess.Popen[str]]]:
    """One rtp_load.py sender per node, each sending from its node's socket to its node's legs."""
    env = {
        **os.environ,
        REALTIME_ENV: str(opts.sender_realtime),
        SENDER_CPU_ENV: "any" if opts.node_cpu else str(kit.LOAD_CPU),
    }
    procs: list[subprocess.Popen[str]] = []
    try:
        for sock, legs in zip(socks, ports, strict=True):
            proc = subprocess.Popen(
                [
                    *nice_prefix(opts.nice),
                    kit.PYTHON,
                    str(BENCH / "rtp_load.py"),
                    "--sender",
                    str(sock.fileno()),
                    f"{seconds:g}",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                pass_fds=[sock.fileno()],
                env=env,
            )
            procs.append(proc)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(legs))
            proc.stdin.close()
        for proc in procs:  # all ready before the first sends: each starts as it is ready
            assert proc.stdout is not None
            started, _, _ = select.select([proc.stdout], [], [], 30)
            line = proc.stdout.readline() if started else "(nothing within 30 s)"
            if line.strip() != "ready":
                raise RuntimeError(f"RTP sender failed to start: {line!r}")
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=seconds + 10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()


COUNTER = re.compile(
    r"^bridgeline_\w+?_(media_ticks|media_late_ticks|media_skipped_ticks|rtp_packets_in)_total (\S+)$"
)


class Snapshots:
    """Every node's media counters read at once (a thread and a kept-alive client per node), each
    stamped with the middle of its request on the monotonic and the perf_counter clocks."""

    def __init__(self, nodes: list[Node]) -> None:
        self.clients = [node.client(timeout=10) for node in nodes]
        self.pool = ThreadPoolExecutor(len(nodes))

    def read(self) -> list[dict[str, float]]:
        return list(self.pool.map(self._one, self.clients))

    @staticmethod
    def _one(client: httpx.Client) -> dict[str, float]:
        t0, p0 = time.monotonic(), time.perf_counter_ns()
        text = client.get("/metrics").text
        t1, p1 = time.monotonic(), time.perf_counter_ns()
        values = {"at": (t0 + t1) / 2, "at_ns": (p0 + p1) / 2, "read_s": t1 - t0}
        for line in text.splitlines():
            m = COUNTER.match(line)
            if m:
                values[m.group(1)] = float(m.group(2))
        return values

    def close(self) -> None:
        self.pool.shutdown()
        for client in self.clients:
            client.close()


def sent_by(marks: list[list[float]], at: float) -> float:
    """Packets the sender had sent at monotonic time `at` (linear between its marks)."""
    if at <= marks[0][0]:
        return 0.0
    for (ta, sa), (tb, sb) in itertools.pairwise(marks):
        if ta <= at <= tb:
            return sa + (sb - sa) * (at - ta) / max(tb - ta, 1e-9)
    return marks[-1][1]


def rtp_run(
    cluster: Cluster, socks: list[socket.socket], ports: list[list[int]], opts: argparse.Namespace
) -> dict[str, Any]:
    """One run of the senders at the legs set up so far: each node's late ticks, packets, CPU."""
    samplers = cluster.samplers()
    watch = kit.Disturbance(*(node.pid for node in cluster.nodes))
    snapshots = Snapshots(cluster.nodes)
    try:
        with contextlib.ExitStack() as stack:
            for sampler in samplers.values():
                stack.enter_context(sampler)
            before = snapshots.read()
            senders = stack.enter_context(rtp_senders(socks, ports, opts.run, opts))
            time.sleep(opts.rtp_warmup)
            start = snapshots.read()
            time.sleep(opts.run - opts.rtp_warmup - 0.5)
            end = snapshots.read()
            outs = []
            for sender in senders:
                sender.wait(timeout=opts.run + 10)  # each stops on its own after opts.run
                assert sender.stdout is not None
                outs.append(json.loads(sender.stdout.read().strip().splitlines()[-1]))
            time.sleep(0.2)  # the last packets are read
            after = snapshots.read()
    finally:
        snapshots.close()
    other = watch.stop()
    nodes = []
    senders_cpu = 0.0
    for i, legs in enumerate(ports):
        b, s, e, a, out = before[i], start[i], end[i], after[i], outs[i]
        window = e["at"] - s["at"]
        d = {
            k: e.get(k, 0.0) - s.get(k, 0.0)
            for k in ("media_ticks", "media_late_ticks", "media_skipped_ticks")
        }
        ticks = d["media_ticks"] + d["media_skipped_ticks"]
        late = d["media_late_ticks"] + d["media_skipped_ticks"]
        sent_in_window = sent_by(out["marks"], e["at"]) - sent_by(out["marks"], s["at"])
        taken = a.get("rtp_packets_in", 0.0) - b.get("rtp_packets_in", 0.0)
        cpu = window_cpu(samplers, int(s["at_ns"]), int(e["at_ns"]))
        senders_cpu += out["cpu_s"] / opts.run
        nodes.append(
            {
                "node": f"n{i + 1}",
                "legs": len(legs),
                "late_pct": round(100 * late / ticks, 3) if ticks else 100.0,
                "taken_share": round(taken / out["sent"], 4) if out["sent"] else 1.0,  # no legs: none lost
                "sender_pace": round(sent_in_window / (PACKETS_PER_S * len(legs) * window), 3)
                if legs
                else 1.0,
                "packets_in_per_s": round(
                    (e.get("rtp_packets_in", 0.0) - s.get("rtp_packets_in", 0.0)) / window
                ),
                "cpu": cpu[f"n{i + 1}"],
                "throttled_share": cpu.get(f"n{i + 1} throttled share"),
                "sender": {
                    "cpu": round(out["cpu_s"] / opts.run, 3),
                    "late_sends": out["late"],
                    "errors": out["errors"],
                },
                "metrics_read_ms": round(1000 * max(x["read_s"] for x in (b, s, e, a)), 1),
            }
        )
    cpu = window_cpu(samplers, int(start[0]["at_ns"]), int(end[0]["at_ns"]))
    return {
        "legs": sum(len(p) for p in ports),
        "nodes": nodes,
        "late_pct": max(n["late_pct"] for n in nodes),
        "taken_share": min(n["taken_share"] for n in nodes),
        "sender_pace": min(n["sender_pace"] for n in nodes),
        "postgres_backends_cpu": cpu["postgres backends"],
        "busiest_backend_cpu": cpu["busiest backend"],
        "senders_cpu": round(senders_cpu, 3),
        "idle_cpu": cpu["idle"],
        "rest_of_machine_cpu": round(max(other["other_cpu_util"] - senders_cpu, 0.0), 3),
        "steal": other["steal_util"],
    }


def limited_by(run: dict[str, Any]) -> str | None:
    """Why a run missed, if it did: a sender behind its pace invalidates the run whatever the nodes did."""
    if run["sender_pace"] < PASS_SHARE:
        return "generator (a sender below 95% of its pace)"
    if run["late_pct"] >= 1:
        return "nodes (late ticks)"
    if run["taken_share"] < PASS_SHARE:
        return "nodes (packets lost: < 95% taken)"
    return None


def saturated(run: dict[str, Any], budget: float) -> bool:
    return any((n["cpu"] or 0.0) >= 0.9 * budget for n in run["nodes"])


def write_node_rtp_settings(node_root: Path, realtime_priority: int) -> None:
    """The media thread's SCHED_FIFO priority in the node's sip.yaml (JSON is YAML)."""
    path = node_root / "sip.yaml"
    config = json.loads(path.read_text())
    config["rtp"]["realtime_priority"] = realtime_priority
    path.write_text(json.dumps(config))


def start_cluster(
    size: int, database_url: str, uas: Uas, quotas: QuotaGroups | None, cluster: Cluster, nice: int = 0
) -> None:
    for i in range(size):
        server = sip_server(uas.port, kit.free_port(socket.SOCK_DGRAM), RTP_RANGES[i])
        if quotas is not None and not quotas.rt_period_us:  # a SCHED_FIFO thread escapes the CFS quota
            write_node_rtp_settings(server.root, 0)
        node = Node(
            carrier="sip",
            env=node_env(i),
            args=[*server.args, "--database-url", database_url],
            root=server.root,
            **node_placement(i, quotas, nice, realtime=True),
        )
        cluster.nodes.append(node.start())


def rtp_cluster(size: int, opts: argparse.Namespace, quotas: QuotaGroups | None) -> dict[str, Any]:
    socks = []
    for _ in range(size):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    uas = PerNodeSenderUas([sock.getsockname()[1] for sock in socks])
    uas.start()
    budget = opts.node_cpu or 1.0
    runs: list[dict[str, Any]] = []
    largest = 0
    deadline = time.monotonic() + opts.budget
    try:
        with kit.fresh_database() as database_url:
            if opts.pg_async_commit:
                set_async_commit(database_url)
            cluster = Cluster(size, database_url)
            try:
                start_cluster(size, database_url, uas, quotas, cluster, opts.nice)
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
                    ports = uas.ports_per_node()
                    best: dict[str, Any] | None = None
                    for _ in range(ATTEMPTS):
                        run = rtp_run(cluster, socks, ports, opts)
                        run["limited_by"] = limited_by(run)
                        run["a_node_at_budget"] = saturated(run, budget)  # else the miss is not the budget's
                        print(
                            f"rtp {size} node(s), {legs} legs: {json.dumps(run)}", file=sys.stderr, flush=True
                        )
                        valid = run["sender_pace"] >= PASS_SHARE
                        if best is None or (valid, -run["late_pct"]) > (
                            best["sender_pace"] >= PASS_SHARE,
                            -best["late_pct"],
                        ):
                            best = run
                        if best["limited_by"] is None or (valid and run["a_node_at_budget"]):
                            break
                    assert best is not None
                    runs.append(best)
                    if best["limited_by"] is not None:
                        break
                    largest = legs
            finally:
                cluster.stop()
    finally:
        uas.stop()
        for sock in socks:
            sock.close()
    passed = [run for run in runs if run["legs"] == largest]
    cpu = sum(n["cpu"] or 0.0 for n in passed[0]["nodes"]) if passed else 0.0
    return {
        "nodes": size,
        "largest_legs_passed": largest,
        # legs per CPU-second of the nodes at that N: on a machine whose speed drifts between the two
        # ladders (other work, caches), the ratio of these says how far the clusters' CPU differed
        "legs_per_node_cpu_s": round(largest / cpu) if cpu else None,
        "stopped_by": runs[-1]["limited_by"]
        if runs and runs[-1]["limited_by"]
        else "the ladder's top or the budget",
        "ladder": list(opts.ladder),
        "runs": runs,
    }


def rtp_part(opts: argparse.Namespace, quotas: QuotaGroups | None) -> dict[str, Any]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the nodes inherit it: two sockets per leg
    result = {str(size): rtp_cluster(size, opts, quotas) for size in (1, 2)}
    one, two = result["1"]["largest_legs_passed"], result["2"]["largest_legs_passed"]
    per_cpu = [result[size]["legs_per_node_cpu_s"] for size in ("1", "2")]
    return {
        "run_s": opts.run,
        "clusters": result,
        "ratio_2_over_1": round(two / one, 3) if one else None,
        "ratio_per_node_cpu_s": round(per_cpu[1] / per_cpu[0], 3) if all(per_cpu) else None,
        "ladder_top_reached": two == opts.ladder[-1],
    }
