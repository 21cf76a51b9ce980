"""Plivo's error shape: `{"api_id": "...", "error": "..."}` with a JSON content type."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from starlette.responses import JSONResponse


class ApiResponse(JSONResponse):
    """JSON as Starlette writes it (compact, UTF-8), encoded by orjson: every API answer is one."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:  # what orjson cannot encode (an integer past 64 bits) the json module can
            return super().render(content)


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def new_api_id() -> str:
    return str(uuid.uuid4())


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> ApiResponse:
    return ApiResponse({"api_id": new_api_id(), "error": message}, status_code=status, headers=headers)


def ok(body: dict[str, Any], status: int = 200) -> ApiResponse:
    """A success body; every response carries an `api_id` first, as Plivo's do."""
    return ApiResponse({"api_id": body.pop("api_id", None) or new_api_id(), **body}, status_code=status)


def missing(param: str) -> ApiError:
    return ApiError(400, f"{param} is a mandatory param.")


def invalid(param: str, detail: str = "") -> ApiError:
    return ApiError(400, f"Invalid value provided for {param}.{' ' + detail if detail else ''}")
