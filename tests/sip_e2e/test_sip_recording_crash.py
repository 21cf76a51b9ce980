"""A recording of real phones cut by kill -9 (issue #13): a baresip phone and a sipp phone talk in a
recorded conference; the server is killed and started again on the same data directory. The file the
crash left open is repaired on the start (playable, both voices, up to about the crash) and its
recording completed; the recovered conference goes on recording in a new segment that names it, and
that segment holds both voices after the phones' re-INVITEs."""

from __future__ import annotations

import io
import time
import wave
from typing import Any

import numpy as np
from e2ekit import wait_until
from sipaudio import Heard, assert_hears
from sipkit import SipServer, wait_for
from siplab import ALL_TONES, TONE_A, TONE_B, Lab
from test_sip_recording import recorded_call

OWN_SERVER = True  # killed and restarted by its test
RECOVERED_S = 15.0  # from the restart to both legs recovered (start, store, re-INVITE)
RATE = 8000
EDGE_S = 0.3


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def recordings(lab: Lab, mpc_uuid: str) -> list[dict[str, Any]]:
    body = lab.api.http.get("/v1/recordings", params={"mpc_uuid": mpc_uuid}).json()
    return sorted(body["objects"], key=lambda o: o["recording_start_ms"])


def pcm_of(lab: Lab, recording_id: str) -> np.ndarray:
    response = lab.api.http.get(f"/v1/recordings/{recording_id}/download")
    assert response.status_code == 200
    with wave.open(io.BytesIO(response.content)) as wav:  # opens: the sizes were repaired
        assert wav.getframerate() == RATE
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def middle(pcm: np.ndarray, label: str) -> Heard:
    return Heard(pcm[int(EDGE_S * RATE) : len(pcm) - int(EDGE_S * RATE)].astype(np.float64), label)


def test_a_recording_cut_by_kill_9_is_repaired_and_goes_on_in_a_new_segment(
    lab: Lab, server: SipServer
) -> None:
    agent, customer, phlo, mpc_uuid = recorded_call(lab)
    [first] = wait_until(lambda: recordings(lab, mpc_uuid), what="the recording's row")
    time.sleep(2.5)  # past two WAV header rewrites

    server.kill()
    killed_at = time.time()
    server.restart()
    wait_for(
        lambda: server.metrics().get("bridgeline_sip_recoveries_succeeded_total", 0.0) == 2,
        RECOVERED_S,
        "both legs recovered",
    )

    def repaired_and_continued() -> list[dict[str, Any]] | None:
        rows = recordings(lab, mpc_uuid)
        return rows if len(rows) == 2 and rows[0]["state"] == "completed" else None

    old, segment = wait_until(
        repaired_and_continued, timeout=RECOVERED_S, what="the old file repaired and a new segment started"
    )
    assert old["recording_id"] == first["recording_id"]
    assert segment["previous_recording_id"] == old["recording_id"] and segment["state"] == "recording"
    before = pcm_of(lab, old["recording_id"])
    lost_s = killed_at - old["recording_start_ms"] / 1000 - len(before) / RATE
    assert len(before) / RATE >= 1.5 and -0.1 <= lost_s <= 1.5, (len(before) / RATE, lost_s)
    assert_hears(middle(before, "before the crash"), [TONE_A, TONE_B], others(TONE_A, TONE_B))

    lab.connected(phlo, agent.uri, hears=[customer.uri])
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    time.sleep(2.5)
    mpc = lab.mpc(phlo)
    for phone in (customer, agent):
        mpc.member(phone.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, customer)
    agent.wait_event("CALL_CLOSED")

    def segment_completed() -> dict[str, Any] | None:
        rows = recordings(lab, mpc_uuid)
        return rows[1] if len(rows) == 2 and rows[1]["state"] == "completed" else None

    done = wait_until(segment_completed, timeout=10, what="the new segment completed")
    after = pcm_of(lab, done["recording_id"])
    # The new segment starts at the adoption, before the phones' re-INVITEs bring their audio back:
    # its last stretch, after the phones were heard again, holds both voices.
    tail = after[-int(2.0 * RATE) :]
    assert_hears(middle(tail, "after the restart"), [TONE_A, TONE_B], others(TONE_A, TONE_B))
