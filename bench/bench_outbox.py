"""API latency while the callback outbox holds a large backlog and its receiver is down.

Two servers, one after the other, each with SQLite in a fresh data directory and every callback
going to a port where nothing listens (connection refused: the receiver is down):
1. empty outbox: the baseline;
2. PENDING pending deliveries written into the database before the server starts, as a long outage
   under an earlier version leaves them: DELIVERIES_PER_CONFERENCE per ended conference, each queue's
   head already retried (due at times spread over the next five minutes, some already due), the rest
   never tried and due (this version parks them behind their head: the server does that once, in
   bounded pages, and the time it takes is reported as settle_s before the measured windows).
Each server gets PROBES probe conferences (agent and customer connected) and a warm-up window; then,
in --rounds rounds, each server in turn takes hold/unhold on its probes' customers at LIGHT_RATE
requests/s (open loop, latency from the intended send time) for --measure seconds, so both see the
same (shared) machine. The figure is the ratio of the median window p99s (target: within 1.2x).

Bounded: fixed-length windows, fixed row counts. Run:
.venv/bin/python bench/bench_outbox.py [--pending 100000] [--measure 10] [--rounds 3] [--out x.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sqlite3
import subprocess
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import benchkit as kit
from bench_conferences import light_load, numbers, unhold_all

PROBES = 50
LIGHT_RATE = 100.0
DELIVERIES_PER_CONFERENCE = 20


def prepare_backlog(root: Path, pending: int, url: str) -> None:
    """Migrate a fresh store (via `bridgeline account add`) and write `pending` pending deliveries."""
    data = root / "data"
    subprocess.run(
        [kit.PYTHON, "-m", "bridgeline.cli", "account", "add", "--data-dir", str(data)],
        check=True,
        capture_output=True,
    )
    now, rng = time.time(), random.Random(7)
    conferences = max(1, pending // DELIVERIES_PER_CONFERENCE)
    params = json.dumps({"event": "member_connected", "sequence": "1", "mpc_uuid": "x" * 36})
    with closing(sqlite3.connect(data / "bridgeline.db")) as db, db:
        db.executemany(
            "INSERT INTO conferences (conference_id, auth_id, phlo_id, node_id, run_id, status, state,"
            " created_at, updated_at, ended_at) VALUES (?, ?, 'p', 'n', NULL, 'ended', '{}', ?, ?, ?)",
            [(f"backlog-{c}", kit.AUTH_ID, now - 600, now - 300, now - 300) for c in range(conferences)],
        )
        rows = []
        for n in range(pending):
            conference, seq = divmod(n, DELIVERIES_PER_CONFERENCE)
            head = seq == 0
            rows.append(
                (
                    f"backlog-{conference % conferences}",
                    seq + 1,
                    url,
                    kit.AUTH_ID,
                    params,
                    3 if head else 0,
                    now + rng.uniform(-5, 300) if head else 0.0,
                    now - 300,
                )
            )
        db.executemany(
            "INSERT INTO deliveries (conference_id, event_seq, url, auth_id, params, status, attempts,"
            " next_attempt_at, updated_at, history) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, '[]')",
            rows,
        )


def pending_count(root: Path) -> int:
    with closing(sqlite3.connect(root / "data" / "bridgeline.db")) as db:
        return int(db.execute("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'").fetchone()[0])


def unparked_followers(root: Path) -> int:
    """Backlog deliveries never tried and not yet parked behind their queue's head."""
    with closing(sqlite3.connect(root / "data" / "bridgeline.db")) as db:
        query = (
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND attempts = 0"
            " AND next_attempt_at < 1e15 AND conference_id LIKE 'backlog-%'"
        )
        return int(db.execute(query).fetchone()[0])


def wait_settled(root: Path, timeout: float = 120.0) -> float:
    """Seconds until the worker has parked every backlog delivery that waits behind another."""
    started = time.monotonic()
    while unparked_followers(root) and time.monotonic() - started < timeout:
        time.sleep(0.2)
    return round(time.monotonic() - started, 1)


