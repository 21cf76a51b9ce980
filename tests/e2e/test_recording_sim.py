"""Recording with the sim carrier, driven by the Plivo SDK: what the file holds, the callbacks, the API.

Each virtual phone says a tone of its own (GET /v1/sim/phones/{address} shows it as `tone_hz` on each
call), so the recording's spectrum shows who was heard when: both talkers, not a held member, nothing
while paused. Times come from the recording's own callbacks and the events' timestamps.
"""

from __future__ import annotations

import io
import time
import wave
from collections.abc import Callable
from datetime import datetime
from typing import Any

import miniaudio
import numpy as np
import plivo.utils
from e2ekit import (
    AUTH_TOKEN,
    Api,
    CallbackReceiver,
    Phlo,
    ServerProcess,
    add_account,
    guarded_client,
    number,
    wait_until,
)

from bridgeline.media.recording_mix import phone_tone_hz

RATE = 8000
MARGIN_S = 0.3  # cut off each stretch's edges: actions take effect within a few 20 ms frames


def level_at(pcm: np.ndarray, hz: float) -> float:
    """The tone's amplitude relative to full scale (a Hann-windowed FFT peak near hz)."""
    if len(pcm) == 0:
        return 0.0
    window = np.hanning(len(pcm))
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * window)) / (window.sum() / 2) / 32768
    freqs = np.fft.rfftfreq(len(pcm), 1 / RATE)
    near = (freqs > hz - 15) & (freqs < hz + 15)
    return float(spectrum[near].max())


