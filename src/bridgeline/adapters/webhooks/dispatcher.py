"""Delivers queued event callbacks (the outbox rows written by `ConferenceStore.commit_conference`).

Each attempt POSTs the delivery's params form-encoded, signed with Plivo's V3 scheme using the
account's auth token. Any 2xx is success; everything else is a failed attempt, retried with capped
exponential backoff and jitter until `max_attempts` is reached.

A receiver only slows itself. The worker claims bounded pages of due deliveries from the store and
hands each to its destination (host:port): at most `per_destination` attempts in flight there, a short
queue behind them, and each attempt bounded by `timeout`. Nothing waits for a batch: an attempt that
ends frees its slot at once and wakes the worker for what it unblocked. Claimed deliveries are leased
(rescheduled in the store past the time their attempt can take), so pages skip them; a destination
whose queue is full gets its other due deliveries deferred rather than held in memory, until about
when its queue would drain if every attempt took the whole timeout, or until it does drain: a fast
receiver gets a burst (a hundred conferences' recordings finished at once) in one go, not the
queue's worth then the rest tens of seconds later. A crash loses
nothing: an unfinished delivery becomes due again when its lease runs out (at-least-once). Order per
(conference, URL) comes from the store, which only hands out the head of each queue.

Several nodes work one outbox (PostgreSQL): the store leases what a claim returns in the claiming
transaction, so two claims never return the same delivery while its lease lasts, and this worker starts
an attempt only while enough of its lease is left for the attempt to end inside it. A delivery whose
lease ran out while it waited here is dropped (whoever claims it next attempts it), and nothing is
rescheduled on an expired lease. Node clocks must agree to well within `LEASE_MARGIN`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import urlencode, urlsplit

import httpx
import structlog

from bridgeline.adapters.webhooks.signing import new_nonce, sign_v3
from bridgeline.app.ports import DeliveryOutbox
from bridgeline.app.records import JSON, DeliveryRecord, DeliveryStatus

log = structlog.get_logger(__name__)

USER_AGENT = "Bridgeline"
UNKNOWN_ACCOUNT = "unknown account"
_JITTER = 0.2
# Seconds of its lease an attempt must have left beyond `timeout` to start (the token lookup and the
# outcome's write, and the nodes' clock differences, fit in it).
LEASE_MARGIN = 2.0
# How often the outbox's backlog (for /metrics) is counted, at most.
BACKLOG_INTERVAL = 5.0
_DEFAULT_PORTS = {"http": 80, "https": 443}


def destination_of(url: str) -> str:
    """The receiver a URL reaches, as host:port: the unit of concurrency and of failure logging."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        return url
    return f"{parts.hostname or ''}:{port}"


@dataclass(slots=True)
class _Destination:
    queue: deque[DeliveryRecord] = field(default_factory=deque)
    active: int = 0


