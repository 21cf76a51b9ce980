"""HTTP Basic authentication with Plivo-shaped auth ids (`MA`/`SA` + 18 characters)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from bridgeline.adapters.http.errors import ApiError
from bridgeline.adapters.http.throttle import Throttle, retry_after
from bridgeline.app.ports import AccountStore
from bridgeline.app.records import Account

AUTH_ID_PATTERN = re.compile(r"^[MS]A[A-Z0-9]{18}$")
MAX_CACHED_ACCOUNTS = 10_000  # ids looked up, found or not; the least recently used is forgotten
_DUMMY_TOKEN = secrets.token_urlsafe(30)  # what an unknown id's token is compared with
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="bridgeline"'}


def is_valid_auth_id(auth_id: str) -> bool:
    return AUTH_ID_PATTERN.match(auth_id) is not None


@dataclass(frozen=True, slots=True)
class AuthSettings:
    cache_seconds: float = 5.0  # how long a looked-up account (or its absence) is trusted
    failure_rate: float = 2.0  # failed logins per second an address earns back
    failure_burst: int = 100  # failed logins an address may make at once


class Authenticator:
    """Checks credentials against the store, and throttles the addresses that keep failing.

    - An account, or the fact that an id has none, is cached for `cache_seconds`: a token rotated
      or an account removed by `bridgeline account ...` (another process) stops working within it.
    - Known and unknown ids cost the same: both are cached alike, and a token is always compared,
      in constant time, to the account's or to a dummy one, as digests of equal length.
    - Each failure spends a token of the client address's bucket; an empty bucket refuses every
      attempt from there (429 with Retry-After) before any credential is checked.
    """

    def __init__(
        self,
        store: AccountStore,
        settings: AuthSettings = AuthSettings(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._cache: OrderedDict[str, tuple[Account | None, float]] = OrderedDict()
        # Authorization headers that passed, with when they stop being trusted: a client's next request
        # skips decoding and hashing. Only right credentials get here, so what a guess costs is unchanged.
        self._accepted: dict[str, tuple[Account, float]] = {}
        self._failures = Throttle(settings.failure_rate, settings.failure_burst)
        self.failed = 0  # attempts refused 401 (counted for /metrics)
        self.throttled = 0  # attempts refused 429 before their credentials were looked at

    def stats(self) -> dict[str, int]:
        return {"failed": self.failed, "throttled": self.throttled}

    async def authenticate(self, request: Request) -> Account:
        source = request.client.host if request.client else ""
        wait = self._failures.wait_time(source, self._clock())
        if wait > 0:
            self.throttled += 1
            raise ApiError(
                429,
                "Too many failed authentication attempts from this address; retry later",
                {"Retry-After": retry_after(wait)},
            )
        header = request.headers.get("authorization")
        if header is not None and (known := self._accepted.get(header)) is not None:
            if known[1] > self._clock():  # these exact credentials passed within the cache time
                return known[0]
            del self._accepted[header]
        try:
            account = await self._check(header)
        except ApiError:
            self.failed += 1
            if header:  # no credentials at all is a prompt, not a guess
                self._failures.spend(source, self._clock())
            raise
        assert header is not None
        self._accepted[header] = (account, self._clock() + self._settings.cache_seconds)
        if len(self._accepted) > MAX_CACHED_ACCOUNTS:
            del self._accepted[next(iter(self._accepted))]  # the oldest
        return account

    async def _check(self, header: str | None) -> Account:
        auth_id, token = _credentials(header)
        account = await self._account(auth_id)
        expected = account.auth_token if account is not None else _DUMMY_TOKEN
        matches = hmac.compare_digest(_digest(expected), _digest(token))
        if account is None or not matches:
            raise ApiError(401, "Authentication failed: unknown auth_id or wrong auth_token", _CHALLENGE)
        return account

    async def _account(self, auth_id: str) -> Account | None:
        now = self._clock()
        cached = self._cache.get(auth_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        account = await self._store.get_account(auth_id)
        self._cache[auth_id] = (account, now + self._settings.cache_seconds)
        self._cache.move_to_end(auth_id)
        if len(self._cache) > MAX_CACHED_ACCOUNTS:
            self._cache.popitem(last=False)
        return account


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


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
