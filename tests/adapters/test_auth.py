"""The Authenticator and its throttle in process: caching with expiry, equal cost, failure buckets."""

from __future__ import annotations

import base64
import hmac
from typing import Any

import pytest
from starlette.requests import Request

from bridgeline.adapters.http import auth as auth_module
from bridgeline.adapters.http.auth import Authenticator, AuthSettings
from bridgeline.adapters.http.errors import ApiError
from bridgeline.adapters.http.throttle import Throttle, retry_after
from bridgeline.app.records import Account

KNOWN = Account("MA" + "K" * 18, "right-token", 0.0)
UNKNOWN_ID = "MA" + "U" * 18


class Store:
    def __init__(self) -> None:
        self.accounts = {KNOWN.auth_id: KNOWN}
        self.lookups: list[str] = []

    async def get_account(self, auth_id: str) -> Account | None:
        self.lookups.append(auth_id)
        return self.accounts.get(auth_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(auth_id: str | None, token: str = "", host: str = "10.0.0.1") -> Request:
    headers = []
    if auth_id is not None:
        headers.append((b"authorization", b"Basic " + base64.b64encode(f"{auth_id}:{token}".encode())))
    return Request({"type": "http", "headers": headers, "client": (host, 1234)})


def authenticator(**settings: Any) -> tuple[Authenticator, Store, Clock]:
    store, clock = Store(), Clock()
    return Authenticator(store, AuthSettings(**settings), clock), store, clock  # type: ignore[arg-type]


async def status(auth: Authenticator, req: Request) -> int:
    try:
        await auth.authenticate(req)
    except ApiError as exc:
        return exc.status
    return 200


async def test_a_changed_account_is_noticed_once_the_cache_time_is_over() -> None:
    auth, store, clock = authenticator(cache_seconds=5)
    assert await status(auth, request(KNOWN.auth_id, "right-token")) == 200
    store.accounts[KNOWN.auth_id] = Account(KNOWN.auth_id, "rotated", 0.0)
    clock.now += 4.9
    assert await status(auth, request(KNOWN.auth_id, "right-token")) == 200  # still cached
    clock.now += 0.2
    assert await status(auth, request(KNOWN.auth_id, "right-token")) == 401
    assert await status(auth, request(KNOWN.auth_id, "rotated")) == 200
    del store.accounts[KNOWN.auth_id]
    clock.now += 5.1
    assert await status(auth, request(KNOWN.auth_id, "rotated")) == 401


async def test_known_and_unknown_ids_cost_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both are looked up once per cache time and both compare a token digest in constant time."""
    compared: list[tuple[int, int]] = []
    original = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return original(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", compare)
    auth, store, _ = authenticator()
    for _ in range(3):
        assert await status(auth, request(KNOWN.auth_id, "wrong")) == 401
        assert await status(auth, request(UNKNOWN_ID, "wrong")) == 401
    assert sorted(store.lookups) == [KNOWN.auth_id, UNKNOWN_ID]  # one each, then both cached
    assert compared == [(32, 32)] * 6


async def test_an_address_that_keeps_failing_is_refused_with_retry_after() -> None:
    auth, _, clock = authenticator(failure_burst=3, failure_rate=0.5)
    for _ in range(5):
        assert await status(auth, request(None)) == 401  # no credentials: not counted
    for _ in range(3):
        assert await status(auth, request(KNOWN.auth_id, "guess")) == 401
    with pytest.raises(ApiError) as raised:
        await auth.authenticate(request(KNOWN.auth_id, "right-token"))
    assert raised.value.status == 429 and raised.value.headers == {"Retry-After": "2"}
    assert await status(auth, request(KNOWN.auth_id, "right-token", host="10.0.0.2")) == 200
    clock.now += 2
    assert await status(auth, request(KNOWN.auth_id, "right-token")) == 200


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    throttle = Throttle(rate=2.0, burst=2)
    throttle.spend("a", 0.0)
    throttle.spend("a", 0.0)
    assert throttle.wait_time("a", 0.0) == pytest.approx(0.5)
    assert throttle.wait_time("a", 0.25) == pytest.approx(0.25)
    assert throttle.wait_time("a", 0.5) == 0.0
    assert throttle.wait_time("b", 0.0) == 0.0


def test_the_number_of_buckets_is_bounded() -> None:
    throttle = Throttle(rate=0.001, burst=1, max_keys=2)
    for key in ("a", "b", "c"):
        throttle.spend(key, 0.0)
    assert throttle.wait_time("a", 0.0) == 0.0  # forgotten: the least recently touched
    assert throttle.wait_time("c", 0.0) > 0


@pytest.mark.parametrize(("seconds", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (30.0, "30")])
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: str) -> None:
    assert retry_after(seconds) == header
