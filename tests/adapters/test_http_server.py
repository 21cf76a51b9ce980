"""The HTTP edge's pure parts: refusal bytes, parser faults mapped to statuses, settings checks."""

from __future__ import annotations

import json

import httptools
import pytest

from bridgeline.adapters.http.server import HttpLimits, error_bytes, guarded_protocol, parser_refusal
from bridgeline.config import Settings


def test_a_refusal_is_a_complete_plivo_shaped_response_that_closes() -> None:
    raw = error_bytes(431, "request headers too large", b"retry-after: 1\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert b"connection: close" in lines and b"retry-after: 1" in lines
    assert b"content-length: %d" % len(body) in lines
    data = json.loads(body)
    assert set(data) == {"api_id", "error"} and data["error"] == "request headers too large"


def _fault(request: bytes) -> httptools.HttpParserError:
    parser = httptools.HttpRequestParser(object())
    with pytest.raises(httptools.HttpParserError) as raised:
        parser.feed_data(request)
    return raised.value


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/7.3\r\n\r\n", 505),
        (b"GET / HTTP/1.1\nHost: x\n\n", 400),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    ],
)
def test_parser_faults_map_to_statuses_that_name_the_fault(request_bytes: bytes, status: int) -> None:
    refused = parser_refusal(_fault(request_bytes))
    assert refused.status == status
    assert str(_fault(request_bytes)) in refused.message


def test_each_server_gets_its_own_protocol_class_with_its_limits() -> None:
    tight, loose = guarded_protocol(HttpLimits(max_connections=3)), guarded_protocol(HttpLimits())
    assert tight.limits.max_connections == 3 and loose.limits.max_connections == 1000


@pytest.mark.parametrize("name", ["http_max_connections", "http_idle_timeout", "auth_failure_burst"])
def test_limits_must_be_positive(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"BRIDGELINE_{name.upper()}", "0")
    with pytest.raises(ValueError, match=name):
        Settings.from_env()


def test_limits_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGELINE_HTTP_MAX_HEADER_BYTES", "4096")
    monkeypatch.setenv("BRIDGELINE_HTTP_REQUEST_TIMEOUT", "2.5")
    settings = Settings.from_env()
    assert (settings.http_max_header_bytes, settings.http_request_timeout) == (4096, 2.5)