class FailureLog:
    """Failed attempts, logged proportionally: one warning per destination per `interval` seconds, with
    how many failures it stands for, instead of a line per attempt."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def failed(self, delivery: DeliveryRecord) -> None:
        destination = destination_of(delivery.url)
        now = self._clock()
        last = self._last.get(destination)
        if last is not None and now - last < self._interval:
            self._suppressed[destination] = self._suppressed.get(destination, 0) + 1
            return
        self._last[destination] = now
        log.warning(
            "webhook_attempt_failed",
            destination=destination,
            delivery_id=delivery.delivery_id,
            attempt=delivery.attempts,
            status=delivery.status.value,
            status_code=delivery.last_status_code,
            error=delivery.last_error,
            failures_not_logged=self._suppressed.pop(destination, 0),
        )
        if len(self._last) > 10_000:  # forget quiet destinations, so the map stays bounded
            cutoff = now - self._interval
            for key in [key for key, at in self._last.items() if at < cutoff]:
                del self._last[key]
                self._suppressed.pop(key, None)


class WebhookDispatcher:
    """Background worker: `run()` as its own task, `wake()` after committing deliveries, `stop()` at exit."""

    def __init__(
        self,
        store: DeliveryOutbox,
        client: httpx.AsyncClient,
        token_for: Callable[[str], Awaitable[str | None]],
        clock: Callable[[], float] = time.time,
        max_attempts: int = 8,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        timeout: float = 5.0,
        per_destination: int = 4,
        max_in_flight: int = 64,
        *,
        queue_per_destination: int = 32,
        page_size: int = 100,
        poll_interval: float = 0.5,
        rng: random.Random | None = None,
        failure_log: FailureLog | None = None,
        holder: Callable[[], tuple[str, int] | None] = lambda: None,
    ) -> None:
        if min(max_attempts, per_destination, max_in_flight, page_size) < 1 or queue_per_destination < 0:
            raise ValueError("max_attempts, per_destination, max_in_flight and page_size must be at least 1")
        self._store = store
        self._client = client
        self._token_for = token_for
        self._clock = clock
        self._holder = holder  # the node life that leases what this worker claims (app/cluster.py)
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._timeout = timeout
        self._per_destination = per_destination
        self._max_in_flight = max_in_flight
        self._queue_size = queue_per_destination
        self._page_size = page_size
        self._poll_interval = poll_interval
        self._rng = rng or random.Random()
        self._failures = failure_log or FailureLog()
        # Long enough for a claimed delivery to wait out a full destination queue and its own attempt.
        self._lease = timeout * (2 + queue_per_destination / per_destination) + LEASE_MARGIN + 1.0
        self._destinations: dict[str, _Destination] = {}
        # Destinations that failed at the transport level or with 5xx: (consecutive failures, pause
        # until). Their due deliveries wait out the pause without an attempt, so a dead receiver
        # costs a few probes per backoff period rather than an attempt for every queued callback.
        self._down: dict[str, tuple[int, float]] = {}
        self._claimed: dict[int, float] = {}  # queued or in flight in this process -> lease end
        # Deliveries put off while their destination was saturated (id -> the time they were put off
        # to), made due again when it drains.
        self._deferred: dict[str, dict[int, float]] = {}
        self._in_flight = 0
        self._outcomes: Counter[str] = Counter()  # attempts by the delivery's status after them
        self._latency_sum = 0.0  # event -> 2xx, seconds, over the delivered callbacks
        self._lost_leases = 0  # claimed here, dropped unattempted: the lease ran out first
        self._backlog: tuple[int, float] = (0, 0.0)
        self._backlog_at = -BACKLOG_INTERVAL
        self._attempts: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._running = False
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def stats(self) -> dict[str, float | dict[str, int]]:
        """For /metrics: attempts by outcome (delivered, pending = will retry, failed = gave up), and
        what is in flight or paused now."""
        return {
            "attempts": dict(self._outcomes),
            "in_flight": self._in_flight,
            "destinations_paused": sum(1 for _, until in self._down.values() if until > self._clock()),
            "pending": self._backlog[0],
            "oldest_due_seconds": self._backlog[1],
            # Seconds from event to 2xx, summed over delivered callbacks (mean: divide its rate by
            # that of attempts{outcome="delivered"}).
            "delivery_latency_seconds": self._latency_sum,
            "leases_expired": self._lost_leases,
        }

    def _has_lease(self, delivery_id: int, needed: float = 0.0) -> bool:
        """Whether this worker still holds the delivery's lease, with `needed` seconds to spare."""
        leased_until = self._claimed.get(delivery_id)
        return leased_until is not None and leased_until - self._clock() >= needed

    def start(self) -> asyncio.Task[None]:
        """Run the loop as a background task, so callers never wait on a delivery."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="webhook-dispatcher")
        return self._task

    def wake(self) -> None:
        """New deliveries were committed: look for due ones now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop for good: attempts in flight finish (each bounded by `timeout`), queued ones are due again."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await self._stopped.wait()
        if self._task is not None:
            await self._task
        await asyncio.gather(*self._attempts, return_exceptions=True)
        queued = [
            d.delivery_id
            for dest in self._destinations.values()
            for d in dest.queue
            if self._has_lease(d.delivery_id, LEASE_MARGIN)
        ]
        self._destinations.clear()
        if queued:  # their lease would hold them back after a restart: make them due now
            with contextlib.suppress(Exception):
                await self._store.reschedule_deliveries([(id_, 0.0) for id_ in queued])

    async def run(self) -> None:
        """Deliver due callbacks until `stop()`. Never raises: every failure is logged and retried."""
        self._running = True
        self._stopped.clear()
        try:
            while not self._stopping:
                # Cleared before claiming, so a wake() that arrives meanwhile triggers another pass.
                self._wake.clear()
                try:
                    await self._count_backlog()
                    if await self._claim_page():
                        await asyncio.sleep(0)  # a full page: more is due, after letting others run
                        continue
                except Exception:
                    log.exception("webhook_claim_failed")
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
        self._outcomes[updated.status.value] += 1
        if updated.last_error is None:
            self._note_latency(updated)
            log.debug("webhook_delivered", delivery_id=delivery.delivery_id, attempt=updated.attempts)
        else:
            self._failures.failed(updated)
        return updated

    def _note_latency(self, delivered: DeliveryRecord) -> None:
        """Seconds from the event (its callback's timestamp) to the 2xx."""
        try:
            happened = datetime.fromisoformat(delivered.params["timestamp"]).timestamp()
        except (KeyError, ValueError):
            return
        self._latency_sum += max(0.0, delivered.updated_at - happened)

    async def _count_backlog(self) -> None:
        now = self._clock()
        if now - self._backlog_at >= BACKLOG_INTERVAL:
            self._backlog_at = now
            self._backlog = await self._store.outbox_backlog(now)

    async def _claim_page(self) -> bool:
        """Claim one page of due deliveries and hand them to their destinations; True if the page was full."""
        now = self._clock()
        lease_until = now + self._lease
        claimed = await self._store.claim_deliveries(
            now, limit=self._page_size, lease_until=lease_until, holder=self._holder()
        )
        page = claimed.heads
        schedule: list[tuple[int, float]] = []
        for delivery in page:
            if self._stopping:
                break
            key = destination_of(delivery.url)
            paused_until = self._down.get(key, (0, 0.0))[1]
            destination = self._destinations.setdefault(key, _Destination())
            if delivery.delivery_id in self._claimed:
                # Its lease ran out while it waited here, and this claim leased it again: the stored
                # record is the one to attempt (another node may have attempted it meanwhile).
                self._claimed[delivery.delivery_id] = lease_until
                _replace_queued(destination, delivery)
            elif paused_until > now:
                schedule.append((delivery.delivery_id, self._after_pause(now, paused_until)))
            elif len(destination.queue) + destination.active < self._per_destination + self._queue_size:
                self._claimed[delivery.delivery_id] = lease_until
                destination.queue.append(delivery)
            else:
                # The destination is saturated: look again about when its queue should have drained.
                backlog = (len(destination.queue) + destination.active) / self._per_destination
                later = now + self._timeout * (1 + backlog)
                schedule.append((delivery.delivery_id, later))
                self._deferred.setdefault(key, {})[delivery.delivery_id] = later
        await self._store.reschedule_deliveries(schedule)
        for key in {destination_of(d.url) for d in page}:
            self._pump(key)
        return claimed.full and not self._stopping

    def _pump(self, key: str) -> None:
        """Start queued attempts for one destination while it and the worker have free slots."""
        destination = self._destinations.get(key)
        if destination is None:
            return
        while (
            destination.queue
            and destination.active < self._per_destination
            and self._in_flight < self._max_in_flight
            and not self._stopping
        ):
            delivery = destination.queue.popleft()
            if not self._has_lease(delivery.delivery_id, self._timeout + LEASE_MARGIN):
                # Too little of its lease is left: another node may claim it before the attempt ends.
                self._claimed.pop(delivery.delivery_id, None)
                self._lost_leases += 1
                continue
            destination.active += 1
            self._in_flight += 1
            task = asyncio.create_task(self._attempt(key, destination, delivery))
            self._attempts.add(task)
            task.add_done_callback(self._attempts.discard)
        if not destination.queue and not destination.active:
            self._destinations.pop(key, None)

    def _after_pause(self, now: float, paused_until: float) -> float:
        """When a delivery held back by a paused destination is due again: spread over one more pause,
        so the held-back deliveries do not all come due in the same instant."""
        return paused_until + self._rng.uniform(0.0, max(1.0, paused_until - now))

    async def _note_outcome(self, key: str, destination: _Destination, updated: DeliveryRecord) -> None:
        """Pause a destination that fails as a whole (no answer, or 5xx); resume it on a success."""
        code = updated.last_status_code
        if updated.last_error is None:
            self._down.pop(key, None)
            return
        if code is not None and code < 500:
            return  # the receiver answered: this URL's problem, not the destination's
        failures = self._down.get(key, (0, 0.0))[0] + 1
        now = self._clock()
        paused_until = now + self._backoff(failures)
        self._down[key] = (failures, max(paused_until, self._down.get(key, (0, 0.0))[1]))
        if len(self._down) > 10_000:  # bounded: forget the destination whose pause ends first
            del self._down[min(self._down, key=lambda k: self._down[k][1])]
        held = [d for d in destination.queue if self._has_lease(d.delivery_id, LEASE_MARGIN)]
        for delivery in destination.queue:
            self._claimed.pop(delivery.delivery_id, None)
        destination.queue.clear()
        if held:
            schedule = [(d.delivery_id, self._after_pause(now, paused_until)) for d in held]
            await self._store.reschedule_deliveries(schedule)

    async def _attempt(self, key: str, destination: _Destination, delivery: DeliveryRecord) -> None:
        try:
            updated = await self.deliver_once(delivery)
            await self._note_outcome(key, destination, updated)
        except LookupError:
            # Finished by another node after our lease ran out (at-least-once: it may have gone twice).
            log.info("webhook_delivery_finished_elsewhere", delivery_id=delivery.delivery_id)
        except Exception:
            log.exception("webhook_delivery_failed", delivery_id=delivery.delivery_id)
        finally:
            saturated = self._in_flight >= self._max_in_flight
            destination.active -= 1
            self._in_flight -= 1
            self._claimed.pop(delivery.delivery_id, None)
            self._pump(key)
            if saturated:  # a worker-wide slot opened: other destinations may have been waiting for it
                for other in [k for k, d in self._destinations.items() if d.queue]:
                    self._pump(other)
            if not destination.queue and key in self._deferred:
                await self._make_deferred_due(key)
            self._wake.set()  # a finished delivery may have made the next one of its queue due

    async def _make_deferred_due(self, key: str) -> None:
        """The destination's queue drained: what it had no room for is due now (a next claim takes
        it; a destination still busy defers it again). Only where nobody claimed it meanwhile: a
        delivery leased by another node (its due time moved) is left to that node."""
        deferred = self._deferred.pop(key, {})
        now = self._clock()
        moves = [(i, at, now) for i, at in sorted(deferred.items()) if i not in self._claimed]
        try:
            await self._store.advance_deliveries(moves)
        except Exception:  # they come due at their deferred time instead
            log.exception("webhook_reschedule_failed", destination=key)

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


def _replace_queued(destination: _Destination, fresh: DeliveryRecord) -> None:
    """Swap the queued copy of a delivery for the one just claimed (no-op if it is in flight already)."""
    for index, queued in enumerate(destination.queue):
        if queued.delivery_id == fresh.delivery_id:
            destination.queue[index] = fresh
            return