def stretch(pcm: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    return pcm[int((start_s + MARGIN_S) * RATE) : int((end_s - MARGIN_S) * RATE)]


def at(callback_time: str) -> float:
    return datetime.fromisoformat(callback_time).timestamp()


def two_voices() -> tuple[str, str]:
    """Two fresh addresses whose phones say different tones (inputs chosen, the tones read back)."""
    agent, customer = number(), number()
    while phone_tone_hz(customer) == phone_tone_hz(agent):
        customer = number()
    return agent, customer


def tone_of(api: Api, address: str) -> int:
    return int(api.phone_calls(address)[0]["tone_hz"])


def recording_events(receiver: CallbackReceiver, mpc_uuid: str) -> list[dict[str, str]]:
    return [c.params for c in receiver.delivered(mpc_uuid) if "Recording" in c.params.get("event", "")]


def assert_v3_signed(receiver: CallbackReceiver, url: str, mpc_uuid: str) -> None:
    for callback in receiver.delivered(mpc_uuid):
        headers = {k.lower(): v for k, v in callback.headers.items()}
        assert plivo.utils.validate_v3_signature(
            "POST",
            url,
            headers["x-plivo-signature-v3-nonce"],
            AUTH_TOKEN,
            headers["x-plivo-signature-v3"],
            dict(callback.params),
        )


def test_the_recording_holds_the_talkers_not_the_held_member_and_a_pause_is_silent(
    api: Api, sdk: Any, server: ServerProcess, receiver: CallbackReceiver
) -> None:
    url = receiver.url("/recordings")
    phlo = api.create_phlo(record=True, record_min_member_count=2, recording_callback_url=url)
    agent, customer = two_voices()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    mpc = sdk.phlo.get(phlo.phlo_id).multi_party_call(phlo.node_id)
    agent_hz, customer_hz = tone_of(api, agent), tone_of(api, customer)
    assert agent_hz != customer_hz, "pick addresses whose tones differ"
    time.sleep(1.5)  # both talk
    assert mpc.member(customer).hold().error == ""
    time.sleep(1.5)  # the agent alone is heard
    assert mpc.member(customer).unhold().error == ""
    time.sleep(1.0)
    paused = phlo.http.post(f"{phlo.node_path}/recording", json={"action": "pause", "trigger_source": agent})
    assert paused.status_code == 201, paused.text
    time.sleep(1.5)
    resumed = phlo.http.post(
        f"{phlo.node_path}/recording", json={"action": "resume", "trigger_source": agent}
    )
    assert resumed.status_code == 201, resumed.text
    time.sleep(1.0)
    assert mpc.member(agent).hangup().error == ""
    assert mpc.member(customer).hangup().error == ""
    phlo.wait_ended(mpc_uuid)

    names = ["MPCRecordingInitiated", "MPCRecordingPaused", "MPCRecordingResumed", "MPCRecordingCompleted"]
    wait_until(lambda: len(recording_events(receiver, mpc_uuid)) >= 4, timeout=10, what="recording callbacks")
    events = sorted(recording_events(receiver, mpc_uuid), key=lambda p: int(p["SequenceNumber"]))
    assert [e["EventName"] for e in events] == names
    assert_v3_signed(receiver, url, mpc_uuid)
    done = events[-1]
    assert done["RecordingFormat"] == "wav" and done["MPCUUID"] == mpc_uuid
    recording_id = done["RecordingUUID"]
    assert done["RecordingURL"].endswith(f"/v1/recordings/{recording_id}/download")

    # The file's length is the wall clock's (pause included: the timeline is kept), within 2%.
    started, ended = at(done["RecordingStartTime"]), at(done["RecordingEndTime"])
    duration_s = int(done["RecordingDurationMs"]) / 1000
    assert abs(duration_s - (ended - started)) <= 0.02 * (ended - started), (duration_s, ended - started)

    response = phlo.http.get(f"/v1/recordings/{recording_id}/download")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(response.content)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (RATE, 1, 2)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert abs(len(pcm) / RATE - duration_s) < 0.05

    # Stretches, in seconds from the recording's start, from the events' own times.
    def since(event_name: str) -> float:
        return at(next(e["EventTimestamp"] for e in events if e["EventName"] == event_name)) - started

    # The node has no callback_url: only the recording's events reach recording_callback_url.
    assert len(receiver.delivered(mpc_uuid)) == len(events)
    held_at, unheld_at = held_times(phlo, mpc_uuid, started)
    both = stretch(pcm, 0.0, held_at)
    alone = stretch(pcm, held_at, unheld_at)
    silent = stretch(pcm, since("MPCRecordingPaused"), since("MPCRecordingResumed"))
    after = stretch(pcm, since("MPCRecordingResumed"), duration_s)
    assert level_at(both, agent_hz) > 0.1 and level_at(both, customer_hz) > 0.1
    assert level_at(alone, agent_hz) > 0.1 and level_at(alone, customer_hz) < 0.005
    assert np.abs(silent).max() == 0
    assert level_at(after, agent_hz) > 0.1 and level_at(after, customer_hz) > 0.1


def held_times(phlo: Any, mpc_uuid: str, started: float) -> tuple[float, float]:
    """When the customer was held and unheld, in seconds from the recording's start (the event log)."""
    response = phlo.http.get(f"/v1/console/conferences/{mpc_uuid}")
    assert response.status_code == 200, response.text
    events = response.json()["events"]
    held = next(e for e in events if e["event"] == "member_held")
    unheld = next(e for e in events if e["event"] == "member_unheld")
    return float(held["at"]) - started, float(unheld["at"]) - started


def test_recordings_are_the_accounts_own_listed_and_downloaded_with_ranges(
    api: Api, server: ServerProcess
) -> None:
    phlo = api.create_phlo(record=True, record_file_format="{{fmt}}")
    agent, customer = number(), number()
    phlo.run(agent=agent, customer=customer, fmt="wav")
    phlo.wait_member(customer, status="connected", hears=[agent])
    mpc_uuid = phlo.conference()["mpc_uuid"]
    time.sleep(1.0)
    api.hang_up_phone(agent)
    api.hang_up_phone(customer)
    phlo.wait_ended(mpc_uuid)

    def completed() -> dict[str, Any] | None:
        body = api.http.get("/v1/recordings", params={"mpc_uuid": mpc_uuid}).json()
        objects = [o for o in body["objects"] if o["state"] == "completed"]
        return objects[0] if objects else None

    recording = wait_until(completed, timeout=10, what="the recording completed")
    assert recording["recording_format"] == "wav" and recording["recording_type"] == "conference"
    assert recording["recording_duration_ms"] > 500
    path = f"/v1/recordings/{recording['recording_id']}"
    assert api.http.get(path).json()["recording_id"] == recording["recording_id"]
    whole = api.http.get(path + "/download").content
    assert whole[:4] == b"RIFF" and len(whole) == recording["size_bytes"]
    part = api.http.get(path + "/download", headers={"Range": "bytes=4-11"})
    assert part.status_code == 206 and part.content == whole[4:12]
    assert part.headers["content-range"] == f"bytes 4-11/{len(whole)}"
    beyond = api.http.get(path + "/download", headers={"Range": f"bytes={len(whole)}-"})
    assert beyond.status_code == 416

    other_id, other_token = add_account(server)
    other = guarded_client(server.url, auth=(other_id, other_token))
    for suffix in ("", "/download"):
        assert other.get(path + suffix).status_code == 404
    assert other.get("/v1/recordings").json()["meta"]["total_count"] == 0
    assert other.delete(path).status_code == 404
    other.close()

    page = api.http.get("/v1/recordings", params={"limit": 21})
    assert page.status_code == 400
    deleted = api.http.delete(path)
    assert deleted.status_code == 200 and deleted.json()["recording_id"] == recording["recording_id"]
    assert api.http.get(path).status_code == 404


def by_name(receiver: CallbackReceiver, mpc_uuid: str, name: str) -> list[dict[str, str]]:
    return [e for e in recording_events(receiver, mpc_uuid) if e["EventName"] == name]


def downloaded_pcm(api: Api, recording_id: str) -> np.ndarray:
    response = api.http.get(f"/v1/recordings/{recording_id}/download")
    assert response.status_code == 200
    with wave.open(io.BytesIO(response.content)) as wav:  # a playable file: sizes repaired
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def test_a_recording_cut_by_kill_9_is_finished_and_goes_on_in_a_new_segment(
    server_factory: Callable[..., ServerProcess], receiver: CallbackReceiver
) -> None:
    server = server_factory()
    api = Api(server)
    url = receiver.url("/recordings")
    phlo = api.create_phlo(record=True, record_min_member_count=2, recording_callback_url=url)
    agent, customer = two_voices()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    wait_until(lambda: recording_events(receiver, mpc_uuid), what="the recording initiated")
    time.sleep(3.0)  # past a few header rewrites (every 1 s of audio)
    server.kill()  # SIGKILL: no flush, no header, no Completed
    [first] = recording_events(receiver, mpc_uuid)
    assert first["EventName"] == "MPCRecordingInitiated"
    old_id = first["RecordingUUID"]

    server.start()
    api = Api(server)
    # The old segment is repaired and Completed; the recording goes on in a new one that names it.
    wait_until(
        lambda: (
            by_name(receiver, mpc_uuid, "MPCRecordingCompleted")
            and len(by_name(receiver, mpc_uuid, "MPCRecordingInitiated")) >= 2
        ),
        timeout=15,
        what="the old segment completed and the new one initiated",
    )
    [done] = by_name(receiver, mpc_uuid, "MPCRecordingCompleted")
    assert done["RecordingUUID"] == old_id
    [segment] = [
        e for e in by_name(receiver, mpc_uuid, "MPCRecordingInitiated") if e["RecordingUUID"] != old_id
    ]
    assert segment["PreviousRecordingUUID"] == old_id and "PreviousRecordingUUID" not in first
    assert int(segment["SequenceNumber"]) < int(done["SequenceNumber"])  # started, then the old file done
    assert_v3_signed(receiver, url, mpc_uuid)
    duration_s = int(done["RecordingDurationMs"]) / 1000
    assert 1.5 <= duration_s <= 4.0, duration_s  # up to the crash, less what was not flushed yet
    pcm = downloaded_pcm(api, old_id)
    assert abs(len(pcm) / RATE - duration_s) < 0.05
    body = stretch(pcm, 0.0, duration_s)
    assert level_at(body, phone_tone_hz(agent)) > 0.1 and level_at(body, phone_tone_hz(customer)) > 0.1

    time.sleep(2.0)  # both talk into the new segment
    api.hang_up_phone(agent)
    api.hang_up_phone(customer)
    Phlo(api, phlo.phlo_id, phlo.node_id).wait_ended(mpc_uuid, timeout=10)
    wait_until(
        lambda: len(by_name(receiver, mpc_uuid, "MPCRecordingCompleted")) >= 2,
        timeout=10,
        what="the new segment completed",
    )
    [last] = [e for e in by_name(receiver, mpc_uuid, "MPCRecordingCompleted") if e["RecordingUUID"] != old_id]
    assert last["RecordingUUID"] == segment["RecordingUUID"]
    assert last["PreviousRecordingUUID"] == old_id
    new_s = int(last["RecordingDurationMs"]) / 1000
    assert new_s >= 1.5, new_s
    new_pcm = downloaded_pcm(api, last["RecordingUUID"])
    after = stretch(new_pcm, 0.0, new_s)
    assert level_at(after, phone_tone_hz(agent)) > 0.1 and level_at(after, phone_tone_hz(customer)) > 0.1


def test_participant_tracks_hold_only_their_members_voice(api: Api, receiver: CallbackReceiver) -> None:
    url = receiver.url("/tracks")
    phlo = api.create_phlo(record_participant_track=True, recording_callback_url=url)
    agent, customer = two_voices()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    time.sleep(1.0)
    member_path = f"{phlo.node_path}/member_recording/{customer}"
    stopped = phlo.http.post(member_path, json={"action": "stop"})
    assert stopped.status_code == 201, stopped.text
    again = phlo.http.post(member_path, json={"action": "stop"})
    assert again.status_code == 400 and "not being recorded" in again.json()["error"]
    assert phlo.http.post(member_path, json={"action": "start", "file_format": "mp3"}).status_code == 201
    time.sleep(1.0)
    api.hang_up_phone(agent)
    api.hang_up_phone(customer)
    phlo.wait_ended(mpc_uuid)

    wait_until(lambda: len(recording_events(receiver, mpc_uuid)) >= 6, timeout=10, what="the tracks' events")
    events = sorted(recording_events(receiver, mpc_uuid), key=lambda p: int(p["SequenceNumber"]))
    by_member: dict[str, list[str]] = {}
    for event in events:
        by_member.setdefault(event["MemberID"], []).append(event["EventName"])
    track = ["ParticipantRecordingCompleted", "ParticipantRecordingInitiated"]
    # A stopped track's Completed may follow the next track's Initiated (its file closes meanwhile).
    assert {member: sorted(names) for member, names in by_member.items()} == {
        agent: track,
        customer: sorted(track + track),
    }
    assert_v3_signed(receiver, url, mpc_uuid)

    rows = api.http.get("/v1/recordings", params={"mpc_uuid": mpc_uuid, "member": agent}).json()["objects"]
    assert [r["recording_type"] for r in rows] == ["participant"]
    wav_bytes = api.http.get(f"/v1/recordings/{rows[0]['recording_id']}/download").content
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    body = stretch(pcm, 0.0, len(pcm) / RATE)
    assert level_at(body, phone_tone_hz(agent)) > 0.1
    assert level_at(body, phone_tone_hz(customer)) < 0.005
    mp3 = api.http.get("/v1/recordings", params={"member": customer}).json()["objects"][0]
    assert mp3["recording_format"] == "mp3" and mp3["state"] == "completed"
    download = api.http.get(f"/v1/recordings/{mp3['recording_id']}/download")
    assert download.headers["content-type"] == "audio/mpeg" and len(download.content) == mp3["size_bytes"]
    decoded = miniaudio.decode(
        download.content, output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1, sample_rate=RATE
    )
    voice = stretch(np.frombuffer(decoded.samples, dtype="<i2"), 0.0, decoded.duration)
    assert level_at(voice, phone_tone_hz(customer)) > 0.1 and level_at(voice, phone_tone_hz(agent)) < 0.01


def test_recordings_past_their_retention_are_deleted_file_and_row(
    server_factory: Callable[..., ServerProcess],
) -> None:
    env = {"BRIDGELINE_RECORDINGS_RETENTION_DAYS": "0.00002", "BRIDGELINE_PRUNE_INTERVAL": "0.5"}  # 1.7 s
    server = server_factory(env=env)
    api = Api(server)
    phlo = api.create_phlo(record=True)
    agent, customer = two_voices()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    api.hang_up_phone(agent)
    api.hang_up_phone(customer)
    phlo.wait_ended(mpc_uuid)

    def listed() -> list[dict[str, Any]]:
        return list(api.http.get("/v1/recordings", params={"mpc_uuid": mpc_uuid}).json()["objects"])

    recording = wait_until(lambda: [r for r in listed() if r["state"] == "completed"], what="completed")[0]
    folder = server.data_dir / "recordings" / api.auth_id
    assert (folder / f"{recording['recording_id']}.wav").is_file()
    wait_until(lambda: not listed(), timeout=15, what="the row pruned")
    assert not (folder / f"{recording['recording_id']}.wav").exists()
    assert api.http.get(f"/v1/recordings/{recording['recording_id']}").status_code == 404
