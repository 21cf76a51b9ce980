"""Scale-out (issue #12): 1 node against 2 nodes in the same run, each node its own `bridgeline serve`
process, on one fresh PostgreSQL database per cluster; runs placed by load.

- actions: member actions/s. A 1-node and a 2-node cluster (sim carrier) are both started; --connections
  conferences on each, created by runs sent to each node in turn (the cluster places them by load, in
  batches a heartbeat apart, since placement reads the loads the nodes' heartbeats wrote). Each
  connection of the load generator (bench/httpload.py: closed loop, one request in flight) alternates
  hold / unhold of its conference's customer and talks to the node that owns it, so the generator
  sends to every node and nothing is forwarded. Windows alternate 1 node / 2 nodes (--rounds); the
  ratio of the best windows and the ratio of the rounds' medians are both given.
- rtp: SIP/RTP legs, 2-party conferences, one sender process per node (bench/scale_out_rtp.py).

The ratio is 2 nodes / 1 node (issue #12: >= 1.8x). Two ways to give each node its CPU:
- default: node 1 pinned to CPU 1 and node 2 to CPU 0, the generators on CPU 0 (as the other
  benchmarks), PostgreSQL wherever the kernel puts it: on a 2-core machine the generators and the
  database then share the nodes' cores, so the 2-node figure is a floor.
- --node-cpu C: every node gets the same fixed budget, C of a core, by a cgroup-v1 CPU quota
  (bench/cpu_quota.py; --cpu-period-ms, 10 ms by default, keeps the throttled gaps short for the
  media tick), and nothing is pinned: with C well under half a core, the capped nodes, not
  PostgreSQL or the generators, are the bottleneck in both clusters, on a machine without a core
  to spare per node. A SCHED_FIFO thread is not bounded by the CFS quota: the nodes' media threads
  run at normal priority, or, with --rtp-realtime, keep SCHED_FIFO and get the same share (C per
  20 ms) of the real-time budget (cpu.rt_runtime_us): then other work on the machine cannot make
  their ticks late, and a node's RTP capacity is its budget's. Each window reports each node's CPU
  (/proc/<pid>/stat) and the share of quota periods in which it was throttled, PostgreSQL's
  backends (all, and the busiest), the generators' CPU and the machine's idle CPU; each actions
  window says whether every node was at >= 90% of its budget, each RTP run whether one was.
  --cpu-burst-ms (default: one period's quota) lets a period also spend quota
  that earlier periods left unused (cpu.cfs_burst_us): the average stays at C, but the media tick's
  work, which comes every 20 ms, is not cut at every other 10 ms boundary (with no burst, a node at
  176 legs was throttled in 8-20% of its periods while using 0.25-0.28 of its 0.35 on average).
- On a machine shared with other work, --nice (e.g. -10) lets the nodes and generators take their
  budget before other processes do (PostgreSQL keeps its own priority), and --pg-async-commit sets
  synchronous_commit = off on this script's databases: a node's store runs one transaction at a time,
  so a commit waiting on a busy disk would otherwise bound a node below its budget.

Bounded: windows of --measure seconds, RTP runs of --run seconds, no RTP run starts after --budget
seconds per cluster; only the processes and cgroups this script made are stopped and removed, on
failure and on SIGTERM too.
Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_scale_out.py [--part actions|rtp|both]
     [--node-cpu 0.35 [--cpu-period-ms 10] [--cpu-burst-ms 3.5] [--rtp-realtime]] [--nice -10]
     [--pg-async-commit]
     [--connections 50] [--rounds 3] [--legs 250,500,...] [--budget 300] [--quick] [--out f.json]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from typing import Any

import benchkit as kit
from bench_tick_isolation import CpuSampler
from cpu_quota import QuotaGroups
from scale_cluster import (
    Cluster,
    Node,
    node_env,
    node_placement,
    place_runs,
    set_async_commit,
    window_cpu,
)
from scale_out_rtp import rtp_part

LADDER = (250, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000, 6000)
RT_PERIOD_US = 20_000  # --rtp-realtime: the media tick's period, so each period holds one tick's work
# With a budget, even steps of 12% (100, 112, 126, ..., 2136): the ratio of two ladders is only as
# fine as their steps.
BUDGET_LADDER = tuple(2 * round(50 * 1.12**k) for k in range(28))


# --------------------------------------------------------------------------- member actions/s
def actions_cluster(
    size: int, database_url: str, connections: int, quotas: QuotaGroups | None, nice: int
) -> tuple[Cluster, dict[str, Any]]:
    cluster = Cluster(size, database_url)
    for i in range(size):
        placement = node_placement(i, quotas, nice)
        node = Node(env=node_env(i), args=["--database-url", database_url], **placement)
        cluster.nodes.append(node.start())
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


def actions_window(cluster: Cluster, spec: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    samplers: dict[str, CpuSampler] = cluster.samplers()
    watch = kit.Disturbance(*(node.pid for node in cluster.nodes))
    with contextlib.ExitStack() as stack:
        for sampler in samplers.values():
            stack.enter_context(sampler)
        started = time.monotonic()
        load = kit.run_load(
            {**spec, "warmup_s": opts.warmup, "measure_s": opts.measure},
            cpu=None if opts.node_cpu else kit.LOAD_CPU,
            nice=opts.nice,
        )
        wall = time.monotonic() - started
    b0, b1 = (int(x * 1e9) for x in load["window_perf_s"])
    cpu = window_cpu(samplers, b0, b1)
    other = watch.stop()
    nodes_cpu = sum(cpu[f"n{i + 1}"] or 0.0 for i in range(cluster.size))
    # Disturbance counts the generator and the database as "other": take out what is known.
    known = (load["generator_cpu_util"] + (cpu["postgres backends"] or 0.0)) * opts.measure / wall
    budget = opts.node_cpu or 1.0
    return {
        "ok_per_s": load["ok_per_s"],
        # the figure is the nodes' only if they were at their budget while the rest had CPU to spare
        "nodes_at_budget": all((cpu[f"n{i + 1}"] or 0.0) >= 0.9 * budget for i in range(cluster.size)),
        "machine_idle_cpu": cpu["idle"],
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


def actions_part(opts: argparse.Namespace, quotas: QuotaGroups | None) -> dict[str, Any]:
    with kit.fresh_database() as one_url, kit.fresh_database() as two_url:
        clusters: dict[int, tuple[Cluster, dict[str, Any]]] = {}
        try:
            for size, url in ((1, one_url), (2, two_url)):
                if opts.pg_async_commit:
                    set_async_commit(url)
                with kit.timed(f"actions: {size}-node cluster and {opts.connections} conferences"):
                    clusters[size] = actions_cluster(size, url, opts.connections, quotas, opts.nice)
            windows: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
            for round_ in range(opts.rounds):
                for size in (1, 2):
                    cluster, setup = clusters[size]
                    window = actions_window(cluster, setup["spec"], opts)
                    windows[size].append(window)
                    print(
                        f"actions round {round_ + 1}, {size} node(s): {window['ok_per_s']:,.0f}/s"
                        f" (not OK {window['not_ok']}), p99 {window['latency_ms']['p99']} ms,"
                        f" CPU {window['cpu']}, rest of machine {window['rest_of_machine_cpu']},"
                        f" nodes at their budget: {window['nodes_at_budget']}",
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
        "forwarded": "none: each connection talks to the node that owns its conference",
        "warmup_s": opts.warmup,
        "measure_s": opts.measure,
        "conferences_per_node": {size: clusters[size][1]["conferences_per_node"] for size in (1, 2)},
        "windows": {str(size): ws for size, ws in windows.items()},
        "best": {str(size): w for size, w in best.items()},
        "ratio_2_over_1": round(best[2]["ok_per_s"] / best[1]["ok_per_s"], 3),
        "ratio_per_round": [
            round(two["ok_per_s"] / one["ok_per_s"], 3)
            for one, two in zip(windows[1], windows[2], strict=True)
        ],
        "ratio_of_medians": round(
            statistics.median(w["ok_per_s"] for w in windows[2])
            / statistics.median(w["ok_per_s"] for w in windows[1]),
            3,
        ),
        "ratio_per_node_cpu_s": round(per_cpu[1] / per_cpu[0], 3) if all(per_cpu) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=("actions", "rtp", "both"), default="both")
    parser.add_argument("--node-cpu", type=float, default=None, help="each node's CPU budget, in cores")
    parser.add_argument("--cpu-period-ms", type=float, default=10.0, help="the quota's period (--node-cpu)")
    parser.add_argument(
        "--cpu-burst-ms",
        type=float,
        default=None,
        help="unused quota a period may carry over (--node-cpu; default: one period's quota, 0: none)",
    )
    parser.add_argument("--connections", type=int, default=50, help="conferences and connections (actions)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated windows per cluster (actions)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--measure", type=float, default=5.0, help="seconds per window (actions)")
    parser.add_argument("--legs", default=None, help="comma-separated ladder of total legs (rtp)")
    parser.add_argument("--run", type=float, default=6.0, help="seconds per RTP run, warm-up included")
    parser.add_argument("--rtp-warmup", type=float, default=1.5, help="seconds of RTP before the window")
    parser.add_argument(
        "--rtp-realtime",
        action="store_true",
        help="with --node-cpu: the nodes' media threads keep SCHED_FIFO, bounded by the same share of the"
        " real-time budget (cpu.rt_runtime_us) as the quota gives their other threads",
    )
    parser.add_argument(
        "--sender-realtime", type=int, default=0, help="SCHED_FIFO priority of the RTP senders (0: none)"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="nice of the nodes and generators (e.g. -5 on a machine shared with other work; PostgreSQL"
        " keeps its own): they then get their budget first; nothing changes on a quiet machine",
    )
    parser.add_argument(
        "--pg-async-commit",
        action="store_true",
        help="synchronous_commit = off on the benchmark's databases: commits stop waiting for the disk",
    )
    parser.add_argument("--budget", type=float, default=300.0, help="per cluster: no RTP run starts after")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, short windows")
    parser.add_argument("--out", default=None, help="JSON results file")
    opts = parser.parse_args()
    default_ladder = BUDGET_LADDER if opts.node_cpu else LADDER
    opts.ladder = default_ladder if opts.legs is None else tuple(int(n) for n in opts.legs.split(","))
    if opts.quick:
        opts.connections, opts.rounds, opts.measure, opts.run = 10, 1, 2.0, 4.0
        opts.ladder = opts.ladder if opts.legs else (100, 200)
    if opts.run - opts.rtp_warmup < 1.5:
        parser.error("--run must leave at least 1.5 s after --rtp-warmup")
    result: dict[str, Any] = {"machine": kit.machine(), "loadavg_start": kit.loadavg()}
    with contextlib.ExitStack() as stack:
        quotas = None
        if opts.node_cpu:
            if opts.cpu_burst_ms is None:  # a 20 ms tick's burst may spend two 10 ms periods' quota
                opts.cpu_burst_ms = opts.node_cpu * opts.cpu_period_ms
            period_us, burst_us = round(opts.cpu_period_ms * 1000), round(opts.cpu_burst_ms * 1000)
            rt_period_us = RT_PERIOD_US if opts.rtp_realtime else 0
            quotas = stack.enter_context(QuotaGroups(opts.node_cpu, period_us, burst_us, rt_period_us))
            result["node_cpu"] = {
                "cores": opts.node_cpu,
                "period_ms": opts.cpu_period_ms,
                "burst_ms": opts.cpu_burst_ms,
                "media_thread": f"SCHED_FIFO, {opts.node_cpu:g} of each {RT_PERIOD_US // 1000} ms"
                if opts.rtp_realtime
                else "normal priority",
                "pinned": False,
            }
        else:
            kit.pin_self(kit.LOAD_CPU)  # this process and its UAS thread
        if opts.part in ("actions", "both"):
            result["actions"] = actions_part(opts, quotas)
        if opts.part in ("rtp", "both"):
            result["rtp"] = rtp_part(opts, quotas)
    result["loadavg_end"] = kit.loadavg()
    result["command"] = "OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_scale_out.py " + " ".join(
        sys.argv[1:]
    )
    kit.write_result(opts.out, "scale_out", result)


if __name__ == "__main__":
    main()
