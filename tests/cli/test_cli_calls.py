"""`bridgeline calls`, `member ACTION` and `mpc ACTION` as a script runs them, against a real server.

Exit codes: 0 done, 1 refused by the server (its message on stderr), 2 usage or connection error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2ekit import Api, Phlo, free_port, number
from livekit import AUTH_ID, AUTH_TOKEN

BRIDGELINE = str(Path(sys.executable).with_name("bridgeline"))


def cli(
    *args: str, url: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed `bridgeline` command, with the server found from BRIDGELINE_URL."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BRIDGELINE_")},
        "BRIDGELINE_AUTH_ID": AUTH_ID,
        "BRIDGELINE_AUTH_TOKEN": AUTH_TOKEN,
        **({"BRIDGELINE_URL": url} if url else {}),
        **(env or {}),
    }
    return subprocess.run(
        [BRIDGELINE, *args], env=environment, capture_output=True, text=True, timeout=30, check=False
    )


def connected(api: Api, **node: Any) -> tuple[Phlo, str, str]:
    phlo = api.create_phlo(**node)
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    return phlo, agent, customer


def member_args(phlo: Phlo, action: str, address: str) -> list[str]:
    return ["member", action, address, "--phlo", phlo.phlo_id, "--node", phlo.node_id]


def test_calls_lists_live_conferences_with_their_members(api: Api) -> None:
    phlo, agent, customer = connected(api)
    assert phlo.member_action(customer, "hold").status_code == 201
    mpc_uuid = phlo.conference()["mpc_uuid"]

    done = cli("calls", "--phlo", phlo.phlo_id, url=api.url)
    assert done.returncode == 0, done.stderr
    header, *members = done.stdout.splitlines()
    assert header.startswith(f"{phlo.phlo_id}/{phlo.node_id}  {mpc_uuid}  live  ")
    rows = {line.split()[0]: line.split() for line in members}
    assert rows[agent][1:3] == ["agent", "connected"]
    assert rows[agent][4:] == ["hears", "nobody"]
    assert rows[customer][1:3] == ["customer", "on_hold"]
    assert rows[customer][4:] == ["hears", "music:customer_hold"]

    as_json = cli("calls", "--phlo", phlo.phlo_id, "--json", url=api.url)
    assert as_json.returncode == 0
    assert [view["mpc_uuid"] for view in json.loads(as_json.stdout)["objects"]] == [mpc_uuid]


def test_calls_without_live_conferences(api: Api) -> None:
    phlo = api.create_phlo()
    done = cli("calls", "--phlo", phlo.phlo_id, url=api.url)
    assert (done.returncode, done.stdout, done.stderr) == (0, "no live conferences\n", "")


def test_member_actions_drive_the_member(api: Api) -> None:
    phlo, agent, customer = connected(api)

    done = cli(*member_args(phlo, "hold", customer), url=api.url)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"hold {customer}: ok\n", "")
    assert phlo.member(customer)["status"] == "on_hold"

    done = cli("member", "unhold", customer, "--phlo", phlo.phlo_id, url=api.url)  # the only node
    assert (done.returncode, done.stdout) == (0, f"unhold {customer}: ok\n")
    phlo.wait_member(customer, status="connected")

    done = cli(*member_args(phlo, "mute", customer), url=api.url)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"mute {customer}: ok\n", "")
    phlo.wait_member(customer, mute=True)
    phlo.wait_member(agent, hears=[])
    done = cli(*member_args(phlo, "mute", customer), url=api.url)
    assert (done.returncode, done.stderr) == (1, f"error: 400: member {customer} is already muted\n")
    done = cli(*member_args(phlo, "unmute", customer), url=api.url)
    assert (done.returncode, done.stdout) == (0, f"unmute {customer}: ok\n")
    phlo.wait_member(agent, hears=[customer])

    done = cli(*member_args(phlo, "hangup", agent), "--json", url=api.url)
    assert done.returncode == 0
    assert json.loads(done.stdout)["error"] == ""
    phlo.wait_member(agent, status="left", leave_reason="hangup")


def test_a_refused_action_exits_1_with_the_servers_message(api: Api) -> None:
    phlo, agent, _ = connected(api)
    done = cli(*member_args(phlo, "unhold", agent), url=api.url)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"error: 400: member {agent} is not on hold (status: connected)\n"


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("abort_transfer", "no transfer in progress initiated by"),
        ("abort-transfer", "no transfer in progress initiated by"),
        ("resume_call", "no warm transfer in progress initiated by"),
        ("voicemail_drop", "no voicemail_message configured"),
    ],
)
def test_every_member_action_reaches_the_server(api: Api, action: str, message: str) -> None:
    """Without a transfer or a voicemail message, the server refuses each one and says why."""
    phlo, agent, _ = connected(api)
    done = cli(*member_args(phlo, action, agent), url=api.url)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("error: 400: ") and message in done.stderr


def test_an_unknown_member_exits_1_with_404(api: Api) -> None:
    phlo, _, _ = connected(api)
    stranger = number()
    done = cli(*member_args(phlo, "hold", stranger), url=api.url)
    assert done.returncode == 1
    assert done.stderr == f"error: 404: member {stranger} is not in a live conference of this node\n"
    unknown_phlo = cli("member", "hold", stranger, "--phlo", "no-such-phlo", url=api.url)
    assert (unknown_phlo.returncode, unknown_phlo.stderr) == (1, "error: 404: PHLO no-such-phlo not found\n")


def test_mpc_call_and_transfers(api: Api) -> None:
    phlo, agent, customer = connected(api)
    node = ["--phlo", phlo.phlo_id, "--node", phlo.node_id]
    extra = number()
    done = cli(
        "mpc", "call", *node, "--to", extra, "--trigger-source", agent, "--role", "customer", url=api.url
    )
    assert (done.returncode, done.stdout) == (0, f"call {extra} (customer) from {agent}: ok\n"), done.stderr
    assert phlo.wait_member(extra, status="connected")["role"] == "customer"

    consultant = number()
    done = cli("mpc", "warm_transfer", *node, "--to", consultant, "--trigger-source", agent, url=api.url)
    assert done.returncode == 0, done.stderr
    view = phlo.wait_member(consultant, status="connected", hears=[agent])
    assert view["role"] == "agent" and view["transfer"]["transfer_type"] == "warm"
    assert cli(*member_args(phlo, "resume_call", agent), url=api.url).returncode == 0
    phlo.wait_member(consultant, status="connected", hears=[agent, customer, extra])

    target = number()
    done = cli("mpc", "cold-transfer", *node, "--to", target, "--trigger-source", consultant, url=api.url)
    assert done.returncode == 0, done.stderr
    phlo.wait_member(consultant, status="left", leave_reason="transferred")
    phlo.wait_member(target, status="connected")


def test_mpc_refusal_exits_1(api: Api) -> None:
    phlo, _, _ = connected(api)
    outsider = number()
    args = ["mpc", "call", "--phlo", phlo.phlo_id, "--to", number(), "--trigger-source", outsider]
    done = cli(*args, url=api.url)
    assert done.returncode == 1
    assert done.stderr == f"error: 400: trigger_source {outsider} is not in a live conference of this node\n"


def test_connection_and_usage_errors_exit_2(api: Api) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    for args in (["calls"], ["member", "hold", number(), "--phlo", "p", "--node", "n"], ["calls", "watch"]):
        done = cli(*args, url=nowhere)
        assert done.returncode == 2, args
        assert done.stderr.startswith(f"error: cannot reach {nowhere}"), done.stderr
    explicit = cli("calls", "--url", nowhere, url=api.url)  # --url wins over BRIDGELINE_URL
    assert explicit.returncode == 2

    missing = cli("member", "hold", number(), url=api.url)  # no --phlo
    assert missing.returncode == 2 and "--phlo" in missing.stderr
    bad_role = cli("mpc", "call", "--phlo", "p", "--to", "+1", "--trigger-source", "+2", "--role", "boss")
    assert bad_role.returncode == 2
    with_count = cli("calls", "--count", "3", url=api.url)
    assert (with_count.returncode, with_count.stderr) == (
        2,
        "error: --count and --timeout apply to `calls watch` only\n",
    )


def test_credentials_come_from_the_environment(api: Api, tmp_path: Path) -> None:
    phlo = api.create_phlo()
    wrong = cli("calls", "--phlo", phlo.phlo_id, url=api.url, env={"BRIDGELINE_AUTH_TOKEN": "wrong"})
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: 401: ")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGELINE_")}
    none = subprocess.run(
        [BRIDGELINE, "calls", "--url", api.url, "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert none.returncode == 2 and "no credentials" in none.stderr
