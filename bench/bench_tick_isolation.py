"""Media tick lateness and the longest gap in a leg's outgoing RTP, quiet and under full HTTP API load.

Measured from outside the server, so it works whatever runs the media tick (event loop, thread):
`bridgeline serve --carrier sip` (SQLite, pinned to one core) has a trunk whose proxy is this
script's UAS (bench_sip.Uas). One PHLO run and `call` actions put N members (2, then 10, each on a
fresh server) into one conference; the UAS answers each with an SDP naming its own UDP socket. Once
all are connected, a peer process on the other core (bench/tick_peer.py) takes those sockets, sends
each leg a 20 ms PCMU tone and records the arrival of every RTP packet the server sends it (kernel
receive timestamp and perf_counter_ns after recvmsg). bench/tick_analysis.py fits each leg's ideal
schedule t0 + 20 ms * k and gives, per phase: lateness against it (p50/p99/max; late = > 5 ms), the
longest inter-arrival gap and the gaps > 60 ms. The kernel timestamps are the figure (the peer's own
scheduling delays are not in them); the perf_counter view is kept beside it.

Phase A ("quiet", --phase seconds) then phase B ("api", as long): bench/httpload.py (other core)
drives the HTTP API at full rate: closed loop, --connections keep-alive connections (50, as in
bench_http.py: the more requests one event-loop turn serves, the longer a tick on that loop waits), each
with one request in flight. A quarter of them alternate hold / unhold of the customer of their own side
conference (2 members through the same trunk, RTP to a sink: the action changes that conference's
media routes, not the measured one's); the rest cycle through GET of each measured member's state,
GET of the node and GET of the PHLO. Phase B is httpload's measured window (its perf_counter marks).
The server's own media counters (`GET /metrics`, main account) are read before and after each phase.

Targets (issue #10): p99 lateness < 5 ms and no gap > 60 ms, quiet and under load.

Bounded: each phase lasts --phase seconds; the peer stops when told or after its time limit; only
the processes this script started are stopped. --quick: 3 s phases (about 25 s in all).
Run: OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_tick_isolation.py [--phase 15] [--quick]
     [--parties 2,10] [--connections 50] [--out f.json]
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchkit as kit
import tick_analysis
from bench_sip import Uas, sip_server
from tick_peer import Peer, to_monotonic

LATE_MS, GAP_MS = tick_analysis.LATE_MS, tick_analysis.GAP_MS
MEASURED_BASE, SIDE_BASE = 7_770_000, 6_660_000  # phone numbers +1415<7 digits>


# --------------------------------------------------------------------------- server side
def scrape(server: kit.Server) -> dict[str, float]:
    """The server's media numbers from /metrics (whatever its engine exports: tick, media, rtp)."""
    with server.client(timeout=10) as client:
        r = client.get("/metrics")
    if r.status_code != 200:
        return {}
    values: dict[str, float] = {}
    for line in r.text.splitlines():
        m = re.match(r"^(bridgeline_\w*(?:media|tick|rtp)\w*) ([-+0-9.eE]+|NaN)$", line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return values


def counter_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counters (`_total`) as differences; gauges as their value after."""
    return {
        name: round(value - before.get(name, 0.0), 3) if name.endswith("_total") else value
        for name, value in sorted(after.items())
    }


class TickUas(Uas):
    """bench_sip's UAS, giving each measured number its own RTP socket (the peer's, later) and
    recording the server's RTP address from each offer."""

    def __init__(self, measured: set[str], side: set[str]) -> None:
        super().__init__(measured | side)
        self.measured = measured
        self.sockets: dict[str, socket.socket] = {}  # call-id -> our RTP socket
        self.remote: dict[str, tuple[str, str, int]] = {}  # call-id -> (number, host, port)

    def answer_sdp(self, number: str, call_id: str, offer: bytes) -> bytes:
        if number not in self.measured:
            return self.sdp()  # side conferences: RTP to a socket nobody reads
        host = re.search(rb"^c=IN IP4 (\S+)", offer, re.M)
        port = re.search(rb"^m=audio (\d+)", offer, re.M)
        assert host and port, f"INVITE for {number} without an audio offer: {offer!r}"
        if call_id not in self.sockets:  # a retransmitted INVITE gets the same socket
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            self.sockets[call_id] = sock
        self.remote[call_id] = (number, host.group(1).decode(), int(port.group(1)))
        return self.sdp(self.sockets[call_id].getsockname()[1])

    def close_sockets(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
        self.remote.clear()


def numbers(base: int, n: int) -> list[str]:
    return [f"+1415{base + i:07d}" for i in range(n)]


@dataclass
class Setup:
    node: str  # /v1/phlo/{phlo}/multi_party_call/{node}
    phlo_id: str
    measured: list[str]
    side_customers: list[str] = field(default_factory=list)


def build_conferences(server: kit.Server, measured: list[str], side: list[tuple[str, str]]) -> Setup:
    """One conference of all `measured` numbers (a run, then `call` actions), and 2-member side
    conferences (one run each) for the hold/unhold load."""
    with server.client() as client:
        phlo_id, node_id = kit.create_phlo(client, max_participants=max(10, len(measured)))
        node = f"/v1/phlo/{phlo_id}/multi_party_call/{node_id}"
        run = f"/v1/account/{kit.AUTH_ID}/phlo/{phlo_id}"
        client.post(run, json={"agent": measured[0], "customer": measured[1]}).raise_for_status()
        kit.wait_connected(client, phlo_id, node_id, measured[:2], timeout=20)
        for number in measured[2:]:
            body = {"action": "call", "to": number, "role": "agent", "trigger_source": measured[0]}
            r = client.post(node, json=body)
            assert r.status_code == 201, f"call {number}: {r.status_code} {r.text}"
        kit.wait_connected(client, phlo_id, node_id, measured, timeout=30)
        for agent, customer in side:
            client.post(run, json={"agent": agent, "customer": customer}).raise_for_status()
        kit.wait_connected(client, phlo_id, node_id, [x for pair in side for x in pair], timeout=30)
    return Setup(node, phlo_id, measured, [customer for _, customer in side])


def api_scripts(setup: Setup, connections: int) -> list[list[dict[str, Any]]]:
    holders = len(setup.side_customers)
    scripts = [
        [
            {"method": "POST", "path": f"{setup.node}/members/{c}", "body": {"action": "hold"}},
            {"method": "POST", "path": f"{setup.node}/members/{c}", "body": {"action": "unhold"}},
        ]
        for c in setup.side_customers
    ]
    reads: list[dict[str, Any]] = [
        {"method": "GET", "path": f"{setup.node}/members/{m}"} for m in setup.measured
    ]
    reads += [{"method": "GET", "path": setup.node}, {"method": "GET", "path": f"/v1/phlo/{setup.phlo_id}"}]
    for i in range(connections - holders):
        scripts.append(reads[i % len(reads) :] + reads[: i % len(reads)])  # different starting points
    return scripts


class CpuSampler(threading.Thread):
    """A process's CPU time every 100 ms, to read its use over a window known only afterwards
    (httpload's measured window)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[int, float]] = []  # (perf_counter ns, CPU seconds)
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append((time.perf_counter_ns(), kit.process_cpu_s(self.pid)))
            if self.done.wait(0.1):
                return

    def __enter__(self) -> CpuSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join(5)

    def util(self, t0_ns: int, t1_ns: int) -> float | None:
        inside = [(t, c) for t, c in self.samples if t0_ns <= t <= t1_ns]
        if len(inside) < 2:
            return None
        (ta, ca), (tb, cb) = inside[0], inside[-1]
        return round((cb - ca) / ((tb - ta) / 1e9), 3)


# --------------------------------------------------------------------------- one load
def run_load_case(
    uas: TickUas, parties: int, side_n: int, opts: argparse.Namespace, work: Path
) -> dict[str, Any]:
    measured = numbers(MEASURED_BASE + 100 * parties, parties)
    side = list(
        zip(
            numbers(SIDE_BASE + 100 * parties, side_n),
            numbers(SIDE_BASE + 100 * parties + 50, side_n),
            strict=True,
        )
    )
    uas.measured = set(measured)
    uas.answer = set(measured) | {x for pair in side for x in pair}
    server = sip_server(uas.port, kit.free_port(socket.SOCK_DGRAM))
    peer: Peer | None = None
    try:
        with kit.timed(f"{parties}-party setup"):
            server.start()
            setup = build_conferences(server, measured, side)
        calls = sorted(uas.remote.items(), key=lambda kv: measured.index(kv[1][0]))
        assert sorted(n for _, (n, _, _) in calls) == sorted(measured), f"answered calls: {calls}"
        legs: list[dict[str, Any]] = [
            {"fd": uas.sockets[cid].fileno(), "host": h, "port": p, "number": n} for cid, (n, h, p) in calls
        ]
        budget = opts.warmup + 2 * opts.phase + 30  # the peer's own limit; it is stopped much sooner
        peer = Peer.spawn(legs, [leg["fd"] for leg in legs], budget, work / f"rtp-{parties}.npy")
        uas.close_sockets()  # the peer has its own copies
        time.sleep(opts.warmup)  # jitter buffers fill, latching, the peer's first packets
        phases: dict[str, dict[str, Any]] = {}
        windows: dict[str, tuple[int, int]] = {}

        before, cpu0, watch = (
            scrape(server),
            kit.process_cpu_s(server.pid),
            kit.Disturbance(server.pid, peer.proc.pid),
        )
        a0 = time.perf_counter_ns()
        time.sleep(opts.phase)
        a1 = time.perf_counter_ns()
        after, cpu1 = scrape(server), kit.process_cpu_s(server.pid)
        windows["quiet"] = (a0, a1)
        phases["quiet"] = {
            "server_counters": counter_deltas(before, after),
            "server_cpu_util": round((cpu1 - cpu0) / ((a1 - a0) / 1e9), 3),
            **watch.stop(),
        }

        spec = {
            "host": "127.0.0.1",
            "port": server.port,
            "auth": kit.basic_auth(),
            "connections": api_scripts(setup, opts.connections),
            "warmup_s": 1.0,
            "measure_s": opts.phase,
            "rate": None,  # closed loop: as fast as the server answers
            "expect": [200, 201],
        }
        before, t_load = scrape(server), time.monotonic()
        watch = kit.Disturbance(server.pid, peer.proc.pid)
        with CpuSampler(server.pid) as cpu:
            api = kit.run_load(spec)
        after, wall = scrape(server), time.monotonic() - t_load
        other = watch.stop()
        b0, b1 = (int(x * 1e9) for x in api["window_perf_s"])
        windows["api"] = (b0, b1)
        # The generator's CPU is known from inside it; what remains is the rest of the machine.
        other["other_cpu_util"] = round(
            max(other["other_cpu_util"] - api["generator_cpu_util"] * opts.phase / wall, 0), 3
        )
        phases["api"] = {
            "server_counters": counter_deltas(before, after),
            "counters_window_s": round(wall, 2),  # /metrics is read around the whole load, ramp included
            "server_cpu_util": cpu.util(b0, b1),
            **other,
            "api": {
                k: api[k]
                for k in (
                    "connections",
                    "window_s",
                    "ok",
                    "not_ok",
                    "ok_per_s",
                    "answered_per_s",
                    "latency_ms",
                    "statuses",
                    "unexpected_samples",
                    "connection_errors",
                    "generator_cpu_util",
                )
            },
        }
        peer_summary, records = peer.finish()
        peer = None
        assert records.size, "the peer received no RTP at all"
        kernel = tick_analysis.analyse(to_monotonic(records, peer_summary), parties, windows, "kernel")
        user = tick_analysis.analyse(records, parties, windows, "user")
        for name in windows:
            phases[name].update(kernel[name])
            phases[name]["user_clock"] = {
                k: user[name][k] for k in ("lateness_ms", "late_packets", "longest_gap_ms", "gaps_over_60ms")
            }
            p = phases[name]
            phases[name]["target_met"] = bool(
                p["packets"] and p["lateness_ms"]["p99"] < LATE_MS and p["gaps_over_60ms"] == 0
            )
        return {
            "parties": parties,
            "side_conferences": side_n,
            "phases": phases,
            "peer": peer_summary,
            "kernel_timestamps": bool((records[:, 2] != 0).all()),
            "server_tracebacks": server.tracebacks(),
        }
    finally:
        if peer is not None:
            peer.proc.kill()
            peer.proc.wait()
        uas.close_sockets()
        server.stop()


# --------------------------------------------------------------------------- main
def main(opts: argparse.Namespace) -> dict[str, Any]:
    kit.pin_self(kit.LOAD_CPU)  # this process, its UAS thread and the load generator: the load core
    work = Path(opts.work)
    work.mkdir(parents=True, exist_ok=True)
    parties = [int(x) for x in opts.parties.split(",") if x]
    assert all(2 <= n <= 250 for n in parties), "--parties: conference sizes from 2 to 250"
    side_n = max(1, opts.connections // 4)
    assert opts.connections > side_n, "--connections: at least 2"
    load0 = kit.loadavg()
    uas = TickUas(set(), set())
    uas.start()
    loads: list[dict[str, Any]] = []
    try:
        for n in parties:
            with kit.timed(f"{n}-party load"):
                loads.append(run_load_case(uas, n, side_n, opts, work))
            for name, p in loads[-1]["phases"].items():
                lat = p["lateness_ms"]
                print(
                    f"{n}-party {name}: {p['packets']} packets, lateness p50 {lat.get('p50')}"
                    f" p99 {lat.get('p99')} max {lat.get('max')} ms, {p['late_packets']} late,"
                    f" longest gap {p['longest_gap_ms']} ms,"
                    f" {p['gaps_over_60ms']} gaps > 60 ms"
                    + (f", API {p['api']['ok_per_s']}/s" if "api" in p else ""),
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        uas.stop()
    report = {
        "machine": kit.machine(),
        "phase_s": opts.phase,
        "warmup_s": opts.warmup,
        "connections": opts.connections,
        "hold_connections": side_n,
        "late_threshold_ms": LATE_MS,
        "gap_threshold_ms": GAP_MS,
        "loads": loads,
        "loadavg_start": load0,
        "loadavg_end": kit.loadavg(),
        "command": "OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_tick_isolation.py"
        + (" --quick" if opts.quick else f" --phase {opts.phase:g}")
        + f" --parties {opts.parties} --connections {opts.connections}",
    }
    kit.write_result(opts.out, "tick", report)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", type=float, default=15.0, help="seconds of each phase (quiet, API load)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of RTP before phase A")
    parser.add_argument("--quick", action="store_true", help="3 s phases, 1 s warm-up (a smoke run)")
    parser.add_argument("--parties", default="2,10", help="conference sizes, one load (and server) each")
    parser.add_argument(
        "--connections", type=int, default=50, help="HTTP connections in phase B (50: as bench_http.py)"
    )
    parser.add_argument("--work", default="/tmp/bridgeline-bench/tick", help="where the peer's records go")
    parser.add_argument("--out", default=None, help="JSON results file")
    opts = parser.parse_args()
    if opts.quick:
        opts.phase, opts.warmup = 3.0, 1.0
    main(opts)
