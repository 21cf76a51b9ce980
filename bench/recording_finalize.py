"""How soon a recording is finished after its conference ends (issue #13: 100 concurrent conferences'
recordings finalize within 2 s of their end). Not a test: a measurement of the real server.

Per format (WAV, then MP3): one `bridgeline serve --carrier sim` (SQLite in a fresh data directory,
pinned like every bench server), a PHLO whose node records (`record=true`, `record_file_format`,
`recording_callback_url` pointing at a receiver in this process), N conferences started through the
API (agent + customer, each a sim phone saying its tone). Once every recording's MPCRecordingInitiated
callback has arrived, they record RECORD_S seconds; then every member is hung up through the API
(HANGUP_CLIENTS connections, both members of a conference back to back). Per recording:
- end: when the request that ended its conference was sent (the last member hangup the server
  accepted; a conference ends when its last member leaves);
- callback: when its MPCRecordingCompleted callback reached the receiver (the user's view: the row
  finished, the event committed to the outbox and delivered, V3-signed);
- row: when its row was finished (`recording_end_ms` from the recordings API, read after the run,
  so nothing polls the server meanwhile): the file closed and stored, the row `completed`.
Both are also given from the server's own stop of the recording (the Completed callback's
RecordingEndTime: when the core processed the conference's end), which leaves out the hangup
request's wait in a loaded server. Every time is this machine's wall clock (time.time(), the
server's clock too). Prints p50/p99/max of each, and each file's duration (RecordingDurationMs, from
the samples written) minus its span on the server's clock. The callbacks all go to one receiver,
so the webhook dispatcher's per-destination limits (4 attempts in flight, 32 queued; more is put
off) shape the callback figure. Bounded: N, RECORD_S and timeouts; it stops only the server it
started.

Run: .venv/bin/python bench/recording_finalize.py [--conferences 100] [--record-s 3] [--formats wav,mp3]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import benchkit as kit
import httpx

HANGUP_CLIENTS = 8
TIMEOUT_S = 120.0


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the server closing its keep-alive connections at its end: not a measurement's concern


class Receiver:
    """Recording callbacks, each with the wall-clock time it arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived: list[tuple[float, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.time()
                params = dict(parse_qsl(body.decode(), keep_blank_values=True))
                with receiver.lock:
                    receiver.arrived.append((now, params))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/recordings"

    def events(self, name: str) -> dict[str, tuple[float, dict[str, str]]]:
        """MPC UUID -> (arrival, params) of the first callback named `name` for it."""
        found: dict[str, tuple[float, dict[str, str]]] = {}
        with self.lock:
            for at, params in self.arrived:
                if params.get("EventName") == name:
                    found.setdefault(params["MPCUUID"], (at, params))
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate: Any, what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def hang_up(server: kit.Server, node: str, pairs: list[tuple[str, str, str]]) -> dict[str, float]:
    """Hang up every member; MPC UUID -> when the request that ended its conference was sent."""

    def one_conference(client: httpx.Client, pair: tuple[str, str, str]) -> tuple[str, float]:
        mpc_uuid, agent, customer = pair
        ended = float("nan")
        for address in (customer, agent):
            sent = time.time()
            r = client.post(f"{node}/members/{address}", json={"action": "hangup"})
            if r.status_code == 201:
                ended = sent  # the last one accepted is the one the conference ended with
        return mpc_uuid, ended

    clients = [server.client() for _ in range(HANGUP_CLIENTS)]
    try:
        with concurrent.futures.ThreadPoolExecutor(HANGUP_CLIENTS) as pool:
            futures = [
                pool.submit(one_conference, clients[i % HANGUP_CLIENTS], p) for i, p in enumerate(pairs)
            ]
            return dict(f.result() for f in futures)
    finally:
        for client in clients:
            client.close()


def finished_rows(client: httpx.Client) -> dict[str, dict[str, Any]]:
    """MPC UUID -> its recording's row, every page (the API's pages hold 20)."""
    rows: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        body = client.get("/v1/recordings", params={"limit": 20, "offset": offset}).json()
        for row in body["objects"]:
            rows[row["mpc_uuid"]] = row
        offset += len(body["objects"])
        if not body["objects"] or offset >= body["meta"]["total_count"]:
            return rows


def quantiles(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {
        "n": len(v),
        "p50_s": round(kit.percentile(v, 50), 3),
        "p99_s": round(kit.percentile(v, 99), 3),
        "max_s": round(v[-1], 3) if v else float("nan"),
    }


def measure(fmt: str, conferences: int, record_s: float) -> dict[str, Any]:
    receiver = Receiver()
    result: dict[str, Any] = {"format": fmt, "conferences": conferences, "record_s": record_s}
    try:
        with kit.Server() as server, server.client(timeout=60) as client:
            phlo_id, node_id = kit.create_phlo(
                client, record=True, record_file_format=fmt, recording_callback_url=receiver.url
            )
            node = f"/v1/phlo/{phlo_id}/multi_party_call/{node_id}"
            run_path = f"/v1/account/{kit.AUTH_ID}/phlo/{phlo_id}"
            agents = [f"+1415{5_000_000 + i:07d}" for i in range(conferences)]
            customers = [f"+1628{6_000_000 + i:07d}" for i in range(conferences)]
            for agent, customer in zip(agents, customers, strict=True):
                client.post(run_path, json={"agent": agent, "customer": customer}).raise_for_status()
            kit.wait_connected(client, phlo_id, node_id, agents + customers, timeout=TIMEOUT_S)
            wait_for(
                lambda: len(receiver.events("MPCRecordingInitiated")) >= conferences, "recordings to start"
            )
            started = receiver.events("MPCRecordingInitiated")
            instances = client.get(f"{node}/instances", params={"limit": conferences}).json()["objects"]
            pairs = []
            for conf in instances:
                roles = {m["role"]: m["member_address"] for m in conf["members"]}
                pairs.append((conf["mpc_uuid"], roles["agent"], roles["customer"]))
            assert len(pairs) == conferences and {p[0] for p in pairs} == set(started), "one recording each"
            time.sleep(record_s)
            cpu0 = kit.process_cpu_s(server.pid)
            ended = hang_up(server, node, pairs)
            wait_for(
                lambda: len(receiver.events("MPCRecordingCompleted")) >= conferences, "Completed callbacks"
            )
            result["server_cpu_s_from_hangup"] = round(kit.process_cpu_s(server.pid) - cpu0, 2)
            completed = receiver.events("MPCRecordingCompleted")
            rows = finished_rows(client)
            to_callback = [completed[u][0] - ended[u] for u in ended]
            to_row = [rows[u]["recording_end_ms"] / 1000 - ended[u] for u in ended]
            result["states"] = sorted({row["state"] for row in rows.values()})
            hangups = sorted(ended.values())
            result["hangups_spread_s"] = round(hangups[-1] - hangups[0], 3)
            result["end_to_callback"] = quantiles(to_callback)
            result["end_to_row"] = quantiles(to_row)
            # The server's own end of each recording (its stop, RecordingEndTime) to the same two marks.
            stopped = {u: iso_s(completed[u][1]["RecordingEndTime"]) for u in ended}
            result["stop_to_callback"] = quantiles([completed[u][0] - stopped[u] for u in ended])
            result["stop_to_row"] = quantiles(
                [rows[u]["recording_end_ms"] / 1000 - stopped[u] for u in ended]
            )
            # Each file's length against its span on the server's clock (RecordingStartTime to EndTime:
            # the core's start and stop; the tap starts and stops once they are committed).
            diffs = []
            for _, params in completed.values():
                span_ms = 1000 * (iso_s(params["RecordingEndTime"]) - iso_s(params["RecordingStartTime"]))
                diffs.append(int(params["RecordingDurationMs"]) - span_ms)
            diffs.sort()
            result["duration_minus_span_ms"] = {
                "min": round(diffs[0]),
                "p50": round(kit.percentile(diffs, 50)),
                "max": round(diffs[-1]),
            }
            result["failed"] = len(receiver.events("MPCRecordingFailed"))
            result["server_tracebacks"] = server.tracebacks()
    finally:
        receiver.close()
    return result


def iso_s(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conferences", type=int, default=100)
    parser.add_argument("--record-s", type=float, default=3.0)
    parser.add_argument("--formats", default="wav,mp3")
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    load0 = kit.loadavg()
    results = {fmt: measure(fmt, opts.conferences, opts.record_s) for fmt in opts.formats.split(",")}
    for fmt, r in results.items():
        cb, row, scb, srow = r["end_to_callback"], r["end_to_row"], r["stop_to_callback"], r["stop_to_row"]
        dur = r["duration_minus_span_ms"]
        print(
            f"{fmt}: {r['conferences']} conferences, {r['record_s']} s recorded, hangups spread over"
            f" {r['hangups_spread_s']} s; end -> MPCRecordingCompleted callback: p50 {cb['p50_s']} s,"
            f" p99 {cb['p99_s']} s, max {cb['max_s']} s; end -> row completed: p50 {row['p50_s']} s,"
            f" p99 {row['p99_s']} s, max {row['max_s']} s; from the server's stop (RecordingEndTime):"
            f" callback p50 {scb['p50_s']} s, p99 {scb['p99_s']} s, row p50 {srow['p50_s']} s,"
            f" p99 {srow['p99_s']} s; failed {r['failed']};"
            f" file duration - span (ms) min/p50/max {dur['min']}/{dur['p50']}/{dur['max']};"
            f" server CPU from the hangups {r['server_cpu_s_from_hangup']} s;"
            f" tracebacks {r['server_tracebacks']}"
        )
    print(f"load average {load0} at the start, {kit.loadavg()} at the end")
    if opts.out:
        kit.write_result(opts.out, "recording_finalize", {"results": results, "machine": kit.machine()})
    else:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
