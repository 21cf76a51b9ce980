"""Safe retries: the Idempotency-Key header of the state-changing POSTs (docs/semantics.md, "Retries and
Idempotency-Key"), after draft-ietf-httpapi-idempotency-key-header and Stripe where Plivo is silent.

The key is per account. The first request with it claims it in the store before it runs (so of two
simultaneous requests, in one process or several on one database, exactly one runs), then keeps its
answer with the key; a retry of the same request gets that answer again, byte for byte, and changes
nothing. The same key with another request is refused with 422, a retry while the first still runs with
409. A 5xx of a request that committed nothing gives the key back: its retry runs for real, and so does
an answer that asks for a retry without having committed anything (a `Retry-After`: the conference moved
to another node, docs/cluster.md).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from starlette.datastructures import Headers
from starlette.responses import Response

from bridgeline.adapters.http.errors import ApiError
from bridgeline.app.ports import IdempotencyStore
from bridgeline.app.records import KeyClaim, KeyHolder, StoredAnswer

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"  # on a replayed answer (as Stripe does): the request did not run again
DESCRIPTION = (
    "Makes a retry safe: the first request with a key runs and its answer is kept; a retry of the same "
    "request (method, path, body) gets that answer again and changes nothing. Per account, kept "
    "`idempotency_ttl_s` (24 h by default); 1 to 255 printable ASCII characters, bare or as a quoted "
    "structured-field string. Same key, other request: 422; retried while the first still runs: 409."
)


@dataclass(frozen=True, slots=True)
class RetrySettings:
    ttl_s: float = 86_400.0  # how long a key and its answer are kept
    max_key_length: int = 255  # characters of a key
    lock_s: float = 60.0  # an unanswered claim older than this is taken for abandoned (its process died)


def request_key(headers: Headers, max_length: int) -> str | None:
    """The request's Idempotency-Key, None without one; 400 when it is not a key we accept."""
    values = headers.getlist(HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError(400, f"send one {HEADER} header, not {len(values)}")
    raw = values[0]
    key = _structured_string(raw) if raw.startswith('"') else raw
    if key is None or not key or len(key) > max_length or not all(" " <= c <= "~" for c in key):
        raise ApiError(
            400,
            f"invalid {HEADER}: expected 1 to {max_length} printable ASCII characters,"
            ' bare or as a quoted string ("...")',
        )
    return key


def _structured_string(raw: str) -> str | None:
    """An RFC 8941 sf-string's value (the draft's syntax), None when `raw` is not exactly one."""
    chars: list[str] = []
    escaped = False
    for index, char in enumerate(raw[1:], start=1):
        if escaped:
            if char not in '"\\':
                return None
            chars.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return "".join(chars) if index == len(raw) - 1 else None
        else:
            chars.append(char)
    return None  # no closing quote


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    """What makes two requests the same: method, path (trailing slash aside, as routing reads it) and the
    body as parsed, so a retry that encodes the same fields differently (key order, JSON or form) is one."""
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # what orjson cannot encode (an integer past 64 bits) the json module can
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode("utf-8", "surrogatepass"), canonical):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


class IdempotentRequests:
    """Runs a keyed request at most once per (account, key) and answers its retries from the store."""

    def __init__(
        self,
        store: IdempotencyStore,
        settings: RetrySettings,
        *,
        clock: Callable[[], float] = time.time,
        new_token: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._store = store
        self.settings = settings
        self._clock = clock
        self._new_token = new_token
        # Keyed requests by outcome, for /metrics: ran, replayed, in_progress (409), mismatched (422),
        # and given_back (a 500 that changed nothing).
        self._outcomes = dict.fromkeys(("ran", "replayed", "in_progress", "mismatched", "given_back"), 0)

    def stats(self) -> dict[str, dict[str, int]]:
        return {"requests": dict(self._outcomes)}

    async def respond(
        self,
        auth_id: str,
        key: str,
        request_fingerprint: str,
        run: Callable[[], Awaitable[Response]],
        committed: Callable[[], bool],
    ) -> Response:
        """`run` answers the request (it never raises: failures are answers); `committed` says, after it,
        whether the request changed anything in the store."""
        now = self._clock()
        claim = KeyClaim(
            auth_id, key, request_fingerprint, self._new_token(), now, now + self.settings.lock_s
        )
        holder = await self._store.claim_key(claim, expired_before=now - self.settings.ttl_s)
        if holder is not None:
            return self._answer_of(holder, request_fingerprint)
        self._outcomes["ran"] += 1
        response = await run()
        await self._settle(claim, response, committed())
        return response

    def _answer_of(self, holder: KeyHolder, request_fingerprint: str) -> Response:
        if holder.fingerprint != request_fingerprint:
            self._outcomes["mismatched"] += 1
            raise ApiError(
                422,
                f"this {HEADER} was first used for another request (method, path or body differ);"
                " use a new key for a new request",
            )
        if holder.answer is None:
            self._outcomes["in_progress"] += 1
            raise ApiError(
                409,
                f"a request with this {HEADER} is still in progress; retry once it has answered",
                {"Retry-After": "1"},
            )
        self._outcomes["replayed"] += 1
        answer = holder.answer
        headers = {"content-type": answer.content_type, REPLAYED: "true"}
        return Response(answer.body, status_code=answer.status_code, headers=headers)

    async def _settle(self, claim: KeyClaim, response: Response, committed: bool) -> None:
        """Keep the answer with the key, or give the key back when a 5xx (or a "retry later") changed nothing.

        A failure here is logged, not answered: the request's own answer is the truth the client needs,
        and the claim, unanswered, is taken over by a retry once its lock has passed."""
        try:
            if not committed and (response.status_code >= 500 or "retry-after" in response.headers):
                await self._store.release_key(claim)
                self._outcomes["given_back"] += 1
                return
            content_type = response.headers.get("content-type", "application/json")
            answer = StoredAnswer(response.status_code, content_type, bytes(response.body))
            if not await self._store.record_answer(claim, answer):
                log.warning("idempotency_claim_lost", auth_id=claim.auth_id, key=claim.key)
        except Exception:
            log.exception("idempotency_answer_not_kept", auth_id=claim.auth_id, key=claim.key)
