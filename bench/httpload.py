"""A small HTTP/1.1 load generator: raw asyncio keep-alive connections, one request in flight on each.

Why not wrk or httpx: the action benchmarks need each connection to own one conference and cycle
through its own requests (hold, unhold, hold, ...), so every request is a real state change and none
is a refusal; wrk's Lua hooks are per thread, not per connection. httpx costs ~10x more CPU per
request than this loop, which would make the generator the bottleneck. Its ceiling is measured
in the same run (bench_http.py's "null server" calibration) so the reader can check it is not.

Two modes, both bounded in time (warm-up + measured window + a drain of at most DRAIN_S):
- closed loop (`rate` null): each connection sends its next request as soon as the previous answer
  arrives; latency = answer time - send time.
- open loop (`rate` R req/s in total): connection i sends its k-th request at start + phase_i + k*C/R;
  latency is measured from that intended time, so a slow answer that delays the next request is
  counted against the server (no coordinated omission).

Input: a JSON spec on stdin (see `main`); output: one JSON object on stdout.
Run: python bench/httpload.py < spec.json
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

DRAIN_S = 10.0


class Conn(asyncio.Protocol):
    def __init__(self, run: Run, index: int, requests: list[bytes], interval: float | None) -> None:
        self.run = run
        self.index = index
        self.requests = requests
        self.interval = interval  # open loop: seconds between this connection's requests
        self.k = 0
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.intended = 0.0
        self.busy = False
        self.finished = False  # `once` mode: the script has been sent once
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            self.run.errors += 1
        self.busy = False
        if not self.closed.done():
            self.closed.set_result(None)

    def send_next(self) -> None:
        run = self.run
        if run.stopping or self.transport is None or self.transport.is_closing():
            return
        if run.once and self.k >= len(self.requests):
            self.finished = True
            return
        now = time.perf_counter()
        if self.interval is not None:
            intended = run.start + run.phase(self.index) + self.k * self.interval
            if intended > now:
                run.loop.call_at(run.loop.time() + (intended - now), self.send_next)
                return
            self.intended = intended
        else:
            self.intended = now
        self.sent_at = now
        self.busy = True
        self.transport.write(self.requests[self.k % len(self.requests)])
        self.k += 1

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            at = head.find(b"content-length:")
            length = 0
            if at >= 0:
                eol = head.find(b"\r\n", at)
                length = int(head[at + 15 : eol if eol >= 0 else len(head)])
            total = end + 4 + length
            if len(buf) < total:
                return
            status = int(head[9:12])
            body = bytes(buf[end + 4 : total])
            del buf[:total]
            self.busy = False
            self.run.record(self.intended, time.perf_counter(), status, body)
            self.send_next()


class Run:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.loop = asyncio.get_running_loop()
        self.start = 0.0
        self.window = (0.0, 0.0)
        self.stopping = False
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.samples: dict[int, str] = {}  # one body per unexpected status
        self.errors = 0
        self.total = 0
        self.once = bool(spec.get("once"))
        self.last_done = 0.0
        conns = len(spec["connections"])
        self._phase_step = (conns / spec["rate"]) / conns if spec.get("rate") else 0.0

    def phase(self, index: int) -> float:
        return index * self._phase_step

    def record(self, intended: float, done: float, status: int, body: bytes) -> None:
        self.total += 1
        self.last_done = done
        if not self.window[0] <= intended < self.window[1]:
            return
        self.latencies.append(done - intended)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status not in self.spec.get("expect", [200, 201]) and status not in self.samples:
            self.samples[status] = body[:300].decode(errors="replace")


def encode(host: str, auth: str, method: str, path: str, body: Any) -> bytes:
    payload = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    """spec: host, port (or ports: one per connection, e.g. each to the node that owns its conference),
    auth ("Basic ..."), connections: [[{method, path, body?}, ...], ...],
    warmup_s, measure_s, rate (null: closed loop), expect (statuses counted as success),
    once (send each connection's script once, then stop; measure_s is then a time limit)."""
    loop = asyncio.get_running_loop()
    run = Run(spec)
    rate = spec.get("rate")
    n = len(spec["connections"])
    interval = n / rate if rate else None
    conns: list[Conn] = []
    ports = spec.get("ports") or [spec["port"]] * n
    for i, script in enumerate(spec["connections"]):
        requests = [encode(spec["host"], spec["auth"], r["method"], r["path"], r.get("body")) for r in script]
        _, conn = await loop.create_connection(
            lambda i=i, requests=requests: Conn(run, i, requests, interval), spec["host"], ports[i]
        )
        conns.append(conn)
    warmup, measure = float(spec["warmup_s"]), float(spec["measure_s"])
    run.start = time.perf_counter()
    run.window = (run.start + warmup, run.start + warmup + measure)
    for conn in conns:
        conn.send_next()
    await asyncio.sleep(warmup)
    cpu0, busy0 = time.process_time(), time.perf_counter()
    if run.once:  # every script sent once: the window ends with the last answer (or at measure_s)
        deadline = busy0 + measure
        while not all(c.finished or c.closed.done() for c in conns) and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        measure = max(run.last_done - run.start - warmup, 1e-9)
    else:
        await asyncio.sleep(measure)
    cpu1, busy1 = time.process_time(), time.perf_counter()
    run.stopping = True
    drain_end = time.perf_counter() + DRAIN_S
    while any(c.busy for c in conns) and time.perf_counter() < drain_end:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    undrained = sum(c.busy for c in conns)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    lat = sorted(x * 1000 for x in run.latencies)

    def pct(q: float) -> float:
        if not lat:
            return float("nan")
        return round(lat[max(0, min(len(lat) - 1, round(q / 100 * len(lat) + 0.5) - 1))], 3)

    expect = spec.get("expect", [200, 201])
    ok = sum(v for k, v in run.statuses.items() if k in expect)
    return {
        "connections": n,
        "rate": rate,
        "window_s": round(measure, 3),
        # perf_counter is CLOCK_MONOTONIC on Linux, shared by all processes: another process can
        # line its own records up with this window (bench_tick_isolation.py does).
        "window_perf_s": [round(run.window[0], 6), round(run.window[0] + measure, 6)],
        "answered": len(lat),
        "ok": ok,
        "not_ok": len(lat) - ok,
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "unexpected_samples": {str(k): v for k, v in run.samples.items()},
        "connection_errors": run.errors,
        "undrained": undrained,
        "ok_per_s": round(ok / measure, 1),
        "answered_per_s": round(len(lat) / measure, 1),
        "latency_ms": {
            "p50": pct(50),
            "p90": pct(90),
            "p99": pct(99),
            "p999": pct(99.9),
            "max": round(lat[-1], 3) if lat else None,
            "mean": round(sum(lat) / len(lat), 3) if lat else None,
        },
        "generator_cpu_util": round((cpu1 - cpu0) / (busy1 - busy0), 3),
    }


if __name__ == "__main__":
    spec = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(main(spec))))
