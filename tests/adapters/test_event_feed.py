"""The event feed over a real store: what other nodes committed reaches the hub once, in order, per
account, within the read budget; the local service's own commits are never published twice."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridgeline.adapters.console.feed import EventFeed
from bridgeline.adapters.console.hub import EventHub, Subscription
from bridgeline.adapters.store import SqliteStore
from bridgeline.app.records import ConferenceRecord, ConferenceStatus, EventRecord
from bridgeline.config import FEED_SETTINGS, Settings
from bridgeline.core import snapshot
from bridgeline.core.conference import Conference, ConferenceRules
from bridgeline.core.model import QueuedDial, Role


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(str(tmp_path / "feed.db"))
    await opened.migrate()
    yield opened
    await opened.close()


def at_version(conference_id: str, version: int) -> tuple[Conference, dict[str, Any]]:
    """A conference whose events 1..version are committed, and its stored state."""
    conf, _ = Conference.start(
        conference_id, ConferenceRules(), 100.0, [QueuedDial("+14155550100", Role.AGENT)], sequential=True
    )
    core = snapshot.dump(conf)
    core["next_seq"] = version + 1
    return snapshot.load(core), {"core": core, "settings": {}}


def record(conference_id: str, auth_id: str, state: dict[str, Any]) -> ConferenceRecord:
    return ConferenceRecord(
        conference_id, auth_id, "phlo-1", "node-1", None, ConferenceStatus.LIVE, state, 100.0, 100.0, None
    )


def events(conference_id: str, seqs: range) -> list[EventRecord]:
    return [EventRecord(conference_id, seq, "member_dialing", 100.0 + seq, {"n": seq}) for seq in seqs]


async def commit(store: SqliteStore, conference_id: str, seqs: range, auth_id: str = "MA1") -> None:
    """What another node's commit leaves in the store."""
    _, state = at_version(conference_id, seqs[-1])
    await store.commit_conference(record(conference_id, auth_id, state), events(conference_id, seqs))


async def received(subscription: Subscription, count: int) -> list[tuple[str, int]]:
    """(conference, seq) of the next `count` event messages (fails after 5 s)."""
    got: list[tuple[str, int]] = []
    async with asyncio.timeout(5):
        while len(got) < count:
            for chunk in await subscription.take(1.0):
                data = json.loads(chunk.decode().split("data: ", 1)[1])
                got.append((data["mpc_uuid"], data["event"]["sequence"]))
    return got


async def test_other_nodes_events_reach_the_hub_once_in_order_per_account(store: SqliteStore) -> None:
    hub = EventHub()
    watching, other_account = hub.subscribe("MA1"), hub.subscribe("MA2")
    await commit(store, "before", range(1, 3))  # already there when the node starts: not replayed
    feed = EventFeed(hub, store, poll_interval=0.05, max_events=3)
    feed.start()
    try:
        async with asyncio.timeout(5):
            await feed.ready.wait()
        await commit(store, "new", range(1, 5))
        await commit(store, "new", range(5, 8))
        await commit(store, "before", range(3, 4))
        await commit(store, "unwatched", range(1, 4), auth_id="MA3")
        got = await received(watching, 8)
        assert [seq for conference, seq in got if conference == "new"] == list(range(1, 8))
        assert [seq for conference, seq in got if conference == "before"] == [3]

        # This node's own commit: published at once, and not again when the feed finds it in the store.
        conf, state = at_version("new", 8)
        feed.local_commit(record("new", "MA1", state), conf, events("new", range(8, 9)))
        await commit(store, "new", range(8, 10))
        assert await received(watching, 2) == [("new", 8), ("new", 9)]
        # ... and the other way round: the feed published seq 9 first, the service's late call adds nothing.
        feed.local_commit(record("new", "MA1", state), conf, events("new", range(9, 10)))
        await commit(store, "new", range(10, 11))
        assert await received(watching, 1) == [("new", 10)]
        assert await other_account.take(0.2) == []  # another account's stream: nothing
        assert feed.remote_events == 10  # 7 + 1 + 2 from the store; seq 8 came from the service
    finally:
        await feed.stop()


@pytest.mark.parametrize("name", sorted(FEED_SETTINGS))
def test_the_feed_settings_must_be_positive(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"BRIDGELINE_{name.upper()}", "0")
    with pytest.raises(ValueError, match=name):
        Settings.from_env()


def test_the_feed_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGELINE_EVENT_FEED_POLL_INTERVAL", "0.25")
    monkeypatch.setenv("BRIDGELINE_EVENT_FEED_MAX_EVENTS", "50")
    monkeypatch.setenv("BRIDGELINE_WEBHOOK_POLL_INTERVAL", "2")
    settings = Settings.from_env()
    assert (settings.event_feed_poll_interval, settings.event_feed_max_events) == (0.25, 50)
    assert settings.webhook_poll_interval == 2.0
