"""How long healthy callbacks take while other receivers hang (issue 9, item 14).

One server (sim carrier, SQLite); HANGING receivers that accept connections and never answer, each
the callback URL of CONFERENCES_PER_HANGING conferences; then HEALTHY conferences whose callbacks go
to a receiver that answers 200 at once. Latency of a healthy callback = its arrival at the receiver
minus the event's own timestamp (both on this machine's clock). Reported: p50 / p90 / max over every
healthy callback, for each count of hanging receivers.

Bounded: fixed counts, every wait has a deadline. Run:
.venv/bin/python bench/bench_hanging_receivers.py [--hanging 0,1,10] [--out x.json]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import benchkit as kit

CONFERENCES_PER_HANGING = 4
HEALTHY = 30


class Healthy:
    """Answers 200 at once and records (arrival time, params) of every callback."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.arrivals.append((time.time(), dict(parse_qsl(body.decode()))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/cb"


def hang(listener: socket.socket, held: list[socket.socket]) -> None:
    with contextlib.suppress(OSError):
        while True:
            held.append(listener.accept()[0])


def measure(hanging: int) -> dict[str, Any]:
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(hanging)]
    held: list[socket.socket] = []
    for listener in listeners:
        threading.Thread(target=hang, args=(listener, held), daemon=True).start()
    healthy = Healthy()
    try:
        with kit.Server(env={"BRIDGELINE_WEBHOOK_TIMEOUT": "30"}) as server, server.client() as client:
            definition = {
                "name": "hanging",
                "nodes": [{"type": "multi_party_call", "callback_url": "{{callback}}"}],
                "run": {"dial": [{"to": "{{agent}}", "role": "agent"}]},
            }
            response = client.post("/v1/phlo", json=definition)
            response.raise_for_status()
            phlo_id = response.json()["phlo_id"]
            run_path = f"/v1/account/{kit.AUTH_ID}/phlo/{phlo_id}"
            number = iter(range(4_200_000_000, 4_300_000_000))
            for listener in listeners:
                url = f"http://127.0.0.1:{listener.getsockname()[1]}/hang"
                for _ in range(CONFERENCES_PER_HANGING):
                    client.post(
                        run_path, json={"agent": f"+1{next(number)}", "callback": url}
                    ).raise_for_status()
            time.sleep(1.0)  # the hanging attempts are open
            for _ in range(HEALTHY):
                client.post(run_path, json={"agent": f"+1{next(number)}", "callback": healthy.url()})
                time.sleep(0.05)
            deadline = time.monotonic() + 60
            while len(healthy.arrivals) < 3 * HEALTHY and time.monotonic() < deadline:
                time.sleep(0.1)
            latencies = [
                at - datetime.fromisoformat(params["timestamp"]).timestamp()
                for at, params in healthy.arrivals
            ]
    finally:
        healthy.server.shutdown()
        for sock in [*listeners, *held]:
            sock.close()
    return {"hanging": hanging, "healthy_callbacks": len(latencies), "latency_ms": kit.summary_ms(latencies)}


def main(counts: list[int], out: str | None) -> None:
    results = {"machine": kit.machine(), "runs": [measure(n) for n in counts]}
    results["command"] = (
        f".venv/bin/python bench/bench_hanging_receivers.py --hanging {','.join(map(str, counts))}"
    )
    kit.write_result(out, "hanging_receivers", results)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hanging", default="0,1,10", help="comma-separated counts of hanging receivers")
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    main([int(n) for n in opts.hanging.split(",")], opts.out)
