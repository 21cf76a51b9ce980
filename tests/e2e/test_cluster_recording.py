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
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from clusterkit import TAKEOVER_BOUND, Cluster, cluster, database_url, view_on
from e2ekit import AUTH_ID, AUTH_TOKEN, Api, CallbackReceiver, Phlo, ServerProcess, wait_until
from test_recording_sim import RATE, by_name, downloaded_pcm, level_at, stretch, two_voices

from bridgeline.media.recording_mix import phone_tone_hz

pytestmark = pytest.mark.postgres
__all__ = ["cluster", "database_url"]  # fixtures, used by name


def once_each(receiver: CallbackReceiver, mpc_uuid: str, name: str) -> list[dict[str, str]]:
    """The conference's `name` callbacks, each event once: delivery is at-least-once, and a node killed
    between a POST and its bookkeeping has that event sent again by the next owner (same
    SequenceNumber)."""
    events: dict[str, dict[str, str]] = {}
    for event in by_name(receiver, mpc_uuid, name):
        first = events.setdefault(event["SequenceNumber"], event)
        assert first["RecordingUUID"] == event["RecordingUUID"], (first, event)  # a repeat, not another
    return list(events.values())


@dataclass(frozen=True)
class RecordedOnB:
    """Nodes a and b; a two-voice conference owned and recorded by b; its first recording's id."""

    a: ServerProcess
    b: ServerProcess
    phlo: Phlo
    agent: str
    customer: str
    mpc_uuid: str
    old_id: str


def recorded_on_b(
    cluster: Cluster, receiver: CallbackReceiver, settings: dict[str, str] | None = None
) -> RecordedOnB:
    a, b = cluster.start("a", settings), cluster.start("b", settings)
    url = receiver.url("/recordings")
    phlo = Api(b).create_phlo(record=True, record_min_member_count=2, recording_callback_url=url)
    agent, customer = two_voices()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    [first] = wait_until(
        lambda: once_each(receiver, mpc_uuid, "MPCRecordingInitiated"), what="the recording initiated"
    )
    return RecordedOnB(a, b, phlo, agent, customer, mpc_uuid, first["RecordingUUID"])


def segment_event(
    receiver: CallbackReceiver, call: RecordedOnB, name: str, *, old: bool, what: str, timeout: float
) -> dict[str, str]:
    """The `name` event of the old segment (`old`) or of the other one, once it has come."""
    return wait_until(
        lambda: next(
            (
                e
                for e in once_each(receiver, call.mpc_uuid, name)
                if (e["RecordingUUID"] == call.old_id) == old
            ),
            None,
        ),
        timeout=timeout,
        what=what,
    )


def new_segment_holds_both_voices(receiver: CallbackReceiver, call: RecordedOnB) -> dict[str, str]:
    """Both talk into the new segment at node a, then hang up: its Completed, and both tones in it."""
    time.sleep(1.5)
    api_a = Api(call.a)
    api_a.hang_up_phone(call.agent)
    api_a.hang_up_phone(call.customer)
    view_on(call.a, call.phlo).wait_ended(call.mpc_uuid, timeout=10)
    last = segment_event(
        receiver, call, "MPCRecordingCompleted", old=False, what="the new segment completed", timeout=10
    )
    new_s = int(last["RecordingDurationMs"]) / 1000
    assert new_s >= 1.0, new_s
    after = stretch(downloaded_pcm(api_a, last["RecordingUUID"]), 0.0, new_s)
    assert level_at(after, phone_tone_hz(call.agent)) > 0.1
    assert level_at(after, phone_tone_hz(call.customer)) > 0.1
    return last


