"""Fixtures of the end-to-end suite: real `bridgeline serve` processes on loopback ports.

- `server` / `api` / `sdk`: one server for the whole session (SQLite in a temporary data directory).
  Tests share it, so each one creates its own PHLO and uses addresses no other test uses.
- `server_factory`: servers of one test's own, for restarts and other stores.
- `receiver`: an HTTP receiver for event callbacks.

When a test fails, the stderr of the servers it used is attached to its report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2ekit import Api, CallbackReceiver, ServerProcess, ServerRun, sdk_client, server_runs

HERE = Path(__file__).parent
FAILED = pytest.StashKey[bool]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        item.stash[FAILED] = True
        for run in server_runs():
            if run.running or run.started_in.startswith(item.nodeid):
                report.sections.append((f"bridgeline {run.stderr_path.name}", run.stderr()[-6000:]))
    return report


def assert_no_tracebacks(run: ServerRun, offset: int = 0) -> None:
    stderr = run.stderr(offset)
    if "Traceback" in stderr:
        start = stderr.index("Traceback")
        context = stderr[max(0, stderr.rfind("\n", 0, max(0, start - 1)) - 300) : start + 3000]
        raise AssertionError(f"bridgeline {run.stderr_path.name} logged an exception:\n{context}")


@pytest.fixture(autouse=True)
def no_server_exceptions(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test during which a server logged a traceback (a 500, a crashed background task)."""
    offsets = {run.stderr_path: run.size() for run in server_runs()}
    yield
    if request.node.stash.get(FAILED, False):
        return  # already failed, with the servers' stderr attached
    for run in server_runs():
        assert_no_tracebacks(run, offsets.get(run.stderr_path, 0))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("bridgeline")
    process = ServerProcess(data_dir=root / "data", log_dir=root / "logs")
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def api(server: ServerProcess) -> Iterator[Api]:
    client = Api(server)
    yield client
    client.close()


@pytest.fixture(scope="session")
def sdk(server: ServerProcess) -> Any:
    return sdk_client(server.url)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Make (and start) servers of this test's own; all are stopped at the end of the test."""
    made: list[ServerProcess] = []

    def make(data_dir: Path | None = None, env: dict[str, str] | None = None) -> ServerProcess:
        process = ServerProcess(
            data_dir=data_dir or tmp_path / "data", log_dir=tmp_path / "logs", env=dict(env or {})
        )
        made.append(process)
        process.start()
        return process

    yield make
    for process in made:
        if process.running:
            process.stop()


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    with CallbackReceiver() as r:
        yield r
