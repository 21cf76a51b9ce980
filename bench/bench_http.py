"""MPC and member actions per second through the HTTP API (sim carrier, SQLite in a data directory).

The server runs pinned to one core, the load generator (bench/httpload.py, 50 keep-alive connections,
closed loop) on the other. Each connection owns one live conference, so every request is a real state
change committed to the store, never a refusal:

- baseline: GET /v1/phlo/{id} (authenticated, reads the PHLO from the store), same server, same run;
- member actions: connection i alternates hold / unhold of its conference's customer;
- MPC + member actions: connection i alternates `call` of a third party (MPC action) and `hangup`
  of that party (member action); the sim carrier answers the dial in between, as a phone would.

The three loads run in rounds (baseline, members, MPC) so each figure sits next to its baseline;
per load the least disturbed window is kept (the machine is shared: other processes' CPU is
measured in each window), and a third round runs when a kept window was disturbed. Then the
baseline and hold/unhold at a light open-loop rate (latency without queueing).

Generator check: the same generator against a do-nothing asyncio HTTP server on the server's core
gives its ceiling (closed loop) and this machine's loopback latency floor (open loop).

Answers other than 201 are counted separately and reported. Each load is then run again under
py-spy for the profiles (not the measured runs: sampling pauses the server).

Run: .venv/bin/python bench/bench_http.py [--measure 5] [--out f.json] [--profile-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import benchkit as kit

CLIENTS = 50


def numbers(base: int, n: int) -> list[str]:
    return [f"+1415{base + i:07d}" for i in range(n)]


def start_conferences(client: Any, phlo_id: str, agents: list[str], customers: list[str]) -> None:
    for agent, customer in zip(agents, customers, strict=True):
        r = client.post(
            f"/v1/account/{kit.AUTH_ID}/phlo/{phlo_id}", json={"agent": agent, "customer": customer}
        )
        r.raise_for_status()


def window(server: kit.Server, spec: dict[str, Any]) -> dict[str, Any]:
    """Run the load; sample the server's CPU and the rest of the machine over the measured window."""
    marks: dict[str, Any] = {}

    def sample() -> None:
        time.sleep(float(spec["warmup_s"]))
        marks["cpu0"], marks["t0"] = kit.process_cpu_s(server.pid), time.monotonic()
        marks["disturbance"] = kit.Disturbance(server.pid)
        time.sleep(float(spec["measure_s"]))
        marks["cpu1"], marks["t1"] = kit.process_cpu_s(server.pid), time.monotonic()
        marks["other"] = marks["disturbance"].stop()

    sampler = threading.Thread(target=sample)
    sampler.start()
    result = kit.run_load(spec)
    sampler.join()
    result["server_cpu_util"] = round((marks["cpu1"] - marks["cpu0"]) / (marks["t1"] - marks["t0"]), 3)
    other = marks["other"]
    # The generator's own CPU is known from inside it; what remains is the rest of the machine.
    other["other_cpu_util"] = round(max(other["other_cpu_util"] - result["generator_cpu_util"], 0.0), 3)
    result.update(other)
    return result


def spec_for(
    server_port: int,
    scripts: list[list[dict[str, Any]]],
    warmup: float,
    measure: float,
    rate: float | None = None,
) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server_port,
        "auth": kit.basic_auth(),
        "connections": scripts,
        "warmup_s": warmup,
        "measure_s": measure,
        "rate": rate,
        "expect": [200, 201],
    }


# --------------------------------------------------------------------------- generator ceiling
NULL_BODY = b'{"api_id": "null", "error": ""}'
NULL_RESPONSE = b"HTTP/1.1 201 Created\r\ncontent-length: %d\r\ncontent-type: application/json\r\n\r\n%s" % (
    len(NULL_BODY),
    NULL_BODY,
)


def null_server_main(port: int) -> None:
    """Answer every request with a fixed 201: the cheapest server, to find the generator's ceiling."""

    class Null(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.buf = bytearray()

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).lower()
                at = head.find(b"content-length:")
                length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
                if len(self.buf) < end + 4 + length:
                    return
                del self.buf[: end + 4 + length]
                self.transport.write(NULL_RESPONSE)

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Null, "127.0.0.1", port)
        print("ready", flush=True)
        async with server:
            await asyncio.sleep(120)  # bounded: the parent kills it much earlier

    asyncio.run(serve())


