"""Fixtures of the SIP end-to-end suite: real `bridgeline serve --carrier sip` processes, real SIP
peers per test (`lab`), and what they heard.

A module may define `sip_config(ports) -> dict` for its server's SIP configuration (endpoints, trunk,
inbound numbers); `listen` and `rtp` are always filled in by the fixture, on `SIP_HOST` if the module
sets it (`"::1"`: SIP and RTP over IPv6). Such a module, and one that sets `OWN_SERVER = True` (to
start it with settings of its own), gets a server of its own; the other
modules share one server with the default configuration, each test placing calls of its own. When a
test fails, the server's stderr and every peer's logs are attached to its report.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "e2e"))  # e2ekit: the sim suite's HTTP and SDK helpers

from e2ekit import AUTH_ID, AUTH_TOKEN  # noqa: E402
from sipkit import LOOPBACK, Ports, ProcSet, SipServer, require_binaries  # noqa: E402
from siplab import Lab, Tones  # noqa: E402

LAB = pytest.StashKey[Lab]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        lab = item.stash.get(LAB, None)
        if lab is not None:
            report.sections.append(("bridgeline stderr", lab.server.stderr()[-8000:]))
            for name, text in lab.procs.reports():
                if not name.startswith("dumpcap"):
                    report.sections.append((name, text))
            for sipp in lab.sipps:
                report.sections.append((f"sipp {sipp.name} trace", sipp.report()[-6000:]))
    return report


@pytest.fixture(scope="session")
def ports() -> Ports:
    require_binaries()
    return Ports()


@pytest.fixture(scope="session")
def tones(tmp_path_factory: pytest.TempPathFactory) -> Tones:
    require_binaries()
    return Tones(tmp_path_factory.mktemp("tones"))


@contextmanager
def sip_server(
    root: Path, ports: Ports, config: dict[str, Any], sip_host: str = LOOPBACK
) -> Iterator[SipServer]:
    """A started server; at the end it must exit cleanly and leave no process behind."""
    procs = ProcSet(root / "logs")
    process = SipServer(root, ports, procs, config, auth=(AUTH_ID, AUTH_TOKEN), sip_host=sip_host)
    try:
        process.start()
        yield process
    finally:
        if process.proc is not None:
            status = process.stop()
            leaked = procs.stop_all()
            assert not leaked, f"processes left behind: {leaked}"
            # uvicorn re-raises the SIGTERM it handled once it has shut down: -SIGTERM is a clean exit too.
            assert status in (0, -15, 143), f"bridgeline exited with {status}:\n{process.stderr()[-4000:]}"


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory, ports: Ports) -> Iterator[SipServer]:
    with sip_server(tmp_path_factory.mktemp("bridgeline-sip-shared"), ports, {}) as process:
        yield process


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, ports: Ports
) -> Iterator[SipServer]:
    make_config = getattr(request.module, "sip_config", None)
    sip_host = getattr(request.module, "SIP_HOST", LOOPBACK)
    if make_config is None and not getattr(request.module, "OWN_SERVER", False) and sip_host == LOOPBACK:
        yield request.getfixturevalue("shared_server")
        return
    config = make_config(ports) if make_config is not None else {}
    with sip_server(tmp_path_factory.mktemp("bridgeline-sip"), ports, config, sip_host) as process:
        yield process


@pytest.fixture
def lab(
    request: pytest.FixtureRequest, server: SipServer, ports: Ports, tones: Tones, tmp_path: Path
) -> Iterator[Lab]:
    """This test's peers, capture, API and SDK clients; everything it started is stopped at the end."""
    offset = len(server.stderr())
    the_lab = Lab(server, ports, tones, tmp_path)
    request.node.stash[LAB] = the_lab
    try:
        yield the_lab
    finally:
        leaked = the_lab.close()
        assert not leaked, f"processes left behind: {leaked}"
    assert server.proc is not None and server.proc.running, f"bridgeline died:\n{server.stderr()[-4000:]}"
    new_stderr = server.stderr()[offset:]
    assert "Traceback" not in new_stderr, f"bridgeline logged an exception:\n{new_stderr[-6000:]}"
