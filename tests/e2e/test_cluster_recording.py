"""A recording across a node's loss (issues #12 x #13): two `bridgeline serve` nodes on one PostgreSQL
database, sim carrier. The owner is killed (-9): the node that takes the conference over goes on
recording it in a new segment that names the old one; the killed node, started again, finishes its
old file and row but commits no event for a conference it no longer owns.
"""

from __future__ import annotations

import signal
import time

import pytest
from clusterkit import TAKEOVER_BOUND, Cluster, cluster, database_url, view_on
from e2ekit import Api, CallbackReceiver, wait_until
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
    assert not [
        e for e in by_name(receiver, mpc_uuid, "MPCRecordingCompleted") if e["RecordingUUID"] == old_id
    ]
    [last] = by_name(receiver, mpc_uuid, "MPCRecordingCompleted")
    assert last["RecordingUUID"] == segment["RecordingUUID"] and last["PreviousRecordingUUID"] == old_id
    new_s = int(last["RecordingDurationMs"]) / 1000
    assert new_s >= 1.0, new_s
    after = stretch(downloaded_pcm(api_a, last["RecordingUUID"]), 0.0, new_s)
    assert level_at(after, phone_tone_hz(agent)) > 0.1 and level_at(after, phone_tone_hz(customer)) > 0.1


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
