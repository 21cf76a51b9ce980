"""The HTTP edge against a real server and raw sockets (issue #9, items 4-6): bounded heads, URLs and
bodies, deadlines for idle and slow clients, a connection cap, and Plivo-shaped refusals of
malformed HTTP."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2ekit import AUTH_ID, AUTH_TOKEN, Api, ServerProcess, number, serving, wait_until

# Short enough that the tests waiting them out stay quick; apart enough to tell which one fired, and the
# idle timeout long enough that the connection-cap test fills every slot before any attacker is dropped.
IDLE_S, HEADER_S, REQUEST_S, WRITE_S = 1.0, 1.5, 2.5, 1.0
MAX_CONNECTIONS = 20
TIGHT = {
    "BRIDGELINE_HTTP_IDLE_TIMEOUT": str(IDLE_S),
    "BRIDGELINE_HTTP_HEADER_TIMEOUT": str(HEADER_S),
    "BRIDGELINE_HTTP_REQUEST_TIMEOUT": str(REQUEST_S),
    "BRIDGELINE_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "BRIDGELINE_HTTP_WRITE_TIMEOUT": str(WRITE_S),
}
MIB = 1024 * 1024
BASIC = b"Authorization: Basic " + base64.b64encode(f"{AUTH_ID}:{AUTH_TOKEN}".encode()) + b"\r\n"


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own, with short deadlines and a small connection cap."""
    with serving(tmp_path_factory.mktemp("edge"), TIGHT) as server:
        yield server


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (or a reset ends it)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def parse_response(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


def assert_plivo_refusal(raw: bytes, status: int) -> dict[str, str]:
    got, headers, body = parse_response(raw)
    assert got == status, raw[:500]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert set(body) == {"api_id", "error"} and body["api_id"] and body["error"], body
    assert "callback" not in body["error"], body  # the fault named, not the parser's plumbing
    return headers


def exchange(server: ServerProcess, request: bytes) -> bytes:
    with connect(server) as sock:
        sock.sendall(request)
        return read_until_closed(sock)


def health_ok(server: ServerProcess) -> bool:
    with httpx.Client(timeout=5) as client:
        response = client.get(f"{server.url}/health")
    return response.status_code == 200


def stalled_closed(server: ServerProcess) -> float:
    """The server's count of clients it closed for leaving their answers unread (/metrics)."""
    text = httpx.get(f"{server.url}/metrics", auth=(AUTH_ID, AUTH_TOKEN), timeout=5).text
    for line in text.splitlines():
        if line.startswith("bridgeline_http_stalled_closed_total "):
            return float(line.split()[1])
    raise AssertionError(f"no bridgeline_http_stalled_closed_total in /metrics:\n{text}")


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


# =========================================================================== item 4: head size
def test_a_256_mib_header_is_refused_early_and_memory_stays_bounded(edge: ServerProcess) -> None:
    assert edge.process is not None
    before = peak_rss_kib(edge.process.pid)
    chunk = b"a" * MIB
    sent = 0
    with connect(edge) as sock:
        sock.sendall(b"GET /v1/phlo HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            while sent < 256 * MIB:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused and closed before the header ended
        raw = read_until_closed(sock)
    growth_mib = (peak_rss_kib(edge.process.pid) - before) / 1024
    print(f"sent {sent / MIB:.0f} MiB of header; server peak RSS grew {growth_mib:.1f} MiB")
    assert_plivo_refusal(raw, 431)
    assert growth_mib < 32, f"peak RSS grew {growth_mib:.1f} MiB"
    assert health_ok(edge)


def test_too_many_header_fields_are_refused(edge: ServerProcess) -> None:
    fields = b"".join(b"X-%d: y\r\n" % i for i in range(101))
    assert_plivo_refusal(exchange(edge, b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"), 431)
    fields = b"".join(b"X-%d: y\r\n" % i for i in range(90)) + b"Connection: close\r\n"  # not kept alive
    status, _, _ = parse_response(exchange(edge, b"GET /health HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"))
    assert status == 200


# =========================================================================== item 6: malformed HTTP
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(
            b"POST /v1/phlo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}",
            400,
            id="conflicting-content-length",
        ),
        pytest.param(b"GET /health HTTP/1.1\nHost: x\n\n", 400, id="bare-lf"),
        pytest.param(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, id="nul-in-header"),
        pytest.param(b"GET /" + b"a" * MIB + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, id="1-mb-url"),
        pytest.param(b"GET /health HTTP/7.3\r\nHost: x\r\n\r\n", 505, id="http-version"),
        pytest.param(b"CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="authority-form"),
        pytest.param(
            b"POST /v1/phlo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n", 413, id="declared-body"
        ),
        pytest.param(
            b"POST /v1/phlo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            + BASIC
            + b"\r\n"
            + b"100000\r\n"
            + b"x" * MIB
            + b"\r\n10\r\n"
            + b"y" * 16
            + b"\r\n0\r\n\r\n",
            413,
            id="chunked-body",
        ),
    ],
)
def test_malformed_http_is_answered_in_plivo_shape_then_closed(
    edge: ServerProcess, request_bytes: bytes, status: int
) -> None:
    assert_plivo_refusal(exchange(edge, request_bytes), status)


def test_a_refused_upload_still_reads_its_answer(edge: ServerProcess) -> None:
    """The server lingers after a 413, so a client still sending its body reads the answer, not a reset."""
    with httpx.Client(base_url=edge.url, auth=(AUTH_ID, AUTH_TOKEN), timeout=10) as client:
        response = client.post("/v1/phlo", content=b"x" * (3 * MIB))
    assert response.status_code == 413
    assert set(response.json()) == {"api_id", "error"}


# =========================================================================== item 5: deadlines
def test_an_idle_connection_is_closed_after_the_idle_timeout(edge: ServerProcess) -> None:
    with connect(edge) as sock:
        opened = time.monotonic()
        assert read_until_closed(sock, timeout=IDLE_S + 5) == b""  # closed without a word
        assert IDLE_S - 0.2 <= time.monotonic() - opened < IDLE_S + 4


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(edge: ServerProcess) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = read_until_closed(sock, timeout=IDLE_S + 5)
    assert parse_response(raw)[0] == 200


def trickle(server: ServerProcess, start: bytes, byte: bytes, give_up_after: float) -> tuple[bytes, float]:
    """Send `start`, then `byte` every 0.2 s until the server answers (or closes); (answer, seconds)."""
    with connect(server) as sock:
        opened = time.monotonic()
        sock.sendall(start)
        sock.settimeout(0.2)
        raw = b""
        while time.monotonic() - opened < give_up_after and not raw.endswith(b"}"):
            try:
                sock.sendall(byte)
                raw += sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        return raw, time.monotonic() - opened


def test_slowloris_headers_get_408_within_the_header_timeout(edge: ServerProcess) -> None:
    """One header byte every 0.2 s keeps the connection busy but cannot outlast the header deadline."""
    raw, elapsed = trickle(edge, b"GET /health HTTP/1.1\r\n", b"X", HEADER_S + 5)
    assert_plivo_refusal(raw, 408)
    assert HEADER_S - 0.2 <= elapsed < HEADER_S + 4


def test_a_slow_body_gets_408_within_the_request_timeout(edge: ServerProcess) -> None:
    head = b"POST /v1/phlo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n" + BASIC + b"\r\n{"
    raw, elapsed = trickle(edge, head, b" ", REQUEST_S + 5)
    assert_plivo_refusal(raw, 408)
    assert REQUEST_S - 0.2 <= elapsed < REQUEST_S + 4


def test_the_connection_cap_holds_and_frees_up_when_attackers_leave_or_time_out(edge: ServerProcess) -> None:
    attackers = [connect(edge) for _ in range(MAX_CONNECTIONS)]
    try:
        # Every slot taken: one more connection is told so in Plivo's shape, with Retry-After.
        headers = assert_plivo_refusal(exchange(edge, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"), 503)
        assert headers["retry-after"] == "1"
        # Half the attackers go away: their slots serve normal clients at once.
        for sock in attackers[: MAX_CONNECTIONS // 2]:
            sock.close()
        wait_until(lambda: health_ok(edge), timeout=5, what="a freed slot")
        # The rest stay silent: the idle timeout closes them, and the server is fully available again.
        for sock in attackers[MAX_CONNECTIONS // 2 :]:
            assert read_until_closed(sock, timeout=IDLE_S + 5) == b""
        with httpx.Client(timeout=5) as client:
            pool = [client.get(f"{edge.url}/health").status_code for _ in range(MAX_CONNECTIONS)]
        assert pool == [200] * MAX_CONNECTIONS
    finally:
        for sock in attackers:
            sock.close()


def test_more_idle_sockets_than_the_cap_cannot_lock_clients_out(edge: ServerProcess) -> None:
    """The issue's attack, scaled to the cap: the extra sockets are refused, and once the idle timeout
    has closed the rest, a normal client is served."""
    attackers = [connect(edge) for _ in range(MAX_CONNECTIONS + 30)]
    try:
        refused = 0
        for sock in attackers:
            raw = read_until_closed(sock, timeout=IDLE_S + 5)
            refused += raw.startswith(b"HTTP/1.1 503")
        assert refused >= 30
        assert health_ok(edge)
    finally:
        for sock in attackers:
            sock.close()


def test_an_event_stream_outlives_every_request_deadline(edge: ServerProcess) -> None:
    """A stream's request is complete once its head is read: its response may last, and keeps carrying
    events well past the idle, header and request timeouts."""
    api = Api(edge)
    phlo = api.create_phlo()
    with connect(edge) as sock:
        sock.sendall(b"GET /v1/events/stream HTTP/1.1\r\nHost: x\r\n" + BASIC + b"\r\n")
        sock.settimeout(10)
        received = b""
        while b"event: hello" not in received:
            received += sock.recv(65536)
        time.sleep(REQUEST_S + IDLE_S + 1)
        phlo.connect(number(), number())
        while b"event: conference" not in received:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the event stream"
            received += chunk
    api.close()


def test_a_client_that_never_reads_its_answers_is_closed_after_the_write_timeout(edge: ServerProcess) -> None:
    """Pipelined requests whose answers are never read fill the buffers; the server gives up on the
    client once writing has been blocked for the write timeout, instead of holding its slot forever."""
    closed_before = stalled_closed(edge)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with sock:
        sock.connect(("127.0.0.1", edge.port))
        request = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request * 1000)  # about 20 MB of answers
        # Nothing is read until the server has given up on this client (and counted it).
        wait_until(
            lambda: stalled_closed(edge) > closed_before,
            timeout=WRITE_S + 10,
            interval=0.1,
            what="the server to close the client that reads nothing",
        )
        sock.settimeout(5)
        received = 0
        while chunk := sock.recv(1 << 20):  # what was buffered, then the end (a timeout fails the test)
            received += len(chunk)
    size = len(httpx.get(f"{edge.url}/openapi.json", timeout=5).content)
    assert received < 500 * size  # far from every answer: the server stopped writing
