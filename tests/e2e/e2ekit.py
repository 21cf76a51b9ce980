"""Helpers for the end-to-end suite: a real `bridgeline serve` process and ways to drive it.

Everything talks to the server over loopback HTTP, as a user's code would; nothing here imports
the server's own modules.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx
import plivo
import requests

# Plivo's shape: "MA" + 18 uppercase alphanumerics (the SDK refuses anything else client-side).
AUTH_ID = "MAE2ETESTACCOUNT0001"
AUTH_TOKEN = "e2e-secret-token-0123456789"
PLAYBACK_MS = 400  # how long a simulated voicemail message plays
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")


# --------------------------------------------------------------------------- polling
def wait_until(predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.02, what: str = "") -> T:
    """Poll `predicate` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what or predicate!r}; last value: {last!r}")
        time.sleep(interval)


# --------------------------------------------------------------------------- addresses
_numbers = itertools.count(1)


def number() -> str:
    """A phone number no other test uses (virtual phones are shared by the whole server)."""
    return f"+1415{next(_numbers) + 3_000_000:07d}"


# --------------------------------------------------------------------------- guards
class UnexpectedStatus(AssertionError):
    pass


def _guard(method: str, url: str, status: int) -> None:
    """No response of Bridgeline may ever be a 5xx or a 204 (Plivo's SDKs choke on both)."""
    if status >= 500 or status == 204:
        raise UnexpectedStatus(f"{method} {url} answered {status}")


def _httpx_guard(response: httpx.Response) -> None:
    _guard(response.request.method, str(response.request.url), response.status_code)


def _requests_guard(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    _guard(str(response.request.method), str(response.url), response.status_code)


def guarded_client(base_url: str, auth: tuple[str, str] | None = (AUTH_ID, AUTH_TOKEN)) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        auth=auth,
        timeout=10,
        follow_redirects=False,
        event_hooks={"response": [_httpx_guard]},
    )


def sdk_client(base_url: str, auth_id: str = AUTH_ID, auth_token: str = AUTH_TOKEN) -> Any:
    """Plivo's own PHLO client, pointed at Bridgeline: the only change a user makes."""
    client = plivo.phlo.RestClient(auth_id, auth_token)
    client.phlo_base_uri = f"{base_url}/v1"
    client.session.hooks["response"].append(_requests_guard)
    return client


def sdk_mpc(sdk: Any, phlo: Phlo) -> Any:
    """`client.phlo.get(phlo_id).multi_party_call(node_id)`: the SDK's MPC node object."""
    return sdk.phlo.get(phlo.phlo_id).multi_party_call(phlo.node_id)


# --------------------------------------------------------------------------- the server process
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServerRun:
    """One start of a server process, and its stderr file."""

    server: ServerProcess
    stderr_path: Path
    started_in: str

    def stderr(self, offset: int = 0) -> str:
        if not self.stderr_path.exists():
            return ""
        with self.stderr_path.open("rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")

    def size(self) -> int:
        return self.stderr_path.stat().st_size if self.stderr_path.exists() else 0

    @property
    def running(self) -> bool:
        return self.server.running and self.server.stderr_path == self.stderr_path


_runs: list[ServerRun] = []


def server_runs() -> list[ServerRun]:
    return list(_runs)


