"""HTTP Basic authentication with Plivo-shaped auth ids (`MA`/`SA` + 18 characters)."""

from __future__ import annotations

import base64
import binascii
import hmac
import re

from starlette.requests import Request

from bridgeline.adapters.http.errors import ApiError
from bridgeline.app.ports import Store
from bridgeline.app.records import Account

AUTH_ID_PATTERN = re.compile(r"^[MS]A[A-Z0-9]{18}$")
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="bridgeline"'}


def is_valid_auth_id(auth_id: str) -> bool:
    return AUTH_ID_PATTERN.match(auth_id) is not None


class Authenticator:
    """Checks credentials against the store; known accounts are cached (tokens do not change)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, Account] = {}

    async def authenticate(self, request: Request) -> Account:
        auth_id, token = _credentials(request.headers.get("authorization"))
        account = self._cache.get(auth_id) or await self._store.get_account(auth_id)
        if account is None or not hmac.compare_digest(account.auth_token.encode(), token.encode()):
            raise ApiError(401, "Authentication failed: unknown auth_id or wrong auth_token", _CHALLENGE)
        self._cache[auth_id] = account
        return account


def _credentials(header: str | None) -> tuple[str, str]:
    if not header:
        raise ApiError(
            401, "Authentication required: use HTTP Basic auth with your auth_id and auth_token", _CHALLENGE
        )
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise ApiError(401, "Authentication failed: only HTTP Basic auth is supported", _CHALLENGE)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(401, "Authentication failed: malformed Basic credentials", _CHALLENGE) from exc
    auth_id, sep, token = decoded.partition(":")
    if not sep or not is_valid_auth_id(auth_id):
        raise ApiError(401, "Authentication failed: unknown auth_id or wrong auth_token", _CHALLENGE)
    return auth_id, token
