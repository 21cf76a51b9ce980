"""The event hub and the SSE response in process: filtering, bounded buffers, heartbeats, endings."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bridgeline.adapters.console.hub import EventHub, TooManyForAccount, TooManySubscribers
from bridgeline.adapters.console.sse import EventStreamResponse
from bridgeline.app.records import EventRecord
from bridgeline.app.service import ConferenceMeta
from bridgeline.core.conference import Conference, ConferenceRules
from bridgeline.core.model import QueuedDial, Role
from bridgeline.phlo.definition import NodeSettings

AGENT = "+14155550100"


def conference(conference_id: str = "c1") -> Conference:
    conf, _ = Conference.start(
        conference_id, ConferenceRules(), 100.0, [QueuedDial(AGENT, Role.AGENT)], sequential=True
    )
    return conf


def meta(auth_id: str = "MA1", phlo_id: str = "p1", conference_id: str = "c1") -> ConferenceMeta:
    return ConferenceMeta(conference_id, auth_id, phlo_id, "n1", "run1", NodeSettings(), 100.0)


def event(seq: int, type_: str = "member_dialing") -> EventRecord:
    return EventRecord("c1", seq, type_, 100.0 + seq, {"member_address": AGENT, "role": "agent"})


def decode(chunks: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    messages = []
    for block in b"".join(chunks).decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "data" in lines:
            messages.append((lines["event"], json.loads(lines["data"])))
    return messages


async def test_each_event_is_sent_with_the_view_to_the_subscribers_that_want_it() -> None:
    hub = EventHub()
    mine, this_phlo, other_phlo = hub.subscribe("MA1"), hub.subscribe("MA1", "p1"), hub.subscribe("MA1", "p2")
    stranger = hub.subscribe("MA2")
    hub.publish(meta(), conference(), [event(1, "conference_started"), event(2)])

    for subscription in (mine, this_phlo):
        messages = decode(await subscription.take(0.1))
        assert [m[1]["event"]["event"] for m in messages] == ["conference_started", "member_dialing"]
        name, data = messages[1]
        assert name == "conference"
        assert (data["mpc_uuid"], data["phlo_id"], data["node_id"]) == ("c1", "p1", "n1")
        assert data["view"]["members"][0]["member_address"] == AGENT
        assert data["version"] == 2  # the core's last sequence number
    assert await other_phlo.take(0.01) == []
    assert await stranger.take(0.01) == []


async def test_a_commit_without_events_sends_the_view_alone() -> None:
    hub = EventHub()
    subscription = hub.subscribe("MA1")
    hub.publish(meta(), conference(), [])
    ((name, data),) = decode(await subscription.take(0.1))
    assert name == "conference" and data["event"] is None and data["view"]["mpc_uuid"] == "c1"


async def test_a_slow_client_is_dropped_instead_of_buffering_without_end() -> None:
    hub = EventHub(buffer=5)
    slow, fast = hub.subscribe("MA1"), hub.subscribe("MA1")
    for seq in range(1, 4):
        hub.publish(meta(), conference(), [event(seq), event(seq + 10)])
        assert len(decode(await fast.take(0.1))) == 2  # this one keeps up
    assert slow.overflowed and slow.closed
    assert [name for name, _ in decode(await slow.take(0.1))] == ["overflow"]
    assert await slow.take(0.1) == []  # drained and closed: the stream ends
    assert hub.subscriber_count == 1 and not fast.closed


def test_one_account_cannot_take_every_stream_slot() -> None:
    hub = EventHub(max_subscribers=3, max_per_account=2)
    first, second = hub.subscribe("MA1"), hub.subscribe("MA1", "p1")
    with pytest.raises(TooManyForAccount, match="limit 2"):
        hub.subscribe("MA1")
    other = hub.subscribe("MA2")  # another account still gets a stream
    with pytest.raises(TooManySubscribers) as raised:  # the server's cap holds for everyone
        hub.subscribe("MA3")
    assert not isinstance(raised.value, TooManyForAccount)
    hub.unsubscribe(first)
    hub.unsubscribe(first)  # twice (the stream's end and the hub's close) frees one slot only
    third = hub.subscribe("MA1")
    assert hub.subscriber_count == 3 and not any(s.closed for s in (second, other, third))


async def test_a_dropped_slow_client_frees_its_accounts_slot() -> None:
    hub = EventHub(buffer=1, max_per_account=1)
    slow = hub.subscribe("MA1")
    hub.publish(meta(), conference(), [event(1), event(2)])
    assert slow.overflowed
    hub.subscribe("MA1")  # the dropped one no longer counts


def test_publish_never_raises_into_the_conference_service(capsys: pytest.CaptureFixture[str]) -> None:
    hub = EventHub()
    broken: Any = object()  # not a conference: building its view fails
    hub.publish(meta(), broken, [event(1)])
    assert "console_publish_failed" not in capsys.readouterr().out  # nobody listens: nothing built
    hub.subscribe("MA1")
    hub.publish(meta(), broken, [event(1)])
    assert "console_publish_failed" in capsys.readouterr().out  # logged, not raised


async def test_closing_the_hub_ends_every_subscription_and_refuses_new_ones() -> None:
    hub = EventHub()
    subscription = hub.subscribe("MA1")
    waiting = asyncio.ensure_future(subscription.take(10))
    await asyncio.sleep(0)
    hub.close()
    assert await asyncio.wait_for(waiting, 1) == []
    assert subscription.closed and hub.subscriber_count == 0
    assert hub.subscribe("MA1").closed


class FakeClient:
    """The ASGI side of one client: collects what is sent; `leave()` disconnects."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def leave(self) -> None:
        self._gone.set()

    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def run_stream(hub: EventHub, client: FakeClient, heartbeat: float) -> asyncio.Future[None]:
    response = EventStreamResponse(hub, hub.subscribe("MA1"), heartbeat=heartbeat)
    task = asyncio.ensure_future(response({"type": "http"}, client.receive, client.send))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    return task


async def test_the_stream_says_hello_beats_and_ends_when_the_client_leaves() -> None:
    hub, client = EventHub(), FakeClient()
    task = await run_stream(hub, client, heartbeat=0.05)
    start = client.sent[0]
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert b"content-length" not in headers
    hub.publish(meta(), conference(), [event(1)])
    await asyncio.sleep(0.2)
    body = client.body().decode()
    assert body.startswith("retry: ")
    assert [name for name, _ in decode([client.body()])] == ["hello", "conference"]
    assert body.count(": heartbeat\n\n") >= 2
    client.leave()
    await asyncio.wait_for(task, 1)
    assert hub.subscriber_count == 0


async def test_the_stream_ends_cleanly_when_the_server_stops() -> None:
    hub, client = EventHub(), FakeClient()
    task = await run_stream(hub, client, heartbeat=10)
    hub.close()
    await asyncio.wait_for(task, 1)
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
