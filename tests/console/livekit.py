"""Shared by tests/console and tests/cli: a real server process (the e2e suite's own helpers),
an event-stream reader, and a check that the server logged no traceback during a test.

tests/e2e is put on sys.path so its `e2ekit` is imported as it is there (one module, one
number sequence), without copying it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

from e2ekit import AUTH_ID, AUTH_TOKEN, Api, ServerProcess  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

__all__ = ["ARTIFACTS", "AUTH_ID", "AUTH_TOKEN", "EventStream", "api", "no_server_tracebacks", "server"]


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("console")
    process = ServerProcess(data_dir=root / "data", log_dir=root / "logs")
    process.start()
    try:
        yield process
    finally:
        if process.running:
            process.stop()


@pytest.fixture(scope="session")
def api(server: ServerProcess) -> Iterator[Api]:
    client = Api(server)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def no_server_tracebacks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which the session server logged an exception."""
    if "server" not in request.fixturenames:
        yield
        return
    server: ServerProcess = request.getfixturevalue("server")
    before = len(server.stderr())
    yield
    logged = server.stderr()[before:]
    assert "Traceback" not in logged, f"the server logged an exception:\n{logged[-4000:]}"


class EventStream:
    """GET /v1/events/stream in a thread; `messages` collects (event name, data) as they come."""

    def __init__(self, base_url: str, params: dict[str, str] | None = None, auth: Any = None) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.comments: list[str] = []
        self.status: int | None = None
        self.ended = threading.Event()
        self._client = httpx.Client(
            base_url=base_url, auth=auth or (AUTH_ID, AUTH_TOKEN), timeout=httpx.Timeout(5, read=60)
        )
        self._params = params or {}
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with self._client.stream("GET", "/v1/events/stream", params=self._params) as response:
                self.status = response.status_code
                self._socket = response.extensions["network_stream"].get_extra_info("socket")
                name, data = "message", []
                for line in response.iter_lines():
                    if line.startswith(":"):
                        self.comments.append(line)
                    elif line.startswith("event:"):
                        name = line.partition(":")[2].strip()
                    elif line.startswith("data:"):
                        data.append(line.partition(":")[2].strip())
                    elif line == "" and data:
                        self.messages.append((name, json.loads("\n".join(data))))
                        name, data = "message", []
        except Exception:  # closed under the reader by close(), or the server went away
            pass
        finally:
            self.ended.set()

    def named(self, name: str) -> list[dict[str, Any]]:
        return [data for n, data in list(self.messages) if n == name]

    def events(self) -> list[tuple[str, str]]:
        """(mpc_uuid, event type) of the conference messages that carry an event."""
        return [(d["mpc_uuid"], d["event"]["event"]) for d in self.named("conference") if d["event"]]

    def close(self) -> None:
        # Closing the client would not wake the reader blocked in recv(); shutting the socket does.
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._client.close()
