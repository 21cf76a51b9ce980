"""Live conferences held at once (sim carrier, SQLite): memory per conference and action latency.

1. Start a server (pinned to one core), create a PHLO whose run dials agent and customer in
   parallel (the sim carrier answers at once), and open PROBES probe conferences.
2. Baseline, the idle server: its RSS (/proc/<pid>/status VmRSS), and hold/unhold latency under a
   light open-loop load (LIGHT_RATE requests/s spread over the probes' customers).
3. Open N more conferences through the API (POST run, CREATORS connections, each payload distinct)
   and wait until every one of their 2N members is connected.
4. RSS again: (RSS after - RSS before) / N is the memory per conference. Then the same light load
   on the same probes, now with N + PROBES conferences live.

The server runs through bench/gcstats_serve.py, which records the garbage collector's pauses
during each light-load window (the server's code is unchanged).

Bounded: the creation has a time limit, every load window lasts a fixed time.
Run: .venv/bin/python bench/bench_conferences.py [--n 10000] [--out results/conferences.json]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import benchkit as kit

PROBES = 50
LIGHT_RATE = 100.0  # requests/s, open loop
CREATORS = 20


def numbers(base: int, n: int) -> list[str]:
    return [f"+1{base + i:010d}" for i in range(n)]


def light_load(port: int, node: str, customers: list[str], measure: float) -> dict[str, Any]:
    scripts = [
        [
            {"method": "POST", "path": f"{node}/members/{c}", "body": {"action": "hold"}},
            {"method": "POST", "path": f"{node}/members/{c}", "body": {"action": "unhold"}},
        ]
        for c in customers
    ]
    spec = {
        "host": "127.0.0.1",
        "port": port,
        "auth": kit.basic_auth(),
        "connections": scripts,
        "warmup_s": 1.0,
        "measure_s": measure,
        "rate": LIGHT_RATE,
        "expect": [201],
    }
    return kit.run_load(spec)


def unhold_all(client: Any, node: str, customers: list[str]) -> None:
    """Leave every probe customer connected (a window may end between hold and unhold)."""
    for c in customers:
        if client.get(f"{node}/members/{c}").json().get("status") == "on_hold":
            client.post(f"{node}/members/{c}", json={"action": "unhold"}).raise_for_status()


def settle_rss(pid: int, seconds: float = 2.0) -> int:
    """RSS once it has stopped moving (the last answers and timers have run), in KB."""
    time.sleep(seconds)
    return kit.rss_kb(pid)


def main(n: int, measure: float, out: str | None) -> dict[str, Any]:
    load0 = kit.loadavg()
    results: dict[str, Any] = {"machine": kit.machine(), "n": n, "probes": PROBES, "light_rate": LIGHT_RATE}
    with kit.Server(gc_stats=True) as server, server.client(timeout=120) as client:
        phlo_id, node_id = kit.create_phlo(client)
        node = f"/v1/phlo/{phlo_id}/multi_party_call/{node_id}"
        run_path = f"/v1/account/{kit.AUTH_ID}/phlo/{phlo_id}"
        agents, customers = numbers(4_150_000_000, PROBES), numbers(4_150_100_000, PROBES)
        for a, c in zip(agents, customers, strict=True):
            client.post(run_path, json={"agent": a, "customer": c}).raise_for_status()
        kit.wait_connected(client, phlo_id, node_id, agents + customers)
        # One light-load window first, unmeasured, so both measured windows run on a warm server.
        light_load(server.port, node, customers, 2.0)
        unhold_all(client, node, customers)

        results["rss_idle_kb"] = rss0 = settle_rss(server.pid)
        server.gc_pauses()
        with kit.timed("light load, idle server"):
            results["idle"] = light_load(server.port, node, customers, measure)
        results["idle"]["gc"] = server.gc_pauses()
        unhold_all(client, node, customers)
        rss0b = settle_rss(server.pid)

        # N conferences through the API: CREATORS connections, each sending its share of runs once.
        big_agents, big_customers = numbers(4_160_000_000, n), numbers(4_170_000_000, n)
        scripts: list[list[dict[str, Any]]] = [[] for _ in range(CREATORS)]
        for i, (a, c) in enumerate(zip(big_agents, big_customers, strict=True)):
            scripts[i % CREATORS].append(
                {"method": "POST", "path": run_path, "body": {"agent": a, "customer": c}}
            )
        spec = {
            "host": "127.0.0.1",
            "port": server.port,
            "auth": kit.basic_auth(),
            "connections": scripts,
            "warmup_s": 0.0,
            "measure_s": 240.0,
            "rate": None,
            "once": True,
            "expect": [201],
        }
        with kit.timed(f"create {n} conferences"):
            t0 = time.monotonic()
            results["creation"] = kit.run_load(spec)
            # Every member connected: the last conference of each creator, then a full count.
            last = [scripts[k][-1]["body"] for k in range(CREATORS) if scripts[k]]
            kit.wait_connected(
                client, phlo_id, node_id, [b["agent"] for b in last] + [b["customer"] for b in last]
            )
            results["creation"]["until_all_connected_s"] = round(time.monotonic() - t0, 2)
        results["rss_loaded_kb"] = rss1 = settle_rss(server.pid)
        server.gc_pauses()
        with kit.timed("light load, N conferences live"):
            results["loaded"] = light_load(server.port, node, customers, measure)
        results["loaded"]["gc"] = server.gc_pauses()
        results["rss_after_load_kb"] = kit.rss_kb(server.pid)
        # Check (after every measurement: this answer is megabytes and grows the server's heap).
        instances = client.get(f"{node}/instances").json()["objects"]
        live = [o for o in instances if o["status"] == "live"]
        results["live_conferences"] = len(live)
        results["connected_members"] = sum(
            1 for o in live for m in o.get("members", []) if m.get("status") in ("connected", "on_hold")
        )
        results["rss_idle_after_light_load_kb"] = rss0b
        results["bytes_per_conference"] = round((rss1 - rss0) * 1024 / n)
        results["server_tracebacks"] = server.tracebacks()
    results["loadavg_start"], results["loadavg_end"] = load0, kit.loadavg()
    results["command"] = f".venv/bin/python bench/bench_conferences.py --n {n} --measure {measure}"
    kit.write_result(out, "conferences", results)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="conferences to hold at once")
    parser.add_argument("--measure", type=float, default=5.0, help="seconds per light-load window")
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    main(opts.n, opts.measure, opts.out)
