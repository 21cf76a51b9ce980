"""`bridgeline record ACTION` against a real server: the conference recording and a member's track."""

from __future__ import annotations

import json

from e2ekit import Api, wait_until
from test_cli_calls import cli, connected

from bridgeline.cli.calls import event_line


def recordings(api: Api, mpc_uuid: str) -> list[dict[str, object]]:
    return list(api.http.get("/v1/recordings", params={"mpc_uuid": mpc_uuid}).json()["objects"])


def test_record_start_pause_resume_stop_and_a_members_track(api: Api) -> None:
    phlo, agent, customer = connected(api)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    node = ["--phlo", phlo.phlo_id, "--node", phlo.node_id]

    done = cli("record", "start", *node, "--trigger-source", agent, "--format", "mp3", url=api.url)
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"start the conference recording: ok ({mpc_uuid})\n",
        "",
    )
    for action in ("pause", "resume", "stop"):
        done = cli("record", action, *node, "--trigger-source", customer, url=api.url)
        assert done.returncode == 0, done.stderr
    again = cli("record", "stop", *node, "--trigger-source", agent, url=api.url)
    assert (again.returncode, again.stderr) == (1, "error: 400: the conference is not being recorded\n")

    done = cli("record", "start", *node, "--member", customer, "--json", url=api.url)
    assert done.returncode == 0 and json.loads(done.stdout)["mpc_uuid"] == mpc_uuid
    done = cli("record", "stop", "--phlo", phlo.phlo_id, "--member", customer, url=api.url)  # the only node
    assert (done.returncode, done.stdout) == (0, f"stop {customer}'s track: ok ({mpc_uuid})\n")

    finished = wait_until(
        lambda: (rows := recordings(api, mpc_uuid)) and all(r["state"] == "completed" for r in rows) and rows,
        timeout=10,
        what="both recordings completed",
    )
    assert sorted((r["recording_type"], r["recording_format"]) for r in finished) == [
        ("conference", "mp3"),
        ("participant", "wav"),
    ]
    usage = cli("record", "start", *node, url=api.url)  # neither --trigger-source nor --member
    assert usage.returncode == 2


def test_watch_prints_recording_events_with_their_id_and_member() -> None:
    data = {"recording_id": "c1-r2", "member_address": "+14155550100", "recording_state": "paused"}
    event = {"event": "ParticipantRecordingPaused", "sequence": 9, "at": 1_700_000_000.25, "data": data}
    line = event_line({"mpc_uuid": "c1aaaaaaaaaa", "event": event})
    assert "ParticipantRecordingPaused" in line and line.endswith(
        "c1-r2 of +14155550100  recording_state=paused"
    )