def start(pending: int, base: int, stack: contextlib.ExitStack) -> dict[str, Any]:
    """A server with `pending` deliveries in its outbox and PROBES connected probe conferences."""
    dead_url = f"http://127.0.0.1:{kit.free_port()}/down"
    root = Path(tempfile.mkdtemp(prefix="bridgeline-bench-outbox-"))
    if pending:
        with kit.timed(f"write {pending} pending deliveries"):
            prepare_backlog(root, pending, dead_url)
    server = stack.enter_context(kit.Server(root=root))
    client = stack.enter_context(server.client(timeout=60))
    settle_s = wait_settled(root) if pending else 0.0
    phlo_id, node_id = kit.create_phlo(client, callback_url=dead_url)
    node = f"/v1/phlo/{phlo_id}/multi_party_call/{node_id}"
    run_path = f"/v1/account/{kit.AUTH_ID}/phlo/{phlo_id}"
    agents, customers = numbers(base, PROBES), numbers(base + 100_000, PROBES)
    for a, c in zip(agents, customers, strict=True):
        client.post(run_path, json={"agent": a, "customer": c}).raise_for_status()
    kit.wait_connected(client, phlo_id, node_id, agents + customers)
    light_load(server.port, node, customers, 2.0)  # warm-up, unmeasured
    unhold_all(client, node, customers)
    return {
        "server": server,
        "client": client,
        "root": root,
        "node": node,
        "customers": customers,
        "result": {"pending_written": pending, "settle_s": settle_s, "windows": []},
    }


def main(pending: int, measure: float, rounds: int, out: str | None) -> dict[str, Any]:
    load0 = kit.loadavg()
    results: dict[str, Any] = {
        "machine": kit.machine(),
        "pending": pending,
        "probes": PROBES,
        "light_rate": LIGHT_RATE,
        "measure_s": measure,
        "rounds": rounds,
    }
    with contextlib.ExitStack() as stack:
        # Both servers stay up; their windows alternate, so both see the same machine (it is shared).
        runs = {"empty": start(0, 4_180_000_000, stack), "backlog": start(pending, 4_190_000_000, stack)}
        for round_ in range(rounds):
            for name, run in runs.items():
                with kit.timed(f"round {round_ + 1}: {name}"):
                    window = light_load(run["server"].port, run["node"], run["customers"], measure)
                unhold_all(run["client"], run["node"], run["customers"])
                run["result"]["windows"].append(window)
        for name, run in runs.items():
            result = run["result"]
            p99s = sorted(w["latency_ms"]["p99"] for w in result["windows"])
            result["p99_ms_median"] = p99s[len(p99s) // 2]
            result["p50_ms_median"] = sorted(w["latency_ms"]["p50"] for w in result["windows"])[
                len(p99s) // 2
            ]
            result["not_ok"] = sum(w["not_ok"] for w in result["windows"])
            result["pending_at_end"] = pending_count(run["root"])
            result["server_tracebacks"] = run["server"].tracebacks()
            results[name] = result
    results["p99_ratio"] = round(
        results["backlog"]["p99_ms_median"] / max(results["empty"]["p99_ms_median"], 1e-9), 3
    )
    results["loadavg_start"], results["loadavg_end"] = load0, kit.loadavg()
    results["command"] = (
        f".venv/bin/python bench/bench_outbox.py --pending {pending} --measure {measure:g} --rounds {rounds}"
    )
    kit.write_result(out, "outbox", results)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=100_000, help="pending deliveries in the backlog run")
    parser.add_argument("--measure", type=float, default=10.0, help="seconds per measured window")
    parser.add_argument("--rounds", type=int, default=3, help="alternating windows per server")
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    main(opts.pending, opts.measure, opts.rounds, opts.out)