@dataclass
class ServerProcess:
    """One `bridgeline serve` process; `start()` again after `stop()` reuses the data directory."""

    data_dir: Path
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    stderr_path: Path | None = None
    starts: int = 0
    clients: list[httpx.Client] = field(default_factory=list)  # closed by stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stderr(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")

    def start(self) -> None:
        assert not self.running, "already running"
        self.starts += 1
        self.port = free_port()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = self.log_dir / f"server-{self.port}-{self.starts}.stderr"
        stdout_path = self.log_dir / f"server-{self.port}-{self.starts}.stdout"
        env = {
            **os.environ,
            "BRIDGELINE_AUTH_ID": AUTH_ID,
            "BRIDGELINE_AUTH_TOKEN": AUTH_TOKEN,
            "BRIDGELINE_SIM_ANSWER_DELAY_MS": "0",
            "BRIDGELINE_SIM_PLAYBACK_MS": str(PLAYBACK_MS),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        if "DATABASE_URL" not in self.env:
            env.pop("DATABASE_URL", None)
        command = [
            sys.executable,
            "-m",
            "bridgeline.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--carrier",
            "sim",
        ]
        with self.stderr_path.open("wb") as err, stdout_path.open("wb") as out:
            self.process = subprocess.Popen(
                command, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
        _runs.append(ServerRun(self, self.stderr_path, os.environ.get("PYTEST_CURRENT_TEST", "")))
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"server exited with {self.process.returncode} during startup:\n{self.stderr()}"
                    )
                try:
                    response = client.get(f"{self.url}/health")
                    if response.status_code == 200 and response.json() == {"status": "ok"}:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        self.kill()
        raise AssertionError(f"server did not answer /health within {STARTUP_TIMEOUT} s:\n{self.stderr()}")

    def stop(self) -> int:
        """SIGTERM, and SIGKILL if it has not exited in time. Returns the exit status."""
        assert self.process is not None
        for client in self.clients:
            client.close()
        self.clients.clear()
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
                raise AssertionError(
                    f"server ignored SIGTERM for {STOP_TIMEOUT} s and was killed:\n{self.stderr()}"
                ) from None
        assert process.poll() is not None
        # uvicorn re-raises the SIGTERM it handled once it has shut down, so -SIGTERM is a clean exit too.
        assert process.returncode in (0, -signal.SIGTERM), (
            f"server exited with {process.returncode}:\n{self.stderr()}"
        )
        return process.returncode

    def kill(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)


def add_account(server: ServerProcess) -> tuple[str, str]:
    """`bridgeline account add` on the server's store, as an operator runs it; (auth_id, token)."""
    env = {
        **os.environ,
        "BRIDGELINE_AUTH_ID": AUTH_ID,
        "BRIDGELINE_AUTH_TOKEN": AUTH_TOKEN,
        **server.env,
    }
    command = [sys.executable, "-m", "bridgeline.cli", "account", "add", "--data-dir", str(server.data_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    auth_id, token = values["BRIDGELINE_AUTH_ID"], values["BRIDGELINE_AUTH_TOKEN"]
    assert re.fullmatch(r"MA[A-Z0-9]{18}", auth_id), auth_id
    return auth_id, token


# --------------------------------------------------------------------------- driving the API
class Api:
    """The server's HTTP API with the main account's credentials, plus Bridgeline's extensions."""

    def __init__(self, server: ServerProcess, auth: tuple[str, str] = (AUTH_ID, AUTH_TOKEN)) -> None:
        self.server = server
        self.auth_id = auth[0]
        self.http = guarded_client(server.url, auth=auth)
        server.clients.append(self.http)

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        self.http.close()

    # PHLOs ------------------------------------------------------------------
    def create_phlo(
        self,
        *,
        dial: list[tuple[str, str]] | None = None,
        mode: str = "sequential",
        with_run: bool = True,
        phlo_id: str | None = None,
        **node: Any,
    ) -> Phlo:
        """A one-node PHLO; `node` holds MPC settings (ring_timeout=1, max_participants=3, ...)."""
        if dial is None:
            dial = [("{{agent}}", "agent"), ("{{customer}}", "customer")]
        definition: dict[str, Any] = {
            "name": "e2e",
            "nodes": [{"name": "Multi-Party Call_1", "type": "multi_party_call", **node}],
        }
        if phlo_id is not None:
            definition["phlo_id"] = phlo_id
        if with_run:
            definition["run"] = {"mode": mode, "dial": [{"to": to, "role": role} for to, role in dial]}
        response = self.http.post("/v1/phlo", json=definition)
        assert response.status_code == 201, response.text
        body = response.json()
        return Phlo(self, body["phlo_id"], body["nodes"][0]["node_id"])

    # virtual phones ---------------------------------------------------------
    def phone(self, address: str, answer: str = "answer", delay_ms: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"answer": answer}
        if delay_ms is not None:
            body["answer_delay_ms"] = delay_ms
        response = self.http.put(f"/v1/sim/phones/{address}", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def phone_view(self, address: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/sim/phones/{address}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def phone_calls(self, address: str) -> list[dict[str, Any]]:
        """The phone's calls from this account's conferences; none when the account has no such phone."""
        response = self.http.get(f"/v1/sim/phones/{address}")
        if response.status_code == 404:  # neither configured nor dialed by this account
            return []
        assert response.status_code == 200, response.text
        return list(response.json()["calls"])

    def phone_hears(self, address: str, mpc_uuid: str) -> tuple[set[str], str | None] | None:
        """What the phone hears on its call in that conference (other phones, music), or None."""
        calls = [c for c in self.phone_calls(address) if c["mpc_uuid"] == mpc_uuid]
        assert len(calls) <= 1, calls
        if not calls:
            return None
        return set(calls[0]["hears"]), calls[0]["music"]

    def hang_up_phone(self, address: str) -> httpx.Response:
        return self.http.post(f"/v1/sim/phones/{address}/hangup")


@dataclass
class Phlo:
    api: Api
    phlo_id: str
    node_id: str

    @property
    def http(self) -> httpx.Client:
        return self.api.http

    @property
    def node_path(self) -> str:
        return f"/v1/phlo/{self.phlo_id}/multi_party_call/{self.node_id}"

    def member_path(self, address: str) -> str:
        return f"{self.node_path}/members/{address}"

    # runs -------------------------------------------------------------------
    def run(self, **payload: Any) -> dict[str, Any]:
        response = self.post_run(payload)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def post_run(self, payload: Any) -> httpx.Response:
        return self.http.post(f"/v1/account/{self.api.auth_id}/phlo/{self.phlo_id}", json=payload)

    def get_run(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/phlo/{self.phlo_id}/runs/{run_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def connect(self, agent: str, customer: str) -> dict[str, Any]:
        """Run the PHLO and wait until agent and customer talk to each other; returns the run."""
        run = self.run(agent=agent, customer=customer)
        self.wait_member(agent, status="connected", hears=[customer])
        self.wait_member(customer, status="connected", hears=[agent])
        return run

    # state ------------------------------------------------------------------
    def instances(self) -> list[dict[str, Any]]:
        response = self.http.get(f"{self.node_path}/instances")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["meta"]["count"] == len(body["objects"])
        return list(body["objects"])

    def conference(self, mpc_uuid: str | None = None) -> dict[str, Any]:
        objects = self.instances()
        if mpc_uuid is None:
            live = [o for o in objects if o["status"] == "live"]
            assert len(live) == 1, objects
            return live[0]
        found = [o for o in objects if o["mpc_uuid"] == mpc_uuid]
        assert len(found) == 1, objects
        return found[0]

    def member(self, address: str) -> dict[str, Any]:
        response = self.http.get(self.member_path(address))
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_member(self, address: str, timeout: float = 5.0, **expected: Any) -> dict[str, Any]:
        """Wait until the member's view has every expected field (`hears` compared as a set)."""

        def matches() -> dict[str, Any] | None:
            response = self.http.get(self.member_path(address))
            if response.status_code != 200:
                return None
            view = dict(response.json())
            for key, value in expected.items():
                actual = view.get(key)
                if key == "hears":
                    if sorted(actual or []) != sorted(value):
                        return None
                elif actual != value:
                    return None
            return view

        return wait_until(matches, timeout=timeout, what=f"member {address} with {expected}")

    def wait_newest_ended(self, timeout: float = 5.0) -> dict[str, Any]:
        """The node's newest conference, once it has ended."""

        def ended() -> dict[str, Any] | None:
            objects = self.instances()
            return objects[0] if objects and objects[0]["status"] == "ended" else None

        return wait_until(ended, timeout=timeout, what="the newest conference to end")

    def wait_ended(self, mpc_uuid: str, timeout: float = 5.0) -> dict[str, Any]:
        return wait_until(
            lambda: (c := self.conference(mpc_uuid))["status"] == "ended" and c,
            timeout=timeout,
            what=f"conference {mpc_uuid} to end",
        )

    # raw actions ------------------------------------------------------------
    def action(self, body: Any = None, **fields: Any) -> httpx.Response:
        return self.http.post(self.node_path, json=fields if body is None else body)

    def member_action(self, address: str, action: str) -> httpx.Response:
        return self.http.post(self.member_path(address), json={"action": action})


def hearing(view: dict[str, Any]) -> tuple[set[str], str | None]:
    return set(view["hears"]), view["music"]


def assert_plivo_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """Plivo's error shape: JSON `{"api_id": "...", "error": "<non-empty text>"}`."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].split(";")[0].strip() == "application/json"
    body = response.json()
    assert set(body) == {"api_id", "error"}, body
    assert isinstance(body["api_id"], str) and body["api_id"]
    assert isinstance(body["error"], str) and body["error"]
    return dict(body)


def assert_action_ok(response: httpx.Response) -> None:
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["error"] == "" and body["api_id"], body


# --------------------------------------------------------------------------- callbacks
@dataclass
class Callback:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    params: dict[str, str]
    answered: int


class CallbackReceiver:
    """A tiny HTTP server on 127.0.0.1 that records every POST and answers as `respond` says."""

    def __init__(self, respond: Callable[[int], int] = lambda index: 200) -> None:
        self.respond = respond  # called with the POST's index, outside the lock: it may hold a POST
        self.received: list[Callback] = []
        self._lock = threading.Lock()
        self._posts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                split = urlsplit(self.path)
                with receiver._lock:
                    index, receiver._posts = receiver._posts, receiver._posts + 1
                status = receiver.respond(index)
                with receiver._lock:
                    receiver.received.append(
                        Callback(
                            path=split.path,
                            query=split.query,
                            headers={k: v for k, v in self.headers.items()},
                            body=body,
                            params=dict(parse_qsl(body.decode(), keep_blank_values=True)),
                            answered=status,
                        )
                    )
                payload = b"ok"
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/events") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def snapshot(self) -> list[Callback]:
        with self._lock:
            return list(self.received)

    def delivered(self, mpc_uuid: str | None = None) -> list[Callback]:
        """Accepted (2xx) callbacks, in arrival order."""
        return [
            c
            for c in self.snapshot()
            if 200 <= c.answered < 300 and (mpc_uuid is None or c.params.get("mpc_uuid") == mpc_uuid)
        ]

    def events(self, mpc_uuid: str | None = None) -> list[tuple[int, str]]:
        """(sequence, event) of the accepted callbacks, sorted by sequence."""
        return sorted((int(c.params["sequence"]), c.params["event"]) for c in self.delivered(mpc_uuid))


def iter_routes(phlo: Phlo, address: str) -> Iterator[tuple[str, str]]:
    """(method, path) for every route of the API, with real identifiers."""
    p = phlo
    yield "GET", "/health"
    yield "GET", "/openapi.json"
    yield "POST", f"/v1/account/{AUTH_ID}/phlo/{p.phlo_id}"
    yield "GET", "/v1/phlo"
    yield "POST", "/v1/phlo"
    yield "GET", f"/v1/phlo/{p.phlo_id}"
    yield "DELETE", f"/v1/phlo/{p.phlo_id}"
    yield "GET", f"/v1/phlo/{p.phlo_id}/runs/no-such-run"
    yield "GET", f"{p.node_path}/instances"
    yield "GET", p.member_path(address)
    yield "POST", p.member_path(address)
    yield "GET", p.node_path
    yield "POST", p.node_path
    yield "POST", f"/v1/sim/phones/{address}/hangup"
    yield "PUT", f"/v1/sim/phones/{address}"
    yield "GET", f"/v1/sim/phones/{address}"


@contextlib.contextmanager
def serving(root: Path, env: dict[str, str]) -> Iterator[ServerProcess]:
    """A server of one test's (or module's) own under `root`, with extra environment; stopped after."""
    server = ServerProcess(data_dir=root / "data", log_dir=root / "logs", env=env)
    server.start()
    try:
        yield server
    finally:
        server.stop()
