"""A recording across a node's loss (issues #12 x #13): two `bridgeline serve` nodes on one PostgreSQL
database, sim carrier. The owner is killed (-9): the node that takes the conference over goes on
recording it in a new segment that names the old one. The killed node, started again, finishes its
old file and row; the new owner then publishes the old segment's Completed, and serves its file from
the recorder node's disk. A recorder node that never returns: the old segment ends Failed,
"recorder node lost". A drain: the receiver publishes the old segment's Completed.
"""

from __future__ import annotations

import signal
import time

import httpx
import numpy as np
import pytest
from clusterkit import TAKEOVER_BOUND, Cluster, cluster, database_url, view_on
from e2ekit import AUTH_ID, AUTH_TOKEN, Api, CallbackReceiver, wait_until
from test_recording_sim import RATE, by_name, downloaded_pcm, level_at, stretch, two_voices

from bridgeline.media.recording_mix import phone_tone_hz

pytestmark = pytest.mark.postgres
__all__ = ["cluster", "database_url"]  # fixtures, used by name


def test_a_killed_owners_recording_goes_on_at_the_new_owner_in_a_new_segment(
    cluster: Cluster, receiver: CallbackReceiver
) -> None:
    a, b = cluster.start("a"), cluster.start("b")
    url = receiver.url("/recordings")
    phlo = Api(b).create_phlo(record=True, record_min_member_count=2, recording_callback_url=url)
    agent, customer = two_voices()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    wait_until(lambda: by_name(receiver, mpc_uuid, "MPCRecordingInitiated"), what="the recording initiated")
    time.sleep(2.0)  # past a header rewrite of the old file
    [first] = by_name(receiver, mpc_uuid, "MPCRecordingInitiated")
    old_id = first["RecordingUUID"]

    b.kill()  # SIGKILL: its file is left open on its disk
    assert cluster.wait_owned_by_another(mpc_uuid, "b") == "a"
    segment = wait_until(
        lambda: next(
            (e for e in by_name(receiver, mpc_uuid, "MPCRecordingInitiated") if e["RecordingUUID"] != old_id),
            None,
        ),
        timeout=TAKEOVER_BOUND,
        what="the new segment initiated by the new owner",
    )
    assert segment["PreviousRecordingUUID"] == old_id and segment["MPCUUID"] == mpc_uuid

    # The recorder node comes back: its file and row are finished, and it publishes nothing for a
    # conference that node a owns now.
    cluster.start("b")
    api_a = Api(a)

    def old_row_completed() -> bool:
        return bool(api_a.http.get(f"/v1/recordings/{old_id}").json().get("state") == "completed")

    wait_until(old_row_completed, timeout=TAKEOVER_BOUND, what="the old segment's row finished by node b")
    old_pcm = downloaded_pcm(Api(b), old_id)  # the file is on the recorder node's disk
    assert len(old_pcm) / RATE >= 1.0
    assert cluster.owner(mpc_uuid)[0] == "a"
    # ... and node a, the owner, publishes its Completed with the row's facts, after a heartbeat or two.
    old_done = wait_until(
        lambda: next(
            (e for e in by_name(receiver, mpc_uuid, "MPCRecordingCompleted") if e["RecordingUUID"] == old_id),
            None,
        ),
        timeout=TAKEOVER_BOUND,
        what="the old segment's Completed, published by the owner",
    )
    assert abs(int(old_done["RecordingDurationMs"]) - 1000 * len(old_pcm) / RATE) <= 1
    # Node a answers a download of it from node b's disk (the request is carried there).
    through_a = api_a.http.get(f"/v1/recordings/{old_id}/download", headers={"Range": "bytes=0-99"})
    assert through_a.status_code == 206 and through_a.headers["x-bridgeline-node"] == "b"
    assert through_a.content == Api(b).http.get(f"/v1/recordings/{old_id}/download").content[:100]
    assert np.array_equal(downloaded_pcm(api_a, old_id), old_pcm)

    time.sleep(1.5)  # both talk into the new segment
    api_a.hang_up_phone(agent)
    api_a.hang_up_phone(customer)
    view_on(a, phlo).wait_ended(mpc_uuid, timeout=10)
    wait_until(
        lambda: [
            e for e in by_name(receiver, mpc_uuid, "MPCRecordingCompleted") if e["RecordingUUID"] != old_id
        ],
        timeout=10,
        what="the new segment completed",
    )
    [old_done, last] = by_name(receiver, mpc_uuid, "MPCRecordingCompleted")  # each segment's, once
    assert old_done["RecordingUUID"] == old_id
    assert last["RecordingUUID"] == segment["RecordingUUID"] and last["PreviousRecordingUUID"] == old_id
    new_s = int(last["RecordingDurationMs"]) / 1000
    assert new_s >= 1.0, new_s
    after = stretch(downloaded_pcm(api_a, last["RecordingUUID"]), 0.0, new_s)
    assert level_at(after, phone_tone_hz(agent)) > 0.1 and level_at(after, phone_tone_hz(customer)) > 0.1
    b.kill()  # the old segment's file is out of reach while its node is down: a clear 503
    with httpx.Client(base_url=a.url, auth=(AUTH_ID, AUTH_TOKEN)) as plain:  # no guard against 5xx
        gone = plain.get(f"/v1/recordings/{old_id}/download")
    assert gone.status_code == 503 and gone.headers["retry-after"] and "node b" in gone.json()["error"]


