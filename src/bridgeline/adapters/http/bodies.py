"""Lenient request bodies, as the official SDKs and curl send them.

JSON whatever the Content-Type says (curl -d sends JSON as form-urlencoded), form-encoded
fields, an empty body, `{}`, or the JSON string `""` that the Node SDK sends for a run
without parameters.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from bridgeline.adapters.http.errors import ApiError

MAX_BODY_BYTES = 1024 * 1024


async def read_body(receive: Receive) -> bytes:
    """The request body, read straight from the ASGI messages (Starlette's stream costs more).

    A body past MAX_BODY_BYTES is read to its end (the connection stays usable) but not kept."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY_BYTES:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if size > MAX_BODY_BYTES:
        raise _too_large()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    if len(raw) > MAX_BODY_BYTES:
        raise _too_large()
    text = _decode(raw).strip()
    if not text:
        return {}
    if text[0] in '{["' or text in ("null", "true", "false") or "json" in content_type:
        return _from_json(text)
    return _from_form(text)


def _too_large() -> ApiError:
    return ApiError(413, f"request body too large (limit {MAX_BODY_BYTES} bytes)")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "request body is not valid UTF-8") from exc


def _from_json(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        # orjson refuses a few things the json module reads (NaN, integers past 64 bits, lone
        # surrogates): those, and the message of a real error, come from the json module.
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}") from exc
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, "request body must be a JSON object")
    return value


def _from_form(text: str) -> dict[str, Any]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise ApiError(400, "request body is neither JSON nor form-encoded fields") from exc
    return dict(pairs)
