"""Authentication against a real server (issue #9, item 13): a rotated or removed token stops working
within the cache time, and an address that keeps failing is throttled with 429 and Retry-After."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
from e2ekit import AUTH_ID, AUTH_TOKEN, ServerProcess, add_account, assert_plivo_error, wait_until

CACHE_S = 0.5


def account_command(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`bridgeline account ...` on the server's store, from another process, as an operator runs it."""
    command = [sys.executable, "-m", "bridgeline.cli", "account", *args, "--data-dir", str(server.data_dir)]
    env = {**os.environ, **server.env}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30, check=False)


def status(server: ServerProcess, auth: tuple[str, str]) -> int:
    with httpx.Client(base_url=server.url, auth=auth, timeout=5) as client:
        return client.get("/v1/phlo").status_code


def test_a_rotated_or_removed_token_stops_working_within_the_cache_time(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(env={"BRIDGELINE_AUTH_CACHE_SECONDS": str(CACHE_S)})
    auth_id, old_token = add_account(server)
    assert status(server, (auth_id, old_token)) == 200  # now cached

    rotated = account_command(server, "rotate-token", auth_id)
    assert rotated.returncode == 0, rotated.stderr
    new_token = rotated.stdout.split("BRIDGELINE_AUTH_TOKEN=")[1].strip()
    assert new_token != old_token
    changed = time.monotonic()
    wait_until(
        lambda: status(server, (auth_id, old_token)) == 401, timeout=CACHE_S + 5, what="old token refused"
    )
    assert time.monotonic() - changed < CACHE_S + 2
    assert status(server, (auth_id, new_token)) == 200

    removed = account_command(server, "remove", auth_id)
    assert removed.returncode == 0, removed.stderr
    wait_until(
        lambda: status(server, (auth_id, new_token)) == 401, timeout=CACHE_S + 5, what="account refused"
    )
    assert status(server, (AUTH_ID, AUTH_TOKEN)) == 200  # the others are untouched

    assert account_command(server, "remove", auth_id).returncode == 1  # no such account any more
    assert account_command(server, "rotate-token", auth_id).returncode == 1


def test_failed_logins_are_throttled_per_address(server_factory: Callable[..., ServerProcess]) -> None:
    burst, rate = 5, 1.0
    server = server_factory(
        env={"BRIDGELINE_AUTH_FAILURE_BURST": str(burst), "BRIDGELINE_AUTH_FAILURE_RATE": str(rate)}
    )
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(3):  # no credentials is a prompt, not a guess: never throttled
            assert_plivo_error(client.get("/v1/phlo"), 401)
        for _ in range(burst):
            assert_plivo_error(client.get("/v1/phlo", auth=(AUTH_ID, "guess")), 401)
        refused = client.get("/v1/phlo", auth=(AUTH_ID, "guess"))
        assert_plivo_error(refused, 429)
        assert refused.headers["retry-after"] == "1"  # one token at 1 per second
        # Right credentials from a throttled address are refused too: no oracle for a guesser.
        assert_plivo_error(client.get("/v1/phlo", auth=(AUTH_ID, AUTH_TOKEN)), 429)
        time.sleep(int(refused.headers["retry-after"]))
        assert client.get("/v1/phlo", auth=(AUTH_ID, AUTH_TOKEN)).status_code == 200
        assert client.get("/health").status_code == 200  # unauthenticated routes never are
