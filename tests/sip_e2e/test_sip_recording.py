"""Recording real phones: the conference recording's spectrum holds both talkers' tones, not a held
member's (nor its hold music), through the SIP carrier's media thread tap."""

from __future__ import annotations

import io
import time
import wave
from typing import Any

import numpy as np
from e2ekit import Phlo, wait_until
from sipaudio import Heard, assert_hears
from sipkit import Baresip, Sipp
from siplab import ALL_TONES, TONE_A, TONE_B, Lab

RATE = 8000
EDGE_S = 0.3  # each stretch's edges are left out: a change takes effect within a few ticks


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def part(pcm: np.ndarray, start_s: float, end_s: float, label: str) -> Heard:
    chunk = pcm[int((start_s + EDGE_S) * RATE) : int((end_s - EDGE_S) * RATE)]
    return Heard(chunk.astype(np.float64), label)


def recorded_call(lab: Lab) -> tuple[Baresip, Sipp, Phlo, str]:
    """A baresip agent (TONE_A) and a sipp customer (TONE_B) talking in a recorded conference."""
    agent = lab.baresip("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B)
    phlo = lab.create_phlo(record=True, record_min_member_count=2)
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[agent.uri])
    lab.connected(phlo, agent.uri, hears=[customer.uri])
    return agent, customer, phlo, view["mpc_uuid"]


def test_the_conference_recording_holds_both_phones_and_not_the_held_one(lab: Lab) -> None:
    agent, customer, phlo, mpc_uuid = recorded_call(lab)
    mpc = lab.mpc(phlo)
    time.sleep(2.0)
    held_at = time.time()
    mpc.member(customer.uri).hold()
    phlo.wait_member(customer.uri, status="on_hold")
    time.sleep(2.0)
    unheld_at = time.time()
    mpc.member(customer.uri).unhold()
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    time.sleep(2.5)
    hung_up_at = time.time()
    mpc.member(agent.uri).hangup()
    mpc.member(customer.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, customer)
    agent.wait_event("CALL_CLOSED")

    def completed() -> dict[str, Any] | None:
        body = lab.api.http.get("/v1/recordings", params={"mpc_uuid": mpc_uuid}).json()
        return next((o for o in body["objects"] if o["state"] == "completed"), None)

    recording = wait_until(completed, timeout=10, what="the recording completed")
    response = lab.api.http.get(f"/v1/recordings/{recording['recording_id']}/download")
    assert response.status_code == 200
    with wave.open(io.BytesIO(response.content)) as wav:
        assert wav.getframerate() == RATE
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    start_s = recording["recording_start_ms"] / 1000
    seconds = len(pcm) / RATE
    wall = (recording["recording_end_ms"] - recording["recording_start_ms"]) / 1000
    assert abs(seconds - wall) <= 0.02 * wall + 0.1, (seconds, wall)  # a tick or so at the edges

    both = part(pcm, 0.0, held_at - start_s, "both talking")
    alone = part(pcm, held_at - start_s, unheld_at - start_s, "customer held")
    again = part(pcm, unheld_at - start_s, min(seconds, hung_up_at - start_s), "customer back")
    assert_hears(both, [TONE_A, TONE_B], others(TONE_A, TONE_B))
    assert_hears(alone, [TONE_A], others(TONE_A))  # neither the held phone nor its hold music
    assert_hears(again, [TONE_A, TONE_B], others(TONE_A, TONE_B))
