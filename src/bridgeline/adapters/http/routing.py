"""A small router: optional trailing slash (no redirect), 404 for unknown paths, 405 with Allow."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from bridgeline.adapters.http.forwarding import Forward

Handler = Callable[..., Awaitable[Response]]
_PARAM = re.compile(r"\{(\w+)(:path)?\}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    authenticated: bool = True
    body: type[BaseModel] | None = None  # validates the body (ApiRequest.parse) and describes it in OpenAPI
    status: int = 200
    forward: Forward | None = None  # how a cluster finds the node that answers it (forwarding.py)
    # It changes state and a retry must not act twice: honours the Idempotency-Key header (idempotency.py).
    idempotent_retries: bool = False

    @property
    def pattern(self) -> re.Pattern[str]:
        def group(match: re.Match[str]) -> str:
            return f"(?P<{match.group(1)}>{'.+' if match.group(2) else '[^/]+'})"

        # \Z and DOTALL: with `$` and `.`, a final newline (`%0A`) was silently cut off a path parameter.
        return re.compile("^" + _PARAM.sub(group, self.path) + r"\Z", re.DOTALL)


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        # The literal text before a route's first parameter: a cheap test that rules out most routes
        # before their pattern runs.
        self._compiled = [(route, route.path.split("{", 1)[0], route.pattern) for route in routes]

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
        """The route and its path parameters; else None and the methods the path allows."""
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        allowed: list[str] = []
        for route, prefix, pattern in self._compiled:
            if not path.startswith(prefix):
                continue
            found = pattern.match(path)
            if found is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, found.groupdict(), []
            allowed.append(route.method)
        return None, {}, allowed


def request_path(request: Request) -> str:
    return str(request.scope["path"])
