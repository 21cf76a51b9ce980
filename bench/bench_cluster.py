"""Cluster figures (issue #12): a forwarded member action against a local one, and failover after kill -9.

Nodes are real `bridgeline serve` processes (sim carrier) on one fresh PostgreSQL database on this machine
(127.0.0.1:5432, user postgres), all pinned to the server core; the client runs on the other.

- forward: K conferences owned by node b; hold/unhold of their customers, one request at a time, sent in
  alternating blocks to b (local) and to a (which forwards to b). Latency p50/p99 of each path and their
  ratio, same run.
- failover: three nodes; each round starts a conference on the victim node, kills it (-9), and sends a hold
  at once to a surviving node (which waits for the takeover and forwards, or runs it if it took the
  conference itself); the time from the kill to the accepted answer, and to the store naming a new owner.
  The victim is restarted (a new epoch) and the next round kills the next node. p50/p99 over the rounds.

Run: .venv/bin/python bench/bench_cluster.py [--mode forward|failover|both] [--rounds 20] [--out f.json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from benchkit import (
    AUTH_ID,
    AUTH_TOKEN,
    LOAD_CPU,
    Server,
    create_phlo,
    fresh_database,
    loadavg,
    machine,
    pin_self,
    pinning_available,
    summary_ms,
    wait_connected,
    write_result,
)

HERE = {"X-Bridgeline-Forwarded-By": "bench"}  # run where it lands (how a conference is put on a node)
LEASE_S, HEARTBEAT_S = 3.0, 1.0


def node(database_url: str, node_id: str) -> Server:
    env = {
        "BRIDGELINE_NODE_ID": node_id,
        "BRIDGELINE_NODE_LEASE_S": str(LEASE_S),
        "BRIDGELINE_NODE_HEARTBEAT_S": str(HEARTBEAT_S),
        "BRIDGELINE_LOG_LEVEL": "warning",
    }
    return Server(env=env, args=["--database-url", database_url])


def start_conference(client: httpx.Client, phlo_id: str, node_id: str) -> tuple[str, str]:
    agent, customer = (f"+1555{secrets.randbelow(10**7):07d}" for _ in range(2))
    run = client.post(
        f"/v1/account/{AUTH_ID}/phlo/{phlo_id}", json={"agent": agent, "customer": customer}, headers=HERE
    )
    run.raise_for_status()
    wait_connected(client, phlo_id, node_id, [agent, customer])
    return agent, customer


def owner(database_url: str, address: str) -> str | None:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT c.owner_node FROM conferences c JOIN conference_addresses a USING (conference_id)"
            " WHERE a.address = %s AND c.status = 'live'",
            (address,),
        ).fetchone()
    return None if row is None else str(row[0])


def forward_mode(database_url: str, conferences: int, requests: int, block: int) -> dict[str, Any]:
    with (
        node(database_url, "a") as a,
        node(database_url, "b") as b,
        b.client() as on_b,
        a.client() as on_a,
    ):
        phlo_id, node_id = create_phlo(on_b)
        customers = [start_conference(on_b, phlo_id, node_id)[1] for _ in range(conferences)]
        latencies: dict[str, list[float]] = {"local": [], "forwarded": []}
        held = dict.fromkeys(customers, False)
        sent = 0
        while sent < 2 * requests:
            for path, client in (("local", on_b), ("forwarded", on_a)):
                for _ in range(block):
                    customer = customers[sent % len(customers)]
                    action = "unhold" if held[customer] else "hold"
                    url = f"/v1/phlo/{phlo_id}/multi_party_call/{node_id}/members/{customer}"
                    start = time.perf_counter()
                    answer = client.post(url, json={"action": action})
                    latencies[path].append(time.perf_counter() - start)
                    if answer.status_code != 201:
                        raise RuntimeError(f"{path} {action}: {answer.status_code} {answer.text}")
                    held[customer] = not held[customer]
                    sent += 1
    local, forwarded = summary_ms(sorted(latencies["local"])), summary_ms(sorted(latencies["forwarded"]))
    return {
        "conferences": conferences,
        "requests_per_path": len(latencies["local"]),
        "local_ms": local,
        "forwarded_ms": forwarded,
        "ratio_p50": forwarded["p50"] / local["p50"],
        "ratio_p99": forwarded["p99"] / local["p99"],
    }


def post_hold(url: str) -> tuple[httpx.Response, float]:
    """The answer and when it arrived (monotonic)."""
    with httpx.Client(auth=(AUTH_ID, AUTH_TOKEN), timeout=30) as client:
        response = client.post(url, json={"action": "hold"})
        return response, time.monotonic()


def failover_mode(database_url: str, rounds: int) -> dict[str, Any]:
    ids = ("a", "b", "c")
    nodes = {node_id: node(database_url, node_id).start() for node_id in ids}
    to_action: list[float] = []
    to_owner: list[float] = []
    try:
        with nodes["a"].client() as setup:
            phlo_id, node_id = create_phlo(setup)
        for round_ in range(rounds):
            victim, survivor = ids[round_ % 3], ids[(round_ + 1) % 3]
            with nodes[victim].client() as on_victim:
                _, customer = start_conference(on_victim, phlo_id, node_id)
            assert owner(database_url, customer) == victim
            os.kill(nodes[victim].pid, signal.SIGKILL)
            killed = time.monotonic()
            nodes[victim].process.wait()  # type: ignore[union-attr]
            answer: list[tuple[httpx.Response, float]] = []
            url = f"{nodes[survivor].url}/v1/phlo/{phlo_id}/multi_party_call/{node_id}/members/{customer}"
            hold = threading.Thread(target=lambda answer=answer, url=url: answer.append(post_hold(url)))
            hold.start()  # sent at once: nobody owns the conference yet
            while (moved := owner(database_url, customer)) in (None, victim):
                if time.monotonic() - killed > 30:
                    raise RuntimeError(f"round {round_}: no new owner after 30 s")
                time.sleep(0.01)
            to_owner.append(time.monotonic() - killed)
            hold.join(timeout=60)
            response, answered_at = answer[0]
            if response.status_code != 201:
                raise RuntimeError(f"round {round_}: {response.status_code} {response.text}")
            accepted = answered_at - killed
            to_action.append(accepted)
            print(
                f"round {round_ + 1}/{rounds}: kill -9 {victim} -> hold accepted via {survivor} after "
                f"{accepted:.2f} s (owner now {moved})",
                file=sys.stderr,
                flush=True,
            )
            nodes[victim] = node(database_url, victim).start()
    finally:
        for server in nodes.values():
            server.stop()
    return {
        "rounds": rounds,
        "lease_s": LEASE_S,
        "heartbeat_s": HEARTBEAT_S,
        "kill_to_action_accepted_ms": summary_ms(sorted(to_action)),
        "kill_to_new_owner_ms": summary_ms(sorted(to_owner)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("forward", "failover", "both"), default="both")
    parser.add_argument("--conferences", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400, help="per path (forward mode)")
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20, help="kills (failover mode)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if pinning_available():
        pin_self(LOAD_CPU)
    result: dict[str, Any] = {"machine": machine(), "load_before": loadavg()}
    with fresh_database() as database_url:
        if args.mode in ("forward", "both"):
            result["forward"] = forward_mode(database_url, args.conferences, args.requests, args.block)
    with fresh_database() as database_url:
        if args.mode in ("failover", "both"):
            result["failover"] = failover_mode(database_url, args.rounds)
    result["load_after"] = loadavg()
    print(json.dumps(result, indent=2))
    write_result(args.out, "cluster", result)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