def test_a_killed_owners_recording_goes_on_at_the_new_owner_in_a_new_segment(
    cluster: Cluster, receiver: CallbackReceiver
) -> None:
    call = recorded_on_b(cluster, receiver)
    a, b, old_id = call.a, call.b, call.old_id
    time.sleep(2.0)  # past a header rewrite of the old file

    b.kill()  # SIGKILL: its file is left open on its disk
    assert cluster.wait_owned_by_another(call.mpc_uuid, "b") == "a"
    segment = segment_event(
        receiver,
        call,
        "MPCRecordingInitiated",
        old=False,
        what="the new segment initiated by the new owner",
        timeout=TAKEOVER_BOUND,
    )
    assert segment["PreviousRecordingUUID"] == old_id and segment["MPCUUID"] == call.mpc_uuid

    # The recorder node comes back: its file and row are finished, and it publishes nothing for a
    # conference that node a owns now.
    cluster.start("b")
    api_a = Api(a)

    def old_row_completed() -> bool:
        return bool(api_a.http.get(f"/v1/recordings/{old_id}").json().get("state") == "completed")

    wait_until(old_row_completed, timeout=TAKEOVER_BOUND, what="the old segment's row finished by node b")
    old_pcm = downloaded_pcm(Api(b), old_id)  # the file is on the recorder node's disk
    assert len(old_pcm) / RATE >= 1.0
    assert cluster.owner(call.mpc_uuid)[0] == "a"
    # ... and node a, the owner, publishes its Completed with the row's facts, after a heartbeat or two.
    old_done = segment_event(
        receiver,
        call,
        "MPCRecordingCompleted",
        old=True,
        what="the old segment's Completed, published by the owner",
        timeout=TAKEOVER_BOUND,
    )
    assert abs(int(old_done["RecordingDurationMs"]) - 1000 * len(old_pcm) / RATE) <= 1
    # Node a answers a download of it from node b's disk (the request is carried there).
    through_a = api_a.http.get(f"/v1/recordings/{old_id}/download", headers={"Range": "bytes=0-99"})
    assert through_a.status_code == 206 and through_a.headers["x-bridgeline-node"] == "b"
    assert through_a.content == Api(b).http.get(f"/v1/recordings/{old_id}/download").content[:100]
    assert np.array_equal(downloaded_pcm(api_a, old_id), old_pcm)

    last = new_segment_holds_both_voices(receiver, call)
    [old_done, _] = once_each(receiver, call.mpc_uuid, "MPCRecordingCompleted")  # each segment's, once
    assert old_done["RecordingUUID"] == old_id
    assert last["RecordingUUID"] == segment["RecordingUUID"] and last["PreviousRecordingUUID"] == old_id
    b.kill()  # the old segment's file is out of reach while its node is down: a clear 503
    with httpx.Client(base_url=a.url, auth=(AUTH_ID, AUTH_TOKEN)) as plain:  # no guard against 5xx
        gone = plain.get(f"/v1/recordings/{old_id}/download")
    assert gone.status_code == 503 and gone.headers["retry-after"] and "node b" in gone.json()["error"]


def test_a_segment_whose_recorder_node_never_returns_ends_failed(
    cluster: Cluster, receiver: CallbackReceiver
) -> None:
    # b may die holding the lease of a delivery it was posting (the Initiated the receiver just got,
    # not yet marked delivered): the Failed queues behind it until b's node lease ends and a makes it
    # due again (test_cluster_delivery_leases.py).
    call = recorded_on_b(cluster, receiver, {"BRIDGELINE_RECORDING_LOST_AFTER_S": "1"})
    old_id, mpc_uuid = call.old_id, call.mpc_uuid
    call.b.kill()
    assert cluster.wait_owned_by_another(mpc_uuid, "b") == "a"
    failed = wait_until(
        lambda: once_each(receiver, mpc_uuid, "MPCRecordingFailed"),
        timeout=TAKEOVER_BOUND,
        what="the old segment failed by the owner",
    )
    assert [(e["RecordingUUID"], e["FailureReason"]) for e in failed] == [(old_id, "recorder node lost")]
    row = Api(call.a).http.get(f"/v1/recordings/{old_id}").json()
    assert row["state"] == "failed" and row["failure_reason"] == "recorder node lost"
    # the new segment goes on (waited for: its Initiated and the Failed are separate deliveries, and
    # nothing here needs them in order)
    [_, segment] = wait_until(
        lambda: (both := once_each(receiver, mpc_uuid, "MPCRecordingInitiated"))[1:] and both,
        what="the new segment initiated",
    )
    assert segment["PreviousRecordingUUID"] == old_id
    assert not once_each(receiver, mpc_uuid, "MPCRecordingCompleted")
    listed = Api(call.a).http.get("/v1/recordings", params={"mpc_uuid": mpc_uuid}).json()["objects"]
    assert {o["recording_id"]: o["previous_recording_id"] for o in listed} == {
        old_id: None,
        segment["RecordingUUID"]: old_id,
    }


def test_a_drained_owners_recording_goes_on_at_the_receiver_in_a_new_segment(
    cluster: Cluster, receiver: CallbackReceiver
) -> None:
    call = recorded_on_b(cluster, receiver)
    b, old_id = call.b, call.old_id
    time.sleep(1.0)

    assert b.process is not None
    b.process.send_signal(signal.SIGTERM)
    assert b.process.wait(timeout=15) == 0  # drained (the conference handed to a), then exited
    assert cluster.wait_owned_by_another(call.mpc_uuid, "b") == "a"
    segment = segment_event(
        receiver,
        call,
        "MPCRecordingInitiated",
        old=False,
        what="the new segment initiated by the receiver",
        timeout=TAKEOVER_BOUND,
    )
    assert segment["PreviousRecordingUUID"] == old_id
    # The giving node closed its file as it exited: the row is finished with the file's facts.
    ((state, location),) = cluster.query(
        "SELECT state, location FROM recordings WHERE recording_id = %s", old_id
    )
    assert state == "completed" and location
    # ... which the receiver, the owner now, publishes as the old segment's Completed.
    segment_event(
        receiver,
        call,
        "MPCRecordingCompleted",
        old=True,
        what="the old segment's Completed, published by the receiver",
        timeout=TAKEOVER_BOUND,
    )
    last = new_segment_holds_both_voices(receiver, call)
    assert last["RecordingUUID"] == segment["RecordingUUID"]