def test_a_segment_whose_recorder_node_never_returns_ends_failed(
    cluster: Cluster, receiver: CallbackReceiver
) -> None:
    quick = {"BRIDGELINE_RECORDING_LOST_AFTER_S": "1"}
    a, b = cluster.start("a", quick), cluster.start("b", quick)
    url = receiver.url("/recordings")
    phlo = Api(b).create_phlo(record=True, record_min_member_count=2, recording_callback_url=url)
    agent, customer = two_voices()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    [first] = wait_until(
        lambda: by_name(receiver, mpc_uuid, "MPCRecordingInitiated"), what="the recording initiated"
    )
    old_id = first["RecordingUUID"]
    b.kill()
    assert cluster.wait_owned_by_another(mpc_uuid, "b") == "a"
    failed = wait_until(
        lambda: by_name(receiver, mpc_uuid, "MPCRecordingFailed"),
        timeout=TAKEOVER_BOUND,
        what="the old segment failed by the owner",
    )
    assert [(e["RecordingUUID"], e["FailureReason"]) for e in failed] == [(old_id, "recorder node lost")]
    row = Api(a).http.get(f"/v1/recordings/{old_id}").json()
    assert row["state"] == "failed" and row["failure_reason"] == "recorder node lost"
    [_, segment] = by_name(receiver, mpc_uuid, "MPCRecordingInitiated")  # the new segment goes on
    assert segment["PreviousRecordingUUID"] == old_id
    assert not by_name(receiver, mpc_uuid, "MPCRecordingCompleted")
    listed = Api(a).http.get("/v1/recordings", params={"mpc_uuid": mpc_uuid}).json()["objects"]
    assert {o["recording_id"]: o["previous_recording_id"] for o in listed} == {
        old_id: None,
        segment["RecordingUUID"]: old_id,
    }


def test_a_drained_owners_recording_goes_on_at_the_receiver_in_a_new_segment(
    cluster: Cluster, receiver: CallbackReceiver
) -> None:
    a, b = cluster.start("a"), cluster.start("b")
    url = receiver.url("/recordings")
    phlo = Api(b).create_phlo(record=True, record_min_member_count=2, recording_callback_url=url)
    agent, customer = two_voices()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    wait_until(lambda: by_name(receiver, mpc_uuid, "MPCRecordingInitiated"), what="the recording initiated")
    [first] = by_name(receiver, mpc_uuid, "MPCRecordingInitiated")
    old_id = first["RecordingUUID"]
    time.sleep(1.0)

    assert b.process is not None
    b.process.send_signal(signal.SIGTERM)
    assert b.process.wait(timeout=15) == 0  # drained (the conference handed to a), then exited
    assert cluster.wait_owned_by_another(mpc_uuid, "b") == "a"
    segment = wait_until(
        lambda: next(
            (e for e in by_name(receiver, mpc_uuid, "MPCRecordingInitiated") if e["RecordingUUID"] != old_id),
            None,
        ),
        timeout=TAKEOVER_BOUND,
        what="the new segment initiated by the receiver",
    )
    assert segment["PreviousRecordingUUID"] == old_id
    # The giving node closed its file as it exited: the row is finished with the file's facts.
    ((state, location),) = cluster.query(
        "SELECT state, location FROM recordings WHERE recording_id = %s", old_id
    )
    assert state == "completed" and location
    # ... which the receiver, the owner now, publishes as the old segment's Completed.
    wait_until(
        lambda: [
            e for e in by_name(receiver, mpc_uuid, "MPCRecordingCompleted") if e["RecordingUUID"] == old_id
        ],
        timeout=TAKEOVER_BOUND,
        what="the old segment's Completed, published by the receiver",
    )

    time.sleep(1.5)  # both talk into the new segment
    api_a = Api(a)
    api_a.hang_up_phone(agent)
    api_a.hang_up_phone(customer)
    view_on(a, phlo).wait_ended(mpc_uuid, timeout=10)
    last = wait_until(
        lambda: next(
            (e for e in by_name(receiver, mpc_uuid, "MPCRecordingCompleted") if e["RecordingUUID"] != old_id),
            None,
        ),
        timeout=10,
        what="the new segment completed",
    )
    assert last["RecordingUUID"] == segment["RecordingUUID"]
    new_s = int(last["RecordingDurationMs"]) / 1000
    after = stretch(downloaded_pcm(api_a, last["RecordingUUID"]), 0.0, new_s)
    assert level_at(after, phone_tone_hz(agent)) > 0.1 and level_at(after, phone_tone_hz(customer)) > 0.1
