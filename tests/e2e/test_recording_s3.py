"""Recordings kept in S3-compatible object storage, end to end: `bridgeline serve` configured with
`BRIDGELINE_RECORDINGS_S3_*` against moto's S3 server on 127.0.0.1 (a real S3-protocol server), the
Plivo SDK running the conference. The file is an object in the bucket (read back with boto3, not
through Bridgeline), the API serves it with ranges, DELETE removes the object; when the object store
is unreachable the recording ends Failed with the reason and the call goes on.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import miniaudio
import numpy as np
import pytest
from e2ekit import Api, CallbackReceiver, ServerProcess, wait_until
from moto.server import ThreadedMotoServer
from test_recording_sim import RATE, by_name, level_at, stretch, two_voices

from bridgeline.media.recording_mix import phone_tone_hz

KEY, SECRET, PREFIX = "bridgeline-e2e", "bridgeline-e2e-secret", "calls/"


@pytest.fixture
def moto() -> Iterator[tuple[str, Any]]:
    """A moto S3 server on a free loopback port, and a boto3 client of it (stopped after the test)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    )
    try:
        yield endpoint, client
    finally:
        server.stop()


def s3_settings(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "BRIDGELINE_RECORDINGS_S3_ENDPOINT": endpoint,
        "BRIDGELINE_RECORDINGS_S3_BUCKET": bucket,
        "BRIDGELINE_RECORDINGS_S3_PREFIX": PREFIX,
        "BRIDGELINE_RECORDINGS_S3_ACCESS_KEY_ID": KEY,
        "BRIDGELINE_RECORDINGS_S3_SECRET_ACCESS_KEY": SECRET,
        "BRIDGELINE_RECORDINGS_S3_TIMEOUT_S": "3",
    }


def recorded_call(api: Api, receiver: CallbackReceiver, file_format: str) -> tuple[str, str, str]:
    """A two-party conference recorded for about 1.5 s, then hung up: (mpc_uuid, agent, customer)."""
    phlo = api.create_phlo(
        record=True, record_file_format=file_format, recording_callback_url=receiver.url("/s3")
    )
    agent, customer = two_voices()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    wait_until(lambda: by_name(receiver, mpc_uuid, "MPCRecordingInitiated"), what="the recording initiated")
    time.sleep(1.5)
    api.hang_up_phone(agent)
    api.hang_up_phone(customer)
    phlo.wait_ended(mpc_uuid)
    return mpc_uuid, agent, customer


def test_a_recording_is_an_object_in_the_bucket_served_and_deleted_through_the_api(
    moto: tuple[str, Any], server_factory: Callable[..., ServerProcess], receiver: CallbackReceiver
) -> None:
    endpoint, s3 = moto
    bucket = "rec-" + secrets.token_hex(6)
    s3.create_bucket(Bucket=bucket)
    api = Api(server_factory(env=s3_settings(endpoint, bucket)))
    mpc_uuid, agent, customer = recorded_call(api, receiver, "mp3")
    [done] = wait_until(
        lambda: by_name(receiver, mpc_uuid, "MPCRecordingCompleted"),
        timeout=15,
        what="the recording completed",
    )
    recording_id = done["RecordingUUID"]
    row = api.http.get(f"/v1/recordings/{recording_id}").json()
    assert row["state"] == "completed" and row["recording_format"] == "mp3"

    # The object, read straight from the bucket: the key is the prefix, the account and the file.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == 1 and keys[0].startswith(PREFIX) and keys[0].endswith(f"{recording_id}.mp3")
    stored = s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    assert len(stored) == row["size_bytes"]
    decoded = miniaudio.decode(
        stored, output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1, sample_rate=RATE
    )
    voices = stretch(np.frombuffer(decoded.samples, dtype="<i2"), 0.0, decoded.duration)
    assert level_at(voices, phone_tone_hz(agent)) > 0.1 and level_at(voices, phone_tone_hz(customer)) > 0.1

    # The API serves the object, whole and by range.
    path = f"/v1/recordings/{recording_id}/download"
    assert api.http.get(path).content == stored
    part = api.http.get(path, headers={"Range": "bytes=10-109"})
    assert part.status_code == 206 and part.content == stored[10:110]
    assert part.headers["content-range"] == f"bytes 10-109/{len(stored)}"

    assert api.http.delete(f"/v1/recordings/{recording_id}").status_code == 200
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert api.http.get(f"/v1/recordings/{recording_id}").status_code == 404


def test_an_unreachable_object_store_fails_the_recording_and_the_call_goes_on(
    moto: tuple[str, Any], server_factory: Callable[..., ServerProcess], receiver: CallbackReceiver
) -> None:
    endpoint, _ = moto
    missing = "no-such-bucket-" + secrets.token_hex(4)  # the store answers, but refuses every upload
    api = Api(server_factory(env=s3_settings(endpoint, missing)))
    phlo = api.create_phlo(record=True, recording_callback_url=receiver.url("/s3"))
    agent, customer = two_voices()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    wait_until(lambda: by_name(receiver, mpc_uuid, "MPCRecordingInitiated"), what="the recording initiated")
    time.sleep(0.5)
    stop = phlo.http.post(f"{phlo.node_path}/recording", json={"action": "stop", "trigger_source": agent})
    assert stop.status_code == 201, stop.text
    [failed] = wait_until(
        lambda: by_name(receiver, mpc_uuid, "MPCRecordingFailed"), timeout=15, what="the recording failed"
    )
    assert failed["FailureReason"] and not by_name(receiver, mpc_uuid, "MPCRecordingCompleted")
    row = api.http.get(f"/v1/recordings/{failed['RecordingUUID']}").json()
    assert row["state"] == "failed" and row["failure_reason"] == failed["FailureReason"]
    # The call goes on: both members still connected and hearing each other, and a hold still works.
    phlo.wait_member(customer, status="connected", hears=[agent])
    phlo.wait_member(agent, status="connected", hears=[customer])
    assert phlo.member_action(customer, "hold").status_code == 201
    phlo.wait_member(customer, status="on_hold")
    api.hang_up_phone(agent)
    api.hang_up_phone(customer)
    phlo.wait_ended(mpc_uuid)
