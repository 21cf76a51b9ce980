"""Getting the bytes of a music or message source: a file under the media directory, or an http(s)
URL. Both run in a worker thread (never on the event loop) and both are bounded in size; the URL
also in time.

A file is read only when, with every link followed, it is still inside the media directory and is
a regular file (not a device such as /dev/zero, not a FIFO that would block the reader forever).
`fetch_url` is the one place that makes outgoing requests for media: an egress policy for URLs
(which addresses a server may reach) applies there, to the first request and to every redirect.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from bridgeline.adapters.egress import OPEN, EgressPolicy
from bridgeline.phlo.media_spec import URL_SCHEMES

MAX_REDIRECTS: Final = 3


class MediaUnavailable(Exception):
    """The source cannot be used; the message is safe to show the account (no server paths)."""


@dataclass(frozen=True, slots=True)
class MediaLimits:
    """The bounds on every source, from the server's settings (config.py, `media_*`)."""

    media_dir: Path = Path("data/media")
    max_bytes: int = 10 * 1024 * 1024
    fetch_timeout_s: float = 10.0
    max_seconds: float = 300.0
    cache_bytes: int = 64 * 1024 * 1024
    egress: EgressPolicy = OPEN  # which addresses a music URL may lead to (the callbacks' policy)


def read_media_file(media_dir: Path, relative: str, max_bytes: int) -> bytes:
    """The bytes of `relative` (already checked by `parse_media_spec`) under `media_dir`."""
    root = os.path.realpath(media_dir)
    real = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([root, real]) != root:
        raise MediaUnavailable(f"{relative}: a link leads out of the media directory")
    try:
        # O_NOFOLLOW: a link swapped in since realpath is refused; O_NONBLOCK: opening a FIFO
        # does not wait for a writer (and it is refused just below).
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise MediaUnavailable(f"{relative}: no such file in the media directory") from None
    except OSError as exc:
        raise MediaUnavailable(f"{relative}: cannot open ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise MediaUnavailable(f"{relative}: not a regular file")
        if info.st_size > max_bytes:
            raise MediaUnavailable(f"{relative}: larger than {max_bytes} bytes")
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(max_bytes + 1)  # the file may have grown since fstat
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise MediaUnavailable(f"{relative}: larger than {max_bytes} bytes")
    return data


def fetch_url(url: str, max_bytes: int, timeout_s: float, egress: EgressPolicy = OPEN) -> bytes:
    """GET the URL's body: http(s) only, redirects only to http(s) (at most MAX_REDIRECTS), at most
    max_bytes, abandoned after about timeout_s in all (connect, redirects and every read)."""
    deadline = time.monotonic() + timeout_s
    # identity: the size cap counts the bytes that will be decoded, and a compressed body cannot
    # expand past it.
    headers = {"accept-encoding": "identity"}
    # Redirects are followed here, one request each, so the policy checks every hop's address.
    with egress.blocking_client(follow_redirects=False, timeout=timeout_s, headers=headers) as client:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = _redirect_target(response)
                        continue
                    if response.status_code != 200:
                        raise MediaUnavailable(f"{url}: HTTP {response.status_code}")
                    return _read_body(response, url, max_bytes, deadline)
            except httpx.TimeoutException:
                raise MediaUnavailable(f"{url}: no answer within {timeout_s:g} s") from None
            except httpx.HTTPError as exc:
                raise MediaUnavailable(f"{url}: {type(exc).__name__}: {exc}") from None
    raise MediaUnavailable(f"{url}: more than {MAX_REDIRECTS} redirects")


def _redirect_target(response: httpx.Response) -> str:
    target = response.url.join(response.headers.get("location", ""))
    if target.scheme not in URL_SCHEMES:
        raise MediaUnavailable(f"{response.url}: redirect to a {target.scheme}: URL refused")
    return str(target)


def _read_body(response: httpx.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise MediaUnavailable(f"{url}: larger than {max_bytes} bytes")
    body = bytearray()
    for chunk in response.iter_raw():  # as it arrives: a fixed chunk size would wait to fill it
        body += chunk
        if len(body) > max_bytes:
            raise MediaUnavailable(f"{url}: larger than {max_bytes} bytes")
        if time.monotonic() > deadline:  # a trickling server: each read is quick, the whole is not
            raise MediaUnavailable(f"{url}: not downloaded within the time limit")
    return bytes(body)
