"""A local HTTP server (127.0.0.1, a thread) serving audio for music URLs, and the ways a URL can go
wrong: slow, huge, trickling, redirecting to another scheme. Every handler is bounded in time."""

from __future__ import annotations

import io
import threading
import time
import wave
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

HOLD_S = 5.0  # the longest a handler stalls; the server's close releases them sooner


def tone_wav(freq: float, seconds: float = 1.0, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.rint(6000 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes())
    return out.getvalue()


class MediaServer:
    """GET /tone<freq>.wav, /copy<freq>.wav (same bytes), /slow.wav (stalls before answering),
    /huge.wav (declares 50 MB), /endless.wav (chunked, never ends), /trickle.wav (a byte every 50 ms),
    /passwd.wav (text), /to-file (302 to file:///etc/passwd), /to-tone<freq> (302 to
    /tone<freq>.wav), else 404."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.requests[self.path] += 1
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path
        try:
            if path.startswith(("/tone", "/copy")) and path.endswith(".wav"):
                self._send(h, 200, tone_wav(float(path[5:-4])))
            elif path == "/slow.wav":
                self.released.wait(HOLD_S)
                self._send(h, 200, tone_wav(900))
            elif path == "/huge.wav":
                h.send_response(200)
                h.send_header("Content-Length", str(50 * 1024 * 1024))
                h.end_headers()
                self._stream(h, b"\0" * 65536, 800)
            elif path == "/endless.wav":
                h.send_response(200)
                h.send_header("Transfer-Encoding", "chunked")
                h.end_headers()
                chunk = b"\0" * 65536
                self._stream(h, b"%x\r\n%s\r\n" % (len(chunk), chunk), 800)
            elif path == "/trickle.wav":
                h.send_response(200)
                h.send_header("Content-Length", "100000")
                h.end_headers()
                deadline = time.monotonic() + HOLD_S
                while time.monotonic() < deadline:
                    h.wfile.write(b"\0")
                    h.wfile.flush()
                    if self.released.wait(0.05):  # a byte every 50 ms until the server closes
                        break
            elif path == "/passwd.wav":
                self._send(h, 200, b"root:x:0:0:root:/root:/bin/bash\n" * 20)
            elif path == "/to-file":
                self._send(h, 302, b"", location="file:///etc/passwd")
            elif path.startswith("/to-tone"):
                self._send(h, 302, b"", location=f"/tone{path[8:]}.wav")
            else:
                self._send(h, 404, b"not found")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, location: str | None = None) -> None:
        h.send_response(status)
        if location is not None:
            h.send_header("Location", location)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _stream(self, h: BaseHTTPRequestHandler, chunk: bytes, count: int) -> None:
        for _ in range(count):  # bounded: 800 x 64 KiB at most
            if self.released.is_set():
                return
            h.wfile.write(chunk)


@contextmanager
def media_server() -> Iterator[MediaServer]:
    server = MediaServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.released.set()
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(5)