def generator_ceiling(warmup: float, measure: float) -> dict[str, Any]:
    """The generator against the null server: its ceiling (closed loop), and the loopback latency
    floor of this machine (open loop at LIGHT_RATE)."""
    port = kit.free_port()
    proc = subprocess.Popen(
        [*kit.pin_prefix(kit.SERVER_CPU), kit.PYTHON, __file__, "--null-server", str(port)],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        scripts = [[{"method": "POST", "path": "/null", "body": {"action": "hold"}}]] * CLIENTS
        ceiling = kit.run_load(spec_for(port, scripts, warmup, measure))
        floor = kit.run_load(spec_for(port, scripts, warmup, measure, rate=LIGHT_RATE))
        return {"ceiling": ceiling, "floor": floor}
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- main
LIGHT_RATE = 200.0  # requests/s, open loop: latency without queueing
DISTURBED = 0.25  # other processes + hypervisor steal took more than a quarter of a core: retried


def disturbance(w: dict[str, Any]) -> float:
    return float(w["other_cpu_util"]) + float(w.get("steal_util", 0.0))


ROUNDS, MAX_ROUNDS = 2, 3
# The event loop's thread under uvloop (the server's loop): asyncio's Runner, then C.
UVLOOP_THREAD_FRAME = "runners.py:Runner.run"


def hold_scripts(node: str, customers: list[str]) -> list[list[dict[str, Any]]]:
    return [
        [
            {"method": "POST", "path": f"{node}/members/{c}", "body": {"action": "hold"}},
            {"method": "POST", "path": f"{node}/members/{c}", "body": {"action": "unhold"}},
        ]
        for c in customers
    ]


def reset_hold(client: Any, node: str, customers: list[str]) -> None:
    """A window may stop between hold and unhold: leave every customer connected again."""
    for c in customers:
        if client.get(f"{node}/members/{c}").json().get("status") == "on_hold":
            client.post(f"{node}/members/{c}", json={"action": "unhold"}).raise_for_status()


def reset_mpc(client: Any, node: str, third: list[str]) -> None:
    """... or between call and hangup: hang the third party up (404 when it is not live: fine)."""
    for x in third:
        client.post(f"{node}/members/{x}", json={"action": "hangup"})
    time.sleep(0.2)


def main(measure: float, warmup: float, out: str | None, profile_dir: Path) -> dict[str, Any]:
    load0 = kit.loadavg()
    results: dict[str, Any] = {
        "machine": kit.machine(),
        "clients": CLIENTS,
        "light_rate": LIGHT_RATE,
        "measure_s": measure,
        "warmup_s": warmup,
    }
    with kit.timed("generator ceiling and latency floor"):
        results["generator"] = generator_ceiling(warmup, measure / 2)
    with kit.Server() as server, server.client() as client:
        phlo_id, node_id = kit.create_phlo(client)
        node = f"/v1/phlo/{phlo_id}/multi_party_call/{node_id}"
        groups = {
            name: (numbers(base, CLIENTS), numbers(base + 1000, CLIENTS))
            for name, base in (("hold", 1_000_000), ("mpc", 2_000_000), ("profile", 3_000_000))
        }
        with kit.timed("start conferences"):
            for agents, customers in groups.values():
                start_conferences(client, phlo_id, agents, customers)
            for agents, customers in groups.values():
                kit.wait_connected(client, phlo_id, node_id, agents + customers)
        port = server.port
        third = numbers(4_000_000, CLIENTS)
        prof_third = numbers(5_000_000, CLIENTS)

        def mpc_scripts(agents: list[str], xs: list[str]) -> list[list[dict[str, Any]]]:
            return [
                [
                    {
                        "method": "POST",
                        "path": node,
                        "body": {"action": "call", "to": x, "role": "agent", "trigger_source": a},
                    },
                    {"method": "POST", "path": f"{node}/members/{x}", "body": {"action": "hangup"}},
                ]
                for a, x in zip(agents, xs, strict=True)
            ]

        loads: dict[str, tuple[list[list[dict[str, Any]]], Any]] = {
            "baseline": ([[{"method": "GET", "path": f"/v1/phlo/{phlo_id}"}]] * CLIENTS, None),
            "member_actions": (
                hold_scripts(node, groups["hold"][1]),
                lambda: reset_hold(client, node, groups["hold"][1]),
            ),
            "mpc_actions": (
                mpc_scripts(groups["mpc"][0], third),
                lambda: reset_mpc(client, node, third),
            ),
        }
        # Rounds of (baseline, member actions, MPC actions), so that each figure and its baseline are
        # measured close together; per figure the least disturbed window is kept, and a further
        # round is run while a kept window had other processes and steal taking more than DISTURBED.
        windows: dict[str, list[dict[str, Any]]] = {label: [] for label in loads}
        for round_no in range(MAX_ROUNDS):
            if round_no >= ROUNDS and all(
                min(disturbance(w) for w in ws) <= DISTURBED for ws in windows.values()
            ):
                break
            for label, (scripts, reset) in loads.items():
                if reset is not None:
                    reset()
                with kit.timed(f"{label}, round {round_no + 1}"):
                    windows[label].append(window(server, spec_for(port, scripts, warmup, measure)))
        for label, ws in windows.items():
            best = min(ws, key=lambda w: (disturbance(w) > DISTURBED, -w["ok_per_s"]))
            results[label] = {**best, "windows": [(w["ok_per_s"], disturbance(w)) for w in ws]}

        # Latency without queueing: the same requests at LIGHT_RATE, open loop.
        # Latency percentiles are what stalls of the VM hit first: a disturbed window is run again
        # (3 at most) and the least disturbed one kept.
        for label in ("baseline", "member_actions"):
            scripts, reset = loads[label]
            tries: list[dict[str, Any]] = []
            while len(tries) < MAX_ROUNDS and (not tries or min(map(disturbance, tries)) > DISTURBED):
                if reset is not None:
                    reset()
                with kit.timed(f"{label} at {LIGHT_RATE:g}/s"):
                    tries.append(window(server, spec_for(port, scripts, warmup, measure, rate=LIGHT_RATE)))
            best = min(tries, key=disturbance)
            results[f"{label}_light"] = {**best, "windows": [(w["ok_per_s"], disturbance(w)) for w in tries]}

        # Profiles: the same loads again (other conferences), sampled by py-spy.
        prof = {
            "member_actions": hold_scripts(node, groups["profile"][1]),
            "mpc_actions": mpc_scripts(groups["profile"][0], prof_third),
            "baseline": loads["baseline"][0],
        }
        profiles: dict[str, Any] = {}
        for label, scripts in prof.items():
            path = profile_dir / f"http-{label}.txt"
            proc = kit.start_profile(server.pid, measure, path, rate=100)
            time.sleep(0.3)
            with kit.timed(f"profile {label}"):
                run = kit.run_load(spec_for(port, scripts, 0.0, measure + 0.5))
            profile = kit.finish_profile(proc, path, 25)
            if profile.get("samples") == 0:  # uvloop runs callbacks from C: no asyncio _run_once frame
                profile = kit.analyse_collapsed(path, 25, thread_frame=UVLOOP_THREAD_FRAME)
            profiles[label] = {
                **profile,
                "ok_per_s_while_sampled": run["ok_per_s"],
            }
        results["profiles"] = profiles
        results["server_tracebacks"] = server.tracebacks()
        results["server_log_lines"] = server.stderr().count("\n")
    results["loadavg_start"], results["loadavg_end"] = load0, kit.loadavg()
    results["command"] = f".venv/bin/python bench/bench_http.py --measure {measure:g} --warmup {warmup:g}"
    kit.write_result(out, "http", results)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--null-server":
        null_server_main(int(sys.argv[2]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", type=float, default=5.0, help="seconds per measured window")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--out", default=None, help="JSON results file")
    parser.add_argument(
        "--profile-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "bridgeline-bench"
    )
    opts = parser.parse_args()
    main(opts.measure, opts.warmup, opts.out, opts.profile_dir)
