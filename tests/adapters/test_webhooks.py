"""WebhookDispatcher against a real HTTP receiver on 127.0.0.1 and a real httpx client."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Any, cast
from urllib.parse import parse_qsl

import httpx
import pytest
from plivo.utils import validate_v3_signature

from bridgeline.adapters.webhooks.dispatcher import WebhookDispatcher
from bridgeline.app.ports import DeliveryOutbox
from bridgeline.app.records import ClaimedPage, DeliveryRecord, DeliveryStatus, NewDelivery

AUTH_ID = "MAXXXXXXXXXXXXXXXXXX"
TOKEN = "test-auth-token"
RESPONSE = "HTTP/1.1 {} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
PARAMS = {"ConferenceUUID": "c-1", "Event": "MemberJoined", "Name": "Zoë", "Blank": ""}


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server: records each request, answers `status`, or never answers if `hold`."""

    status: int = 200
    delay: float = 0.0
    hold: bool = False
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    port: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set on every request read
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[Any]] = field(default_factory=set)

    def url(self, path: str = "/cb") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._handlers.add(cast("asyncio.Task[Any]", asyncio.current_task()))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            method, target, _ = (await reader.readline()).decode().split(" ", 2)
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(method, target, headers, body))
            self.arrived.set()
            if self.hold:
                await asyncio.Event().wait()  # until cancelled by close()
            await asyncio.sleep(self.delay)
            writer.write(RESPONSE.format(self.status).encode())
            await writer.drain()
        finally:
            self.in_flight -= 1
            writer.close()
            with suppress(Exception):
                await writer.wait_closed()


class FakeStore:
    """The DeliveryOutbox port, in memory."""

    def __init__(self) -> None:
        self.rows: dict[int, DeliveryRecord] = {}
        self.due_calls = 0
        self.holders: list[tuple[str, int] | None] = []  # each claim's holder
        self.fail_next_due = False
        self.changed = asyncio.Event()  # set on every call, so tests can wait without polling

    def add(self, new: NewDelivery, next_attempt_at: float = 0.0) -> DeliveryRecord:
        record = DeliveryRecord(
            delivery_id=len(self.rows) + 1,
            conference_id=new.conference_id,
            event_seq=new.event_seq,
            url=new.url,
            auth_id=new.auth_id,
            params=dict(new.params),
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=next_attempt_at,
        )
        self.rows[record.delivery_id] = record
        return record

    async def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        self.due_calls += 1
        self.changed.set()
        if self.fail_next_due:
            self.fail_next_due = False
            raise RuntimeError("store is down")
        pending = (r for r in self.rows.values() if r.status is DeliveryStatus.PENDING)
        due = [r for r in pending if r.next_attempt_at <= now]
        return sorted(due, key=lambda r: (r.next_attempt_at, r.delivery_id))[:limit]

    async def claim_deliveries(
        self,
        now: float,
        limit: int = 100,
        lease_until: float | None = None,
        holder: tuple[str, int] | None = None,
    ) -> ClaimedPage:
        """The heads of the (conference, URL) queues among the due deliveries, as the SQL stores hand out."""
        self.holders.append(holder)
        self.due_calls += 1
        self.changed.set()
        if self.fail_next_due:
            self.fail_next_due = False
            raise RuntimeError("store is down")
        pending = sorted(
            (r for r in self.rows.values() if r.status is DeliveryStatus.PENDING), key=lambda r: r.delivery_id
        )
        heads: dict[tuple[str, str], DeliveryRecord] = {}
        for record in pending:
            heads.setdefault((record.conference_id, record.url), record)
        due = [r for r in heads.values() if r.next_attempt_at <= now]
        page = sorted(due, key=lambda r: (r.next_attempt_at, r.delivery_id))[:limit]
        if lease_until is not None:
            page = [replace(r, next_attempt_at=lease_until) for r in page]
            self.rows.update((r.delivery_id, r) for r in page)
        return ClaimedPage(page, full=len(page) >= limit)

    async def outbox_backlog(self, now: float) -> tuple[int, float]:
        pending = [r for r in self.rows.values() if r.status is DeliveryStatus.PENDING]
        overdue = [now - r.next_attempt_at for r in pending if r.next_attempt_at < now]
        return len(pending), max(overdue, default=0.0)

    async def reschedule_deliveries(self, next_attempts: list[tuple[int, float]]) -> None:
        for delivery_id, at in next_attempts:
            if self.rows[delivery_id].status is DeliveryStatus.PENDING:
                self.rows[delivery_id] = replace(self.rows[delivery_id], next_attempt_at=at)

    async def advance_deliveries(self, moves: list[tuple[int, float, float]]) -> None:
        for delivery_id, due_at, new_at in moves:
            row = self.rows[delivery_id]
            if row.status is DeliveryStatus.PENDING and row.next_attempt_at == due_at:
                self.rows[delivery_id] = replace(row, next_attempt_at=new_at)

    async def update_delivery(self, delivery: DeliveryRecord) -> None:
        if self.rows[delivery.delivery_id].status is not DeliveryStatus.PENDING:
            raise LookupError(f"no pending delivery {delivery.delivery_id} to update")
        self.rows[delivery.delivery_id] = delivery
        self.changed.set()

    async def list_deliveries(self, conference_id: str) -> list[DeliveryRecord]:
        return [r for r in self.rows.values() if r.conference_id == conference_id]


