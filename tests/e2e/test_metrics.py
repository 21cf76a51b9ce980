"""/metrics against a real server: Prometheus text of what the edge refused, for the main account only."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from e2ekit import (
    AUTH_ID,
    AUTH_TOKEN,
    Api,
    CallbackReceiver,
    ServerProcess,
    add_account,
    number,
    serving,
    wait_until,
)
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serving(tmp_path_factory.mktemp("metrics"), {"BRIDGELINE_HTTP_MAX_HEADER_BYTES": "4096"}) as server:
        yield server


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{server.url}/metrics", auth=(AUTH_ID, AUTH_TOKEN), timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def refused_431(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return samples.get(("bridgeline_http_refused_total", (("status", "431"),)), 0.0)


def test_refusals_and_failed_logins_are_counted(watched: ServerProcess) -> None:
    before = scrape(watched)
    with socket.create_connection(("127.0.0.1", watched.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 431")
    assert httpx.get(f"{watched.url}/v1/phlo", auth=(AUTH_ID, "wrong"), timeout=10).status_code == 401

    after = scrape(watched)
    assert refused_431(after) == refused_431(before) + 1
    failed = ("bridgeline_auth_failed_total", ())
    assert after[failed] == before[failed] + 1
    assert after[("bridgeline_http_open_connections", ())] >= 1  # the scrape's own
    assert after[("bridgeline_conferences_live", ())] == 0
    assert ("bridgeline_events_open_streams", ()) in after


def test_only_the_main_account_reads_metrics(watched: ServerProcess) -> None:
    other_id, other_token = add_account(watched)
    as_other = httpx.get(f"{watched.url}/metrics", auth=(other_id, other_token), timeout=10)
    assert as_other.status_code == 403
    assert set(as_other.json()) == {"api_id", "error"}
    assert httpx.get(f"{watched.url}/metrics", timeout=10).status_code == 401


def test_callback_attempts_are_counted_by_outcome(watched: ServerProcess) -> None:
    delivered = ("bridgeline_webhooks_attempts_total", (("outcome", "delivered"),))
    before = scrape(watched).get(delivered, 0.0)
    api = Api(watched)
    with CallbackReceiver() as receiver:
        phlo = api.create_phlo(callback_url=receiver.url("/events"))
        phlo.connect(number(), number())
        wait_until(lambda: len(receiver.events()) >= 3, timeout=20)
        posted = len(receiver.events())
    api.close()
    assert scrape(watched)[delivered] >= before + posted
    assert ("bridgeline_webhooks_in_flight", ()) in scrape(watched)
