"""A 500 says "nothing was changed" only when nothing was: the whole app in-process (SQLite, sim
carrier) with a store that fails its commit, and a carrier that fails after the commit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_service import settle

from bridgeline.app.ports import LegRequest
from bridgeline.app.service import LiveConference
from bridgeline.config import Settings
from bridgeline.main import Bridgeline, build

AUTH = ("MAHONEST500ACCOUNT01", "honest-500-token-0123456789")
AGENT, CUSTOMER, THIRD = "+14155550001", "+14155550002", "+14155550003"
NOTHING_CHANGED = "internal server error; nothing was changed by this request"
NOT_CARRIED_OUT = "internal server error; the change was saved but not fully carried out"


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Bridgeline]:
    settings = Settings(data_dir=tmp_path, auth_id=AUTH[0], auth_token=AUTH[1], sim_answer_delay_ms=0)
    bridgeline = await build(settings)
    yield bridgeline
    await bridgeline.stop()


@pytest.fixture
async def client(app: Bridgeline) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridgeline", auth=AUTH) as http:
        yield http


async def phlo(client: httpx.AsyncClient) -> tuple[str, str]:
    definition = {
        "name": "honest",
        "nodes": [{"name": "Multi-Party Call_1", "type": "multi_party_call"}],
        "run": {
            "mode": "parallel",
            "dial": [{"to": AGENT, "role": "agent"}, {"to": CUSTOMER, "role": "customer"}],
        },
    }
    response = await client.post("/v1/phlo", json=definition)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["phlo_id"], body["nodes"][0]["node_id"]


def failing_dial(*args: Any) -> None:
    raise RuntimeError("the carrier broke")


async def run_phlo(client: httpx.AsyncClient, phlo_id: str) -> httpx.Response:
    return await client.post(f"/v1/account/{AUTH[0]}/phlo/{phlo_id}", json={})


async def connected(app: Bridgeline, client: httpx.AsyncClient) -> tuple[str, str, LiveConference]:
    phlo_id, node_id = await phlo(client)
    assert (await run_phlo(client, phlo_id)).status_code == 201
    (live,) = app.conferences.live_conferences(AUTH[0], phlo_id, node_id)
    await settle(lambda: all(m.answered for m in live.conf.live_members()))
    return phlo_id, node_id, live


async def call_third(client: httpx.AsyncClient, phlo_id: str, node_id: str) -> httpx.Response:
    action = {"action": "call", "to": THIRD, "trigger_source": AGENT}
    return await client.post(f"/v1/phlo/{phlo_id}/multi_party_call/{node_id}", json=action)


async def test_a_failed_commit_changed_nothing(
    app: Bridgeline, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    phlo_id, node_id, live = await connected(app, client)
    async with live.lock:  # the answers' commits are done under it: the store holds what memory does
        stored = await app.store.get_conference(live.meta.conference_id)

    async def failing_commit(*args: Any) -> None:
        raise RuntimeError("the store broke")

    monkeypatch.setattr(app.store, "commit_conference", failing_commit)
    response = await call_third(client, phlo_id, node_id)
    assert (response.status_code, response.json()["error"]) == (500, NOTHING_CHANGED)
    assert live.conf.live_member(THIRD) is None
    assert await app.store.get_conference(live.meta.conference_id) == stored


async def test_a_failure_after_the_commit_says_the_change_was_saved(
    app: Bridgeline, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    phlo_id, node_id, live = await connected(app, client)
    monkeypatch.setattr(app.carrier, "dial", failing_dial)
    response = await call_third(client, phlo_id, node_id)
    assert (response.status_code, response.json()["error"]) == (500, NOT_CARRIED_OUT)
    stored = await app.store.get_conference(live.meta.conference_id)
    assert stored is not None and THIRD in str(stored.state)


async def test_a_conference_whose_first_dial_failed_stays_live(
    app: Bridgeline, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    phlo_id, node_id = await phlo(client)
    dialed: list[LegRequest] = []
    monkeypatch.setattr(app.carrier, "dial", lambda request: (dialed.append(request), failing_dial())[1])
    response = await run_phlo(client, phlo_id)
    assert (response.status_code, response.json()["error"]) == (500, NOT_CARRIED_OUT)
    assert len(dialed) == 1  # the first dial failed; the commit before it stands
    (live,) = app.conferences.live_conferences(AUTH[0], phlo_id, node_id)
    stored = await app.store.get_conference(live.meta.conference_id)
    assert stored is not None and stored.status.value == "live"