@dataclass
class FakeClock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


async def token_for(auth_id: str) -> str | None:
    return TOKEN if auth_id == AUTH_ID else None


def new_delivery(url: str, auth_id: str = AUTH_ID, seq: int = 1, conference_id: str = "c-1") -> NewDelivery:
    return NewDelivery(
        conference_id=conference_id, event_seq=seq, url=url, auth_id=auth_id, params=dict(PARAMS)
    )


async def wait_until(store: FakeStore, predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(2.0):
        while not predicate():
            store.changed.clear()
            await store.changed.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


Make = Callable[..., WebhookDispatcher]


@pytest.fixture
async def make(store: FakeStore) -> AsyncIterator[Make]:
    """Builds dispatchers over the fake store and one real httpx client."""
    async with httpx.AsyncClient() as client:
        yield lambda **options: WebhookDispatcher(cast(DeliveryOutbox, store), client, token_for, **options)


async def test_delivers_signed_form_on_200(receiver: Receiver, store: FakeStore, make: Make) -> None:
    url = receiver.url("/callbacks?tenant=7&b=x")
    clock = FakeClock()
    record = await make(clock=clock).deliver_once(store.add(new_delivery(url)))

    assert record.status is DeliveryStatus.DELIVERED
    assert (record.attempts, record.last_status_code, record.last_error) == (1, 200, None)
    assert record.history == ({"at": clock.now, "status_code": 200, "error": None},)
    assert store.rows[record.delivery_id] == record

    [request] = receiver.requests
    assert (request.method, request.target) == ("POST", "/callbacks?tenant=7&b=x")
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["user-agent"] == "Bridgeline"
    assert (body := dict(parse_qsl(request.body.decode(), keep_blank_values=True))) == PARAMS
    signature = request.headers["x-plivo-signature-v3"]
    nonce = request.headers["x-plivo-signature-v3-nonce"]
    assert request.headers["x-plivo-signature-ma-v3"] == signature
    assert validate_v3_signature("POST", url, nonce, TOKEN, signature, body)
    assert not validate_v3_signature("POST", url, nonce, "other-token", signature, body)


@pytest.mark.parametrize("status", [500, 404])
async def test_retries_with_backoff(receiver: Receiver, store: FakeStore, make: Make, status: int) -> None:
    receiver.status = status
    clock = FakeClock()
    dispatcher = make(clock=clock, base_delay=2.0, max_attempts=5)
    record = store.add(new_delivery(receiver.url()))

    for attempt in (1, 2, 3):
        record = await dispatcher.deliver_once(record)
        expected = 2.0 * 2 ** (attempt - 1)
        delay = record.next_attempt_at - clock.now
        assert 0.8 * expected - 1e-9 <= delay <= 1.2 * expected + 1e-9
        assert record.status is DeliveryStatus.PENDING
        assert (record.attempts, record.last_status_code) == (attempt, status)
        assert record.last_error == f"HTTP {status}"
        assert await store.due_deliveries(clock.now) == []  # not due before its backoff
        clock.now = record.next_attempt_at
        assert await store.due_deliveries(clock.now) == [record]

    assert [entry["status_code"] for entry in record.history] == [status] * 3
    assert len(receiver.requests) == 3


async def test_backoff_is_capped(receiver: Receiver, store: FakeStore, make: Make) -> None:
    receiver.status = 503
    clock = FakeClock()
    dispatcher = make(clock=clock, base_delay=1.0, max_delay=3.0)
    record = store.add(new_delivery(receiver.url()))
    for _ in range(4):  # raw delays 1, 2, 4, 8 -> capped at 3
        record = await dispatcher.deliver_once(record)
    assert 2.4 - 1e-9 <= record.next_attempt_at - clock.now <= 3.6 + 1e-9


async def test_failed_after_max_attempts(receiver: Receiver, store: FakeStore, make: Make) -> None:
    receiver.status = 500
    clock = FakeClock()
    dispatcher = make(clock=clock, max_attempts=3)
    record = store.add(new_delivery(receiver.url()))
    for expected in (DeliveryStatus.PENDING, DeliveryStatus.PENDING, DeliveryStatus.FAILED):
        record = await dispatcher.deliver_once(record)
        assert record.status is expected
        clock.now = record.next_attempt_at
    assert (record.attempts, len(record.history)) == (3, 3)
    assert await store.due_deliveries(clock.now + 1e6) == []


async def test_timeout_counts_as_failed_attempt(receiver: Receiver, store: FakeStore, make: Make) -> None:
    receiver.hold = True
    started = time.monotonic()
    record = await make(timeout=0.1).deliver_once(store.add(new_delivery(receiver.url())))
    assert time.monotonic() - started < 1.0
    assert (record.status, record.attempts) == (DeliveryStatus.PENDING, 1)
    assert (record.last_status_code, record.last_error) == (None, "timeout")
    assert record.history[-1]["error"] == "timeout"


async def test_connection_refused_counts_as_failed_attempt(store: FakeStore, make: Make) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    record = await make().deliver_once(store.add(new_delivery(f"http://127.0.0.1:{port}/cb")))
    assert (record.status, record.attempts, record.last_status_code) == (DeliveryStatus.PENDING, 1, None)
    assert record.last_error is not None and record.last_error.startswith("ConnectError")


async def test_unknown_account_fails_without_sending(
    receiver: Receiver, store: FakeStore, make: Make
) -> None:
    delivery = store.add(new_delivery(receiver.url(), auth_id="MA_UNKNOWN"))
    record = await make().deliver_once(delivery)
    assert (record.status, record.last_error) == (DeliveryStatus.FAILED, "unknown account")
    assert store.rows[delivery.delivery_id] == record
    assert receiver.requests == []


async def test_run_delivers_after_wake_and_stops(receiver: Receiver, store: FakeStore, make: Make) -> None:
    dispatcher = make(poll_interval=30.0)  # only wake() can trigger the second pass
    task = asyncio.create_task(dispatcher.run())
    await wait_until(store, lambda: store.due_calls >= 1)

    delivery = store.add(new_delivery(receiver.url()))
    dispatcher.wake()
    await wait_until(store, lambda: store.rows[delivery.delivery_id].status is DeliveryStatus.DELIVERED)

    await asyncio.wait_for(dispatcher.stop(), 1.0)
    assert task.done() and task.exception() is None
    assert len(receiver.requests) == 1


async def test_claims_are_leased_in_the_name_of_the_node_s_current_life(
    receiver: Receiver, store: FakeStore, make: Make
) -> None:
    life: dict[str, tuple[str, int] | None] = {"now": None}
    dispatcher = make(poll_interval=30.0, holder=lambda: life["now"])
    dispatcher.start()
    await wait_until(store, lambda: store.due_calls >= 1)
    life["now"] = ("node-a", 7)  # registered (again: a new epoch)
    delivery = store.add(new_delivery(receiver.url()))
    dispatcher.wake()
    await wait_until(store, lambda: store.rows[delivery.delivery_id].status is DeliveryStatus.DELIVERED)
    await asyncio.wait_for(dispatcher.stop(), 1.0)
    assert (
        store.holders[0] is None
        and ("node-a", 7) in store.holders
        and set(store.holders)
        <= {
            None,
            ("node-a", 7),
        }
    )


async def test_run_survives_store_errors(receiver: Receiver, store: FakeStore, make: Make) -> None:
    store.fail_next_due = True
    delivery = store.add(new_delivery(receiver.url()))
    dispatcher = make(poll_interval=30.0)
    task = dispatcher.start()
    await wait_until(store, lambda: store.due_calls >= 1)
    dispatcher.wake()
    await wait_until(store, lambda: store.rows[delivery.delivery_id].status is DeliveryStatus.DELIVERED)
    await asyncio.wait_for(dispatcher.stop(), 1.0)
    assert task.done() and task.exception() is None


async def test_run_bounds_concurrency(receiver: Receiver, store: FakeStore, make: Make) -> None:
    receiver.delay = 0.05
    deliveries = [store.add(new_delivery(receiver.url(), conference_id=f"c-{n}")) for n in range(6)]
    dispatcher = make(per_destination=2, poll_interval=30.0)
    dispatcher.start()
    await wait_until(
        store, lambda: all(store.rows[d.delivery_id].status is DeliveryStatus.DELIVERED for d in deliveries)
    )
    await dispatcher.stop()
    assert receiver.max_in_flight == 2
    assert len(receiver.requests) == 6


# --- a receiver only slows itself (issue 9, item 14) ---------------------------------------------------


def numbered(url: str, conference_id: str, seq: int) -> NewDelivery:
    return NewDelivery(conference_id, seq, url, AUTH_ID, {"sequence": str(seq)})


async def test_a_hanging_receiver_does_not_hold_back_other_receivers(store: FakeStore, make: Make) -> None:
    hanging = [Receiver(hold=True) for _ in range(3)]
    healthy = [Receiver(delay=0.01) for _ in range(3)]
    for server in [*hanging, *healthy]:
        await server.start()
    dispatcher = make(timeout=30.0, per_destination=2, max_in_flight=16, poll_interval=0.05)
    try:
        # The hanging receivers' deliveries are the oldest, and more than they have slots.
        stuck = [
            store.add(numbered(server.url(), f"h{index}-{n}", 1))
            for index, server in enumerate(hanging)
            for n in range(12)
        ]
        flowing = [
            store.add(numbered(server.url(), f"ok{index}", seq))
            for index, server in enumerate(healthy)
            for seq in range(1, 6)
        ]
        dispatcher.start()
        await wait_until(
            store, lambda: all(store.rows[d.delivery_id].status is DeliveryStatus.DELIVERED for d in flowing)
        )
        # Every healthy callback went out while no attempt at a hanging receiver had even ended.
        assert all(store.rows[d.delivery_id].attempts == 0 for d in stuck)
        assert [server.max_in_flight for server in hanging] == [2, 2, 2]  # bounded per destination
        for server in healthy:  # one conference's callbacks in event order
            assert [parse_qsl(r.body.decode())[0][1] for r in server.requests] == ["1", "2", "3", "4", "5"]
    finally:
        for server in hanging:
            await server.close()  # ends the held attempts, so stop() need not wait for their timeout
        await asyncio.wait_for(dispatcher.stop(), 5.0)
        for server in healthy:
            await server.close()


async def test_a_saturated_destination_defers_what_it_cannot_queue(store: FakeStore, make: Make) -> None:
    hanging = Receiver(hold=True)
    await hanging.start()
    clock = FakeClock()
    dispatcher = make(
        clock=clock, timeout=10.0, per_destination=1, queue_per_destination=2, poll_interval=30.0
    )
    try:
        records = [store.add(numbered(hanging.url(), f"c{n}", 1)) for n in range(6)]
        dispatcher.start()
        await asyncio.wait_for(hanging.arrived.wait(), 2.0)
        due_again = sorted(store.rows[r.delivery_id].next_attempt_at - clock.now for r in records)
        # One in flight and two queued are leased; the other three are deferred until the queue drains.
        assert all(delay > 0 for delay in due_again)
        assert (await store.claim_deliveries(clock.now)).heads == []
    finally:
        await hanging.close()
        await asyncio.wait_for(dispatcher.stop(), 5.0)


async def test_a_failure_storm_logs_one_line_per_destination(
    store: FakeStore, make: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # nothing listens there: every attempt fails at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dispatcher = make()
    for n in range(20):
        await dispatcher.deliver_once(store.add(numbered(f"http://127.0.0.1:{port}/cb", f"c{n}", 1)))
    out = capsys.readouterr().out
    assert out.count("webhook_attempt_failed") == 1


async def test_a_successful_attempt_logs_at_debug_only(
    receiver: Receiver, store: FakeStore, make: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(5):
        await make().deliver_once(store.add(numbered(receiver.url(), f"c{n}", 1)))
    lines = [line for line in capsys.readouterr().out.splitlines() if "webhook" in line]
    assert len(lines) <= 5 and all("[debug" in line for line in lines), lines


async def test_a_dead_destination_is_paused_not_hammered(store: FakeStore, make: Make) -> None:
    with socket.socket() as probe:  # nothing listens there: every attempt is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = FakeClock()
    dispatcher = make(clock=clock, per_destination=2, base_delay=60.0, poll_interval=0.01)
    records = [store.add(numbered(f"http://127.0.0.1:{port}/cb", f"c{n}", 1)) for n in range(20)]
    dispatcher.start()
    await wait_until(store, lambda: sum(store.rows[r.delivery_id].attempts for r in records) >= 2)
    for _ in range(20):  # more passes of the worker: none may attempt while the destination is paused
        await asyncio.sleep(0.01)
    await asyncio.wait_for(dispatcher.stop(), 5.0)
    tried = [store.rows[r.delivery_id] for r in records if store.rows[r.delivery_id].attempts]
    assert len(tried) <= 2  # the probes: one per slot
    waiting = [store.rows[r.delivery_id] for r in records if not store.rows[r.delivery_id].attempts]
    assert all(r.next_attempt_at >= clock.now + 60.0 * 0.8 for r in waiting)  # held back, not attempted


async def test_a_destination_that_answers_again_is_resumed(
    receiver: Receiver, store: FakeStore, make: Make
) -> None:
    receiver.status = 503
    clock = FakeClock()
    dispatcher = make(clock=clock, per_destination=1, base_delay=5.0, poll_interval=0.01)
    first = store.add(numbered(receiver.url(), "c1", 1))
    second = store.add(numbered(receiver.url(), "c2", 1))
    dispatcher.start()
    await wait_until(store, lambda: store.rows[first.delivery_id].attempts == 1)
    receiver.status = 200
    clock.now += 60.0  # past the pause and the first delivery's backoff
    dispatcher.wake()
    await wait_until(
        store,
        lambda: all(store.rows[d.delivery_id].status is DeliveryStatus.DELIVERED for d in (first, second)),
    )
    await asyncio.wait_for(dispatcher.stop(), 5.0)


async def test_a_delivery_whose_lease_ran_out_in_the_queue_is_not_attempted_on_it(
    receiver: Receiver, store: FakeStore, make: Make
) -> None:
    """Several nodes work one outbox: once a claimed delivery's lease is too short for an attempt,
    another node may claim it, so this one drops it (and attempts it only once claimed again)."""
    receiver.delay = 0.3
    clock = FakeClock()
    dispatcher = make(clock=clock, timeout=1.0, per_destination=1, poll_interval=0.05)
    first = store.add(new_delivery(receiver.url(), conference_id="c-1"))
    second = store.add(new_delivery(receiver.url(), conference_id="c-2"))
    dispatcher.start()
    try:
        async with asyncio.timeout(5):
            await receiver.arrived.wait()  # the first is in flight, the second waits in the queue
            leased_until = store.rows[second.delivery_id].next_attempt_at
            clock.now = leased_until - 1.0  # less than the attempt's timeout is left
            await wait_until(store, lambda: dispatcher.stats()["leases_expired"] == 1)
            assert store.rows[first.delivery_id].status is DeliveryStatus.DELIVERED
            assert len(receiver.requests) == 1 and store.rows[second.delivery_id].attempts == 0
            clock.now = leased_until  # its lease has run out: due again, for any node
            await wait_until(store, lambda: store.rows[second.delivery_id].status is DeliveryStatus.DELIVERED)
    finally:
        await dispatcher.stop()
    # Dropped, then claimed again once its lease had run out, with a new lease: attempted once.
    assert [r.target for r in receiver.requests] == ["/cb", "/cb"]
    assert store.rows[second.delivery_id].attempts == 1


async def test_what_a_saturated_destination_put_off_goes_out_once_it_drains(
    store: FakeStore, make: Make
) -> None:
    # The clock stands still: the deferred deliveries come due only because the destination drained
    # (a burst, e.g. every conference's recording finished at once, to one fast receiver).
    fast = Receiver(delay=0.01)
    await fast.start()
    dispatcher = make(
        clock=FakeClock(), timeout=10.0, per_destination=1, queue_per_destination=2, poll_interval=30.0
    )
    try:
        records = [store.add(numbered(fast.url(), f"c{n}", 1)) for n in range(8)]
        dispatcher.start()
        await wait_until(
            store, lambda: all(store.rows[r.delivery_id].status is DeliveryStatus.DELIVERED for r in records)
        )
        assert fast.max_in_flight == 1 and len(fast.requests) == 8
    finally:
        await asyncio.wait_for(dispatcher.stop(), 5.0)
        await fast.close()
