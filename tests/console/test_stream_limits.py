"""Event-stream slots against a real server (issue #9, item 7): one account cannot take them all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2ekit import ServerProcess, add_account, assert_plivo_error, serving, wait_until
from livekit import AUTH_ID, AUTH_TOKEN, EventStream

PER_ACCOUNT, ON_THE_SERVER = 2, 3


@pytest.fixture
def tight(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        "BRIDGELINE_SSE_MAX_STREAMS": str(ON_THE_SERVER),
        "BRIDGELINE_SSE_MAX_STREAMS_PER_ACCOUNT": str(PER_ACCOUNT),
    }
    with serving(tmp_path, env) as server:
        yield server


def test_an_account_over_its_stream_limit_gets_429_and_others_still_stream(tight: ServerProcess) -> None:
    other = add_account(tight)
    third = add_account(tight)
    streams = [EventStream(tight.url) for _ in range(PER_ACCOUNT)]
    try:
        wait_until(lambda: all(s.named("hello") for s in streams), what="the account's streams to open")
        with httpx.Client(base_url=tight.url, auth=(AUTH_ID, AUTH_TOKEN), timeout=5) as mine:
            refused = mine.get("/v1/events/stream")
        assert_plivo_error(refused, 429)
        assert refused.headers["retry-after"]

        streams.append(EventStream(tight.url, auth=other))  # another account is not locked out
        wait_until(lambda: streams[-1].named("hello"), what="the other account's stream")

        with httpx.Client(base_url=tight.url, auth=third, timeout=5) as late:
            assert_plivo_error(late.get("/v1/events/stream"), 503)  # the server-wide cap holds

        streams.pop(0).close()  # a closed stream gives its slot back
        with httpx.Client(base_url=tight.url, auth=third, timeout=5) as late:
            wait_until(lambda: _opens(late), what="a freed slot")
    finally:
        for stream in streams:
            stream.close()


def _opens(client: httpx.Client) -> bool:
    with client.stream("GET", "/v1/events/stream") as response:
        return response.status_code == 200
