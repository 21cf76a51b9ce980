"""Delivers queued event callbacks (the outbox rows written by `Store.commit_conference`).

Each attempt POSTs the delivery's params form-encoded, signed with Plivo's V3 scheme using the
account's auth token. Any 2xx is success; everything else is a failed attempt, retried with capped
exponential backoff and jitter until `max_attempts` is reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from urllib.parse import urlencode

import httpx
import structlog

from bridgeline.adapters.signing import new_nonce, sign_v3
from bridgeline.app.ports import Store
from bridgeline.app.records import JSON, DeliveryRecord, DeliveryStatus

log = structlog.get_logger(__name__)

USER_AGENT = "Bridgeline"
UNKNOWN_ACCOUNT = "unknown account"
_JITTER = 0.2
_BATCH_LIMIT = 100


class WebhookDispatcher:
    """Background worker: `run()` as its own task, `wake()` after committing deliveries, `stop()` at exit."""

    def __init__(
        self,
        store: Store,
        client: httpx.AsyncClient,
        token_for: Callable[[str], Awaitable[str | None]],
        clock: Callable[[], float] = time.time,
        max_attempts: int = 8,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        timeout: float = 5.0,
        concurrency: int = 8,
        *,
        poll_interval: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1 or concurrency < 1:
            raise ValueError("max_attempts and concurrency must be at least 1")
        self._store = store
        self._client = client
        self._token_for = token_for
        self._clock = clock
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._timeout = timeout
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._stopping = False
        self._running = False
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Run the loop as a background task, so callers never wait on a delivery."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="webhook-dispatcher")
        return self._task

    def wake(self) -> None:
        """New deliveries were committed: look for due ones now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop the loop for good, letting in-flight attempts finish (each is bounded by `timeout`)."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await self._stopped.wait()
        if self._task is not None:
            await self._task

    async def run(self) -> None:
        """Deliver due callbacks until `stop()`. Never raises: every failure is logged and retried."""
        self._running = True
        self._stopped.clear()
        try:
            while not self._stopping:
                # Cleared before fetching, so a wake() that arrives mid-batch triggers another pass.
                self._wake.clear()
                try:
                    if await self._deliver_due():
                        continue  # a delivery may have unblocked the next event of its conference
                except Exception:
                    log.exception("webhook_batch_failed")
                # stop() sets the wake event too, so this returns at once when stopping.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)
        finally:
            self._running = False
            self._stopped.set()

    async def deliver_once(self, delivery: DeliveryRecord) -> DeliveryRecord:
        """Make one attempt, store the outcome and return the updated record."""
        started = self._clock()
        token = await self._token_for(delivery.auth_id)
        if token is None:
            # No token means no valid signature, and the account will not come back: give up now.
            updated = self._record_attempt(delivery, started, None, UNKNOWN_ACCOUNT, final=True)
        else:
            status_code, error = await self._post(delivery, token)
            updated = self._record_attempt(delivery, started, status_code, error, final=False)
        await self._store.update_delivery(updated)
        log.info(
            "webhook_attempt",
            delivery_id=delivery.delivery_id,
            url=delivery.url,
            attempt=updated.attempts,
            status=updated.status.value,
            status_code=updated.last_status_code,
            error=updated.last_error,
        )
        return updated

    async def _deliver_due(self) -> bool:
        """Attempt every due delivery once; True when any of them was delivered."""
        due = await self._store.due_deliveries(self._clock(), limit=_BATCH_LIMIT)
        if not due:
            return False
        delivered = False
        slots = asyncio.Semaphore(self._concurrency)

        async def deliver(delivery: DeliveryRecord) -> None:
            async with slots:
                # Once stopping, leave the rest pending: they stay due and go out on the next run.
                if self._stopping:
                    return
                try:
                    updated = await self.deliver_once(delivery)
                except Exception:
                    log.exception("webhook_delivery_failed", delivery_id=delivery.delivery_id)
                    return
                if updated.status is not DeliveryStatus.PENDING:
                    nonlocal delivered
                    delivered = True

        await asyncio.gather(*(deliver(delivery) for delivery in due))
        return delivered and not self._stopping

    async def _post(self, delivery: DeliveryRecord, token: str) -> tuple[int | None, str | None]:
        """One signed POST; returns (status code, error), at least one of them set."""
        nonce = new_nonce()
        signature = sign_v3("POST", delivery.url, delivery.params, nonce, token)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": USER_AGENT,
            "X-Plivo-Signature-V3": signature,
            "X-Plivo-Signature-Ma-V3": signature,
            "X-Plivo-Signature-V3-Nonce": nonce,
        }
        body = urlencode(delivery.params).encode()
        try:
            # httpx timeouts are per read/write; the outer bound also stops a receiver that trickles bytes.
            async with asyncio.timeout(self._timeout):
                # Streaming: only the status matters, so a large response body is never read.
                request = self._client.stream(
                    "POST", delivery.url, content=body, headers=headers, timeout=self._timeout
                )
                async with request as response:
                    status_code = response.status_code
        except (TimeoutError, httpx.TimeoutException):
            return None, "timeout"
        except Exception as exc:
            # Connection refused, bad URL, protocol errors...: all a failed attempt, never a crash.
            detail = str(exc)
            return None, f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        if 200 <= status_code < 300:
            return status_code, None
        # Every non-2xx is retried, 4xx included (not only 408/429): a 404 or 401 usually means the
        # receiver is mid-deploy or misconfigured, and a few backed-off retries are cheaper than a lost event.
        return status_code, f"HTTP {status_code}"

    def _record_attempt(
        self,
        delivery: DeliveryRecord,
        started: float,
        status_code: int | None,
        error: str | None,
        *,
        final: bool,
    ) -> DeliveryRecord:
        now = self._clock()
        attempts = delivery.attempts + 1
        entry: JSON = {"at": started, "status_code": status_code, "error": error}
        if error is None:
            status, next_attempt_at = DeliveryStatus.DELIVERED, now
        elif final or attempts >= self._max_attempts:
            status, next_attempt_at = DeliveryStatus.FAILED, now
        else:
            status, next_attempt_at = DeliveryStatus.PENDING, now + self._backoff(attempts)
        return replace(
            delivery,
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            last_status_code=status_code,
            last_error=error,
            updated_at=now,
            history=(*delivery.history, entry),
        )

    def _backoff(self, attempts: int) -> float:
        """Seconds before the next try: base * 2**(attempts-1), capped, then ±20% jitter."""
        # The exponent is bounded so a large max_attempts cannot overflow the float.
        delay = min(self._max_delay, self._base_delay * 2.0 ** min(attempts - 1, 64))
        return delay * self._rng.uniform(1 - _JITTER, 1 + _JITTER)
