"""Music settings as an attack surface, on a real server (sip carrier, real RTP to sipp phones): a
URL served by a local HTTP server is played; a link out of the media directory, a FIFO, a slow URL
and a huge one are never played nor allowed to stall anything: the default music plays, and the
node's callback receives a `media_fallback` event naming the member, the setting and the reason."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2ekit import CallbackReceiver, Phlo, wait_until
from sipaudio import assert_hears
from sipkit import Sipp, SipServer
from siplab import ALL_TONES, TONE_A, TONE_B, Lab

sys.path.insert(0, str(Path(__file__).parent.parent / "media_engine"))
from media_http import MediaServer, media_server, tone_wav

FETCH_TIMEOUT_S = 1
MAX_BYTES = 300_000
URL_TONE, OUTSIDE_TONE = 1200, 2000
AGENT_HOLD_DEFAULT, WAIT_DEFAULT = [440], [350, 440]  # adapters/carriers/sip/music.py DEFAULT_SPECS
NOT_HEARD = [*ALL_TONES, URL_TONE, OUTSIDE_TONE]
OWN_SERVER = True  # started with the media limits below (conftest.py)


@pytest.fixture(scope="module", autouse=True)
def media_settings() -> Iterator[None]:
    """The module's server starts with these limits (autouse: before the module's `server`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BRIDGELINE_MEDIA_FETCH_TIMEOUT_S", str(FETCH_TIMEOUT_S))
        patch.setenv("BRIDGELINE_MEDIA_MAX_BYTES", str(MAX_BYTES))
        yield


@pytest.fixture
def http() -> Iterator[MediaServer]:
    with media_server() as server:
        yield server


@pytest.fixture
def media(server: SipServer) -> Path:
    """The server's media directory (the default, <data-dir>/media) with a link out and a FIFO."""
    directory = server.root / "data" / "media"
    directory.mkdir(exist_ok=True)
    outside = server.root / "outside.wav"
    outside.write_bytes(tone_wav(OUTSIDE_TONE))  # audible if the server ever read it
    if not (directory / "link.wav").is_symlink():
        (directory / "link.wav").symlink_to(outside)
        os.mkfifo(directory / "fifo.wav")  # a reader that opened it would wait for a writer forever
    return directory


def others(*heard: int) -> list[int]:
    return [f for f in NOT_HEARD if f not in heard]


def fallbacks(receiver: CallbackReceiver) -> set[tuple[str, str, str]]:
    """(member, setting, reason) of every media_fallback callback received so far."""
    return {
        (c.params["member_address"], c.params["setting"], c.params["reason"])
        for c in receiver.delivered()
        if c.params["event"] == "media_fallback"
    }


def fallback(receiver: CallbackReceiver, member: str, setting: str) -> str:
    """Wait for the media_fallback callback of this member and setting: its reason."""

    def found() -> str | None:
        return next((r for m, s, r in fallbacks(receiver) if (m, s) == (member, setting)), None)

    return str(wait_until(found, timeout=10, what=f"media_fallback for {member} {setting}"))


def call(lab: Lab, receiver: CallbackReceiver, **music: Any) -> tuple[Sipp, Sipp, Phlo, str, Any]:
    """Agent and customer (sipp phones, captured) connected by a run of a PHLO with these music
    settings and its callbacks going to `receiver`: (agent, customer, phlo, mpc_uuid, SDK node)."""
    agent = lab.sipp_phone("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo(callback_url=receiver.url(), **music)
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[agent.uri])
    return agent, customer, phlo, view["mpc_uuid"], lab.mpc(phlo)


def test_a_url_plays_and_a_link_out_or_a_fifo_falls_back_with_a_callback(
    lab: Lab, http: MediaServer, media: Path
) -> None:
    with CallbackReceiver() as receiver:
        agent, customer, phlo, mpc_uuid, mpc = call(
            lab,
            receiver,
            customer_hold_music=f"{http.url}/tone{URL_TONE}.wav",
            agent_hold_music="link.wav",
            wait_music="fifo.wav",
        )
        mpc.member(customer.uri).hold()
        phlo.wait_member(customer.uri, status="on_hold")
        customer_held = lab.listen()
        mpc.member(customer.uri).unhold()
        lab.connected(phlo, customer.uri, hears=[agent.uri])
        mpc.member(agent.uri).hold()
        phlo.wait_member(agent.uri, status="on_hold")
        agent_held = lab.listen()
        mpc.member(agent.uri).hangup()
        lab.left(phlo, agent.uri, "hangup")
        lab.connected(phlo, customer.uri, hears=[])
        alone = lab.listen()
        fallback(receiver, customer.uri, "wait_music")
        events = fallbacks(receiver)
        mpc.member(customer.uri).hangup()
        lab.assert_ended(phlo, mpc_uuid, agent, customer)

    assert_hears(lab.heard(customer, customer_held), [URL_TONE], others(URL_TONE))
    assert_hears(lab.heard(agent, agent_held), AGENT_HOLD_DEFAULT, others())
    assert_hears(lab.heard(customer, alone), WAIT_DEFAULT, others())
    # The agent, alone while the customer rang, heard the wait music too, if only for a moment:
    # reported when its load failed before the customer answered.
    assert events - {(agent.uri, "wait_music", "fifo.wav: not a regular file")} == {
        (agent.uri, "agent_hold_music", "link.wav: a link leads out of the media directory"),
        (customer.uri, "wait_music", "fifo.wav: not a regular file"),
    }
    assert http.requests[f"/tone{URL_TONE}.wav"] == 1


def test_a_slow_or_huge_url_falls_back_without_stalling_the_server(lab: Lab, http: MediaServer) -> None:
    with CallbackReceiver() as receiver:
        agent, customer, phlo, mpc_uuid, mpc = call(
            lab, receiver, agent_hold_music=f"{http.url}/slow.wav", wait_music=f"{http.url}/huge.wav"
        )
        mpc.member(agent.uri).hold()
        phlo.wait_member(agent.uri, status="on_hold")
        start = time.time()
        with httpx.Client(timeout=0.5) as client:  # the API answers while the server fetches
            answered = [client.get(f"{lab.server.url}/health").status_code for _ in range(5)]
        fetching = lab.listen(seconds=0.6, settle=0.0)  # within the 1 s the fetch may take
        slow = fallback(receiver, agent.uri, "agent_hold_music")
        mpc.member(agent.uri).hangup()
        lab.left(phlo, agent.uri, "hangup")
        lab.connected(phlo, customer.uri, hears=[])
        alone = lab.listen()
        huge = fallback(receiver, customer.uri, "wait_music")
        mpc.member(customer.uri).hangup()
        lab.assert_ended(phlo, mpc_uuid, agent, customer)

    assert answered == [200] * 5
    assert slow == f"{http.url}/slow.wav: no answer within {FETCH_TIMEOUT_S} s"
    assert huge == f"{http.url}/huge.wav: larger than {MAX_BYTES} bytes"
    # The default music kept flowing during the fetch: a packet every 20 ms, none held back.
    assert lab.media_packets(agent, *fetching) >= 0.9 * 50 * (fetching[1] - fetching[0])
    assert fetching[0] - start < FETCH_TIMEOUT_S
    assert_hears(lab.heard(agent, fetching), AGENT_HOLD_DEFAULT, others())
    assert_hears(lab.heard(customer, alone), WAIT_DEFAULT, others())
