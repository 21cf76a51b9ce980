"""`bridgeline calls watch`: follow the server's event stream, one line per event.

Stops cleanly (exit 0) on Ctrl-C or SIGTERM, after `--count` events, or after `--timeout`
seconds; if `--count` events did not arrive within `--timeout`, exits 1. A stream the server
ends (it is stopping) or cannot open is exit 2, a refusal (bad credentials, unknown PHLO) 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx

from bridgeline.cli.calls import event_line
from bridgeline.cli.client import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError, client

# The server sends a heartbeat every 15 s; three missed ones mean the connection is dead.
READ_TIMEOUT = 45.0


def watch(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise CliError("--count expects a positive number")
    if args.timeout is not None and args.timeout <= 0:
        raise CliError("--timeout expects a positive number of seconds")
    with client(args) as http:
        auth = http.auth  # the credentials client.py found (environment or data directory)
    assert auth is not None
    return asyncio.run(_watch(args, auth))


class _Progress:
    received = 0


async def _watch(args: argparse.Namespace, auth: httpx.Auth) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    progress = _Progress()
    follower = asyncio.ensure_future(_follow(args, auth, progress))
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait(
        {follower, stopper}, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED
    )
    for task in (follower, stopper):
        task.cancel()
    await asyncio.gather(follower, stopper, return_exceptions=True)
    if follower in done:
        return follower.result()
    if stopper in done or args.count is None:
        return EXIT_OK
    raise CliError(f"only {progress.received} of {args.count} events within {args.timeout:g} s", EXIT_REFUSED)


async def _follow(args: argparse.Namespace, auth: httpx.Auth, progress: _Progress) -> int:
    url = args.url.rstrip("/") + "/v1/events/stream"
    params = {"phlo_id": args.phlo} if args.phlo else {}
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
    try:
        async with (
            httpx.AsyncClient(auth=auth, timeout=timeout) as client,
            client.stream("GET", url, params=params, headers={"Accept": "text/event-stream"}) as response,
        ):
            if response.status_code >= 400:
                raise CliError(f"{response.status_code}: {await _error_text(response)}", EXIT_REFUSED)
            async for name, data in _messages(response):
                if name == "hello":
                    print(f"watching {args.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
                elif name == "overflow":
                    raise CliError("the server dropped this watcher: it fell too far behind")
                elif name == "conference" and data.get("event"):
                    print(json.dumps(data) if args.json else event_line(data), flush=True)
                    progress.received += 1
                    if args.count is not None and progress.received >= args.count:
                        return EXIT_OK
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {args.url}: {exc or type(exc).__name__}") from exc
    raise CliError("the server ended the event stream", EXIT_USAGE)


async def _error_text(response: httpx.Response) -> str:
    body = await response.aread()
    with contextlib.suppress(ValueError):
        return str(json.loads(body).get("error", body.decode(errors="replace")))
    return body.decode(errors="replace")


async def _messages(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event name, JSON data) per server-sent event; comments (heartbeats) are skipped."""
    name = "message"
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
