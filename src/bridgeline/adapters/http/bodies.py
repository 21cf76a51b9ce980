"""Lenient request bodies, as the official SDKs and curl send them.

JSON whatever the Content-Type says (curl -d sends JSON as form-urlencoded), form-encoded
fields, an empty body, `{}`, or the JSON string `""` that the Node SDK sends for a run
without parameters.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from bridgeline.adapters.http.errors import ApiError

MAX_BODY_BYTES = 1024 * 1024


def parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body too large (limit {MAX_BODY_BYTES} bytes)")
    text = _decode(raw).strip()
    if not text:
        return {}
    if text[0] in '{["' or text in ("null", "true", "false") or "json" in content_type:
        return _from_json(text)
    return _from_form(text)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "request body is not valid UTF-8") from exc


def _from_json(text: str) -> dict[str, Any]:
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
