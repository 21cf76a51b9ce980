"""`bridgeline calls watch`: live events from the server's stream, bounded by --count / --timeout."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ekit import Api, ServerProcess, number, wait_until
from livekit import AUTH_ID, AUTH_TOKEN
from test_cli_calls import BRIDGELINE, cli

EVENT_LINE = re.compile(r"(\d\d:\d\d:\d\d\.\d{3})  ([0-9a-f]{8})  #(\d+) +(\w+) *(.*)")


class Watcher:
    """`bridgeline calls watch ...` running in the background; stderr says when it is subscribed."""

    def __init__(self, url: str, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGELINE_")}
        env.update(BRIDGELINE_AUTH_ID=AUTH_ID, BRIDGELINE_AUTH_TOKEN=AUTH_TOKEN, BRIDGELINE_URL=url)
        self.process = subprocess.Popen(
            [BRIDGELINE, "calls", "watch", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        first = self.process.stderr.readline()  # blocks until subscribed (or failed)
        assert first == f"watching {url} (Ctrl-C to stop)\n", first + self.process.stderr.read()

    def finish(self, timeout: float = 15) -> tuple[int, list[str], str]:
        stdout, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, stdout.splitlines(), stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    started: list[Watcher] = []
    yield started
    for watcher in started:
        watcher.kill()


def test_watch_prints_one_line_per_event_and_stops_after_count(api: Api, watchers: list[Watcher]) -> None:
    phlo = api.create_phlo()
    other = api.create_phlo()
    watcher = Watcher(api.url, "--phlo", phlo.phlo_id, "--count", "9", "--timeout", "20")
    watchers.append(watcher)
    other.connect(number(), number())  # another PHLO: filtered out
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    assert phlo.member_action(customer, "hold").status_code == 201
    assert phlo.member_action(customer, "unhold").status_code == 201

    code, lines, stderr = watcher.finish()
    assert code == 0, stderr
    expected = [
        ("conference_started", ""),
        ("member_dialing", f"{agent} (agent)  status=dialing"),
        ("member_ringing", f"{agent} (agent)  status=dialing"),
        ("member_connected", f"{agent} (agent)  status=connected"),
        ("member_dialing", f"{customer} (customer)  status=dialing"),
        ("member_ringing", f"{customer} (customer)  status=dialing"),
        ("member_connected", f"{customer} (customer)  status=connected"),
        ("member_held", f"{customer} (customer)  status=on_hold"),
        ("member_unheld", f"{customer} (customer)  status=connected"),
    ]
    assert len(lines) == len(expected), lines
    mpc_uuid = phlo.conference()["mpc_uuid"]
    for sequence, (line, (event, rest)) in enumerate(zip(lines, expected, strict=True), start=1):
        match = EVENT_LINE.fullmatch(line)
        assert match is not None, line
        assert match.group(2, 3, 4, 5) == (mpc_uuid[:8], str(sequence), event, rest)


def test_watch_timeout_without_count_is_a_normal_end(api: Api, watchers: list[Watcher]) -> None:
    phlo = api.create_phlo()
    watcher = Watcher(api.url, "--phlo", phlo.phlo_id, "--timeout", "0.5")
    watchers.append(watcher)
    code, lines, stderr = watcher.finish()
    assert (code, lines, stderr) == (0, [], "")


def test_watch_that_misses_its_count_exits_1(api: Api, watchers: list[Watcher]) -> None:
    phlo = api.create_phlo()
    watcher = Watcher(api.url, "--phlo", phlo.phlo_id, "--count", "3", "--timeout", "0.5")
    watchers.append(watcher)
    code, lines, stderr = watcher.finish()
    assert (code, lines, stderr) == (1, [], "error: only 0 of 3 events within 0.5 s\n")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_watch_stops_cleanly_on_ctrl_c_and_sigterm(api: Api, watchers: list[Watcher], sig: int) -> None:
    watcher = Watcher(api.url)
    watchers.append(watcher)
    watcher.process.send_signal(sig)
    code, _, stderr = watcher.finish(timeout=5)
    assert (code, stderr) == (0, "")


def test_watch_json_lines_carry_the_event_and_the_view(api: Api, watchers: list[Watcher]) -> None:
    phlo, agent = api.create_phlo(), number()
    watcher = Watcher(api.url, "--phlo", phlo.phlo_id, "--json", "--count", "1", "--timeout", "10")
    watchers.append(watcher)
    phlo.run(agent=agent, customer=number())
    code, lines, stderr = watcher.finish()
    assert code == 0, stderr
    message = json.loads(lines[0])
    assert message["event"]["event"] == "conference_started"
    assert message["view"]["phlo_id"] == phlo.phlo_id


def test_watch_refusals_and_a_server_that_goes_away(api: Api, tmp_path: Path) -> None:
    unknown = cli("calls", "watch", "--phlo", "no-such-phlo", url=api.url)
    assert (unknown.returncode, unknown.stderr) == (1, "error: 404: PHLO no-such-phlo not found\n")
    usage = cli("calls", "watch", "--count", "0", url=api.url)
    assert usage.returncode == 2

    server = ServerProcess(data_dir=tmp_path / "data", log_dir=tmp_path / "logs")
    server.start()
    try:
        watcher = Watcher(server.url)
        started = time.monotonic()
        server.stop()  # the open stream does not hold the server's shutdown
        assert time.monotonic() - started < 5
        code, _, stderr = watcher.finish(timeout=5)
        assert (code, stderr) == (2, "error: the server ended the event stream\n")
    finally:
        if server.running:
            server.kill()
    wait_until(lambda: not server.running)
