"""Idempotency-Key through the whole app in-process (SQLite, sim carrier): which keys are accepted, a
retry while the first request runs, and what a 500 leaves behind (a failed commit, a failure after it).

The end-to-end suite (tests/e2e/test_retries.py) drives the same over HTTP against the real process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_honest_500 import (
    AGENT,
    AUTH,
    NOT_CARRIED_OUT,
    NOTHING_CHANGED,
    THIRD,
    connected,
    failing_dial,
    phlo,
)
from test_service import settle

from bridgeline.adapters.http.app import build_routes
from bridgeline.adapters.http.idempotency import fingerprint
from bridgeline.app.ports import LegRequest
from bridgeline.app.records import KeyClaim, LeaseLost
from bridgeline.app.retention import Pruner
from bridgeline.config import Settings
from bridgeline.main import Bridgeline, build

MAX_KEY = 16


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Bridgeline]:
    settings = Settings(
        data_dir=tmp_path,
        auth_id=AUTH[0],
        auth_token=AUTH[1],
        sim_answer_delay_ms=0,
        idempotency_key_max_length=MAX_KEY,
    )
    bridgeline = await build(settings)
    yield bridgeline
    await bridgeline.stop()


@pytest.fixture
async def client(app: Bridgeline) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridgeline", auth=AUTH) as http:
        yield http


def node_path(phlo_id: str, node_id: str) -> str:
    return f"/v1/phlo/{phlo_id}/multi_party_call/{node_id}"


CALL_THIRD = {"action": "call", "to": THIRD, "trigger_source": AGENT}


async def call_third(client: httpx.AsyncClient, path: str, key: str, **body: Any) -> httpx.Response:
    return await client.post(path, json={**CALL_THIRD, **body}, headers={"Idempotency-Key": key})


async def test_every_post_route_honours_the_key_and_no_other_does(client: httpx.AsyncClient) -> None:
    """A POST changes state; PUT and DELETE are idempotent by their method, GET changes nothing: there
    the header is not even read."""
    for route in build_routes():
        assert route.idempotent_retries == (route.method == "POST"), (route.method, route.path)
    phlo_id, _node_id = await phlo(client)
    bad = {"Idempotency-Key": "k" * (MAX_KEY + 1)}
    assert (await client.get(f"/v1/phlo/{phlo_id}", headers=bad)).status_code == 200
    assert (
        await client.put(f"/v1/sim/phones/{THIRD}", json={"answer": "busy"}, headers=bad)
    ).status_code == 200


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ([("Idempotency-Key", "k" * (MAX_KEY + 1))], "longer than the setting"),
        ([("Idempotency-Key", '"' + "k" * (MAX_KEY + 1) + '"')], "quoted, longer than the setting"),
        ([("Idempotency-Key", "")], "empty"),
        ([("Idempotency-Key", '""')], "empty quoted string"),
        ([("Idempotency-Key", "caf\u00e9".encode())], "not ASCII"),
        ([("Idempotency-Key", "a\tb")], "a control character"),
        ([("Idempotency-Key", '"abc')], "an unterminated quoted string"),
        ([("Idempotency-Key", '"a"b"')], "a quote inside a quoted string"),
        ([("Idempotency-Key", '"a\\b"')], 'an escape other than \\" and \\\\'),
        ([("Idempotency-Key", "one"), ("Idempotency-Key", "two")], "two headers"),
    ],
)
async def test_a_key_we_do_not_accept_is_a_400_and_nothing_runs(
    app: Bridgeline, client: httpx.AsyncClient, headers: list[tuple[str, str]], why: str
) -> None:
    phlo_id, node_id, live = await connected(app, client)
    response = await client.post(node_path(phlo_id, node_id), json=CALL_THIRD, headers=headers)
    assert response.status_code == 400, why
    assert set(response.json()) == {"api_id", "error"} and "Idempotency-Key" in response.json()["error"]
    assert live.conf.live_member(THIRD) is None


async def test_the_longest_key_and_its_quoted_form_are_one_key(
    app: Bridgeline, client: httpx.AsyncClient
) -> None:
    phlo_id, node_id, _live = await connected(app, client)
    key = "k" * MAX_KEY
    first = await call_third(client, node_path(phlo_id, node_id), key)
    assert first.status_code == 201
    quoted = await call_third(client, node_path(phlo_id, node_id), f'"{key}"')
    assert (quoted.status_code, quoted.content) == (201, first.content)
    assert quoted.headers["idempotent-replayed"] == "true"


async def test_a_retry_while_the_first_runs_is_a_409_and_then_gets_the_first_answer(
    app: Bridgeline, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    phlo_id, node_id, live = await connected(app, client)
    async with live.lock:  # the answers' commits are done under it: none may meet the broken store
        commit = app.store.commit_conference
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_commit(*args: Any, **kwargs: Any) -> None:
        entered.set()
        await release.wait()
        await commit(*args, **kwargs)

    monkeypatch.setattr(app.store, "commit_conference", slow_commit)
    path = node_path(phlo_id, node_id)
    first = asyncio.create_task(call_third(client, path, "slow-1"))
    await asyncio.wait_for(entered.wait(), 5)
    during = await asyncio.wait_for(call_third(client, path, "slow-1"), 5)
    assert during.status_code == 409
    assert set(during.json()) == {"api_id", "error"} and "in progress" in during.json()["error"]
    assert during.headers["retry-after"] == "1"
    release.set()
    answered = await first
    assert answered.status_code == 201
    monkeypatch.setattr(app.store, "commit_conference", commit)
    after = await call_third(client, path, "slow-1")
    assert (after.status_code, after.content) == (201, answered.content)
    assert [m for m in live.conf.members if m == THIRD] == [THIRD]


async def test_a_500_that_changed_nothing_gives_the_key_back_and_the_retry_runs(
    app: Bridgeline, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    phlo_id, node_id, live = await connected(app, client)
    async with live.lock:  # the answers' commits are done under it: none may meet the broken store
        commit = app.store.commit_conference

    async def failing_commit(*args: Any) -> None:
        raise RuntimeError("the store broke")

    monkeypatch.setattr(app.store, "commit_conference", failing_commit)
    failed = await call_third(client, node_path(phlo_id, node_id), "after-500")
    assert (failed.status_code, failed.json()["error"]) == (500, NOTHING_CHANGED)
    monkeypatch.setattr(app.store, "commit_conference", commit)
    retried = await call_third(client, node_path(phlo_id, node_id), "after-500")
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers
    await settle(lambda: (m := live.conf.live_member(THIRD)) is not None and m.answered)
    again = await call_third(client, node_path(phlo_id, node_id), "after-500")  # the retry's answer is kept
    assert (again.status_code, again.content) == (201, retried.content)


async def test_a_500_after_the_commit_is_kept_and_the_retry_does_not_dial_again(
    app: Bridgeline, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    phlo_id, node_id, _live = await connected(app, client)
    dialed: list[LegRequest] = []
    monkeypatch.setattr(app.carrier, "dial", lambda request: (dialed.append(request), failing_dial())[1])
    failed = await call_third(client, node_path(phlo_id, node_id), "saved-500")
    assert (failed.status_code, failed.json()["error"]) == (500, NOT_CARRIED_OUT)
    retried = await call_third(client, node_path(phlo_id, node_id), "saved-500")
    assert (retried.status_code, retried.content) == (500, failed.content)
    assert len(dialed) == 1


async def test_the_same_key_with_another_request_is_a_422(app: Bridgeline, client: httpx.AsyncClient) -> None:
    phlo_id, node_id, live = await connected(app, client)
    path = node_path(phlo_id, node_id)
    assert (await call_third(client, path, "once")).status_code == 201
    other_body = await call_third(client, path, "once", role="customer")
    assert other_body.status_code == 422 and set(other_body.json()) == {"api_id", "error"}
    other_path = await client.post(
        f"{path}/members/{AGENT}", json={"action": "hold"}, headers={"Idempotency-Key": "once"}
    )
    assert other_path.status_code == 422
    assert live.conf.members[AGENT].status.value == "connected"  # the hold did not run


async def test_the_same_fields_in_another_order_or_encoding_are_the_same_request(
    app: Bridgeline, client: httpx.AsyncClient
) -> None:
    phlo_id, node_id, _live = await connected(app, client)
    path = node_path(phlo_id, node_id)
    first = await client.post(path, json=CALL_THIRD, headers={"Idempotency-Key": "forms"})
    assert first.status_code == 201
    reordered = await client.post(
        path + "/", json=dict(reversed(CALL_THIRD.items())), headers={"idempotency-key": "forms"}
    )
    as_form = await client.post(path, data=CALL_THIRD, headers={"Idempotency-Key": "forms"})
    assert [(r.status_code, r.content) for r in (reordered, as_form)] == [(201, first.content)] * 2


async def test_the_pruner_deletes_keys_past_their_retention(
    app: Bridgeline, client: httpx.AsyncClient
) -> None:
    for index in range(5):
        await client.post(
            f"/v1/sim/phones/+1415555999{index}/hangup", headers={"Idempotency-Key": f"p{index}"}
        )
    later = time.time() + 10
    pruner = Pruner(
        app.store,
        conference_retention=0,
        run_retention=0,
        idempotency_retention=5,
        batch=2,
        clock=lambda: later,
    )
    assert (await pruner.prune_once()).idempotency_keys == 5
    assert (await pruner.prune_once()).idempotency_keys == 0


async def test_a_claim_left_by_a_dead_process_is_taken_over_after_the_lock_setting(tmp_path: Path) -> None:
    """A claim nobody answers (its process died) holds the key for `idempotency_lock_s`, then the same
    request runs."""
    settings = Settings(
        data_dir=tmp_path, auth_id=AUTH[0], auth_token=AUTH[1], sim_answer_delay_ms=0, idempotency_lock_s=0.3
    )
    app = await build(settings)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app.api), base_url="http://bridgeline", auth=AUTH
        ) as client:
            phlo_id, node_id, live = await connected(app, client)
            path = node_path(phlo_id, node_id)
            now = time.time()
            dead = KeyClaim(AUTH[0], "orphan", fingerprint("POST", path, CALL_THIRD), "dead", now, now + 0.3)
            assert await app.store.claim_key(dead, expired_before=0) is None
            assert (await call_third(client, path, "orphan")).status_code == 409
            await asyncio.sleep(0.4)
            taken_over = await call_third(client, path, "orphan")
            assert taken_over.status_code == 201, taken_over.text
            assert live.conf.live_member(THIRD) is not None
    finally:
        await app.stop()


async def test_an_action_on_a_conference_that_moved_gives_the_key_back(
    app: Bridgeline, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fenced (another node took the conference over): 409 with Retry-After, nothing done, and the key is
    free for the retry (which the owner, or forwarding, answers for real)."""
    phlo_id, node_id, live = await connected(app, client)
    async with live.lock:  # the answers' commits are done under it: none may meet the broken store
        commit = app.store.commit_conference

    async def fenced_commit(*args: Any) -> None:
        raise LeaseLost("another node owns it")

    monkeypatch.setattr(app.store, "commit_conference", fenced_commit)
    moved = await call_third(client, node_path(phlo_id, node_id), "after-move")
    assert (moved.status_code, moved.headers["retry-after"]) == (409, "1")
    assert "moved to another node" in moved.json()["error"]
    assert app.conferences.get_live(live.meta.conference_id) is None  # forgotten here, no hang-up
    monkeypatch.setattr(app.store, "commit_conference", commit)
    retried = await call_third(client, node_path(phlo_id, node_id), "after-move")
    assert "idempotent-replayed" not in retried.headers  # not the kept 409: it ran again
    assert retried.status_code == 400  # this node no longer has the conference
