"""The event feed: every node's committed events reach this node's event hub, once each and in order.

On one node the hub hears the conference service directly. In a cluster (several nodes on one PostgreSQL
database) a conference's commits happen on its owner, so each node also reads the other nodes' events
back from the store, which is the truth:

- a commit NOTIFYs the other nodes (adapters/store/notifications.py: account, conference, seq range);
  `notified` queues the conference and the feed reads its new events at once: the accelerator;
- every `poll_interval` the feed compares each live (and recently ended) conference's last seq in the
  store with the last one it published, and reads what is missing: the guarantee, since notifications
  sent while the LISTEN connection is down are lost.

What is published is deduplicated by (conference, seq): the feed keeps the last seq it (or the local
service, `local_commit`) published per conference and only ever publishes later ones, in order. A
conference of an account with no open stream is not read at all (its mark just moves on). Every read is
bounded: `max_events` events per round, pages of `page_size` conferences.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from bridgeline.adapters.console.hub import ConferenceInfo, EventHub
from bridgeline.app.records import ConferenceMark, ConferenceRecord, EventRecord
from bridgeline.core import snapshot
from bridgeline.core.conference import Conference

log = structlog.get_logger(__name__)

DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_MAX_EVENTS = 500
DEFAULT_PAGE_SIZE = 500
# An ended conference is still polled this long after its end (times are the nodes' clocks, which
# must agree to well within it), so its last events are found even if their notification was lost.
MIN_ENDED_WINDOW = 60.0


class FeedReader(Protocol):
    """What the feed reads; the SQL store provides it (structurally: neither imports the other)."""

    async def conference_marks(
        self, *, live: bool, since: float, after: tuple[float, str], limit: int
    ) -> list[ConferenceMark]: ...
    async def events_between(
        self, conference_id: str, after_seq: int, up_to_seq: int, limit: int
    ) -> list[EventRecord]: ...
    async def get_conference(self, conference_id: str) -> ConferenceRecord | None: ...


class CommitNotice(Protocol):
    """Another node's commit, as its notification tells it (adapters/store/notifications.py)."""

    @property
    def auth_id(self) -> str: ...
    @property
    def conference_id(self) -> str: ...
    @property
    def last_seq(self) -> int: ...


@dataclass(slots=True)
class _Mark:
    published: int  # the last seq the hub has had for this conference
    pass_number: int  # the last poll pass (or commit) that saw the conference


class EventFeed:
    def __init__(
        self,
        hub: EventHub,
        reader: FeedReader,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_events: int = DEFAULT_MAX_EVENTS,
        page_size: int = DEFAULT_PAGE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if poll_interval <= 0 or max_events < 1 or page_size < 1:
            raise ValueError("poll_interval, max_events and page_size must be positive")
        self._hub = hub
        self._reader = reader
        self._poll_interval = poll_interval
        self._max_events = max_events
        self._page_size = page_size
        self._clock = clock
        self._ended_window = max(MIN_ENDED_WINDOW, 10 * poll_interval)
        self._marks: dict[str, _Mark] = {}
        self._pass = 0
        self._baseline = False  # the first pass only records where every conference stands
        self.ready = asyncio.Event()  # set once it has: later commits are published from then on
        self._notices: dict[str, tuple[str, bool]] = {}  # conference -> (account, view-only change)
        self._poll_now = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.remote_events = 0  # events of other nodes' commits handed to the hub
        self.polls = 0
        self.failures = 0

    def stats(self) -> dict[str, int]:
        return {
            "from_other_nodes": self.remote_events,
            "feed_polls": self.polls,
            "feed_failures": self.failures,
            "feed_conferences": len(self._marks),
        }

    # ----------------------------------------------------------------- inputs
    def local_commit(self, meta: ConferenceInfo, conf: Conference, events: list[EventRecord]) -> None:
        """The ConferenceService listener: this node's own commit, published at once (and recorded, so
        the feed never publishes its events a second time)."""
        mark = self._marks.get(meta.conference_id)
        fresh = events if mark is None else [e for e in events if e.seq > mark.published]
        if events and not fresh:
            return  # the feed read them from the store first (the commit was visible before we ran)
        if fresh:
            self._marks[meta.conference_id] = _Mark(fresh[-1].seq, self._pass)
        self._hub.publish(meta, conf, fresh)

    def notified(self, notice: CommitNotice) -> None:
        """Another node committed: read its new events soon (after the baseline, if it is not done)."""
        if self._baseline and not self._hub.watches(notice.auth_id):
            if notice.last_seq:  # nobody sees it here: read nothing, just move its mark on
                self._advance(notice.conference_id, notice.last_seq)
            return
        view_only = notice.last_seq == 0
        previous = self._notices.get(notice.conference_id)
        self._notices[notice.conference_id] = (
            notice.auth_id,
            view_only and (previous is None or previous[1]),
        )
        self._wake.set()

    def poll_soon(self) -> None:
        """Notifications may have been lost (the LISTEN connection was down): poll now."""
        self._poll_now = True
        self._wake.set()

    # ----------------------------------------------------------------- the loop
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="event-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        next_poll = 0.0
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_poll - loop.time()))
            self._wake.clear()
            try:
                budget = self._max_events
                if self._baseline:
                    budget = await self._read_notices(budget)
                if self._poll_now or loop.time() >= next_poll or not self._baseline:
                    self._poll_now = False
                    complete = await self._poll(budget)
                    next_poll = loop.time() + (self._poll_interval if complete else 0.0)
                elif self._notices:
                    self._wake.set()  # the budget ran out: more next round
            except Exception:
                self.failures += 1
                log.exception("event_feed_failed")
                next_poll = loop.time() + self._poll_interval

    async def _read_notices(self, budget: int) -> int:
        while self._notices and budget > 0:
            conference_id = next(iter(self._notices))
            auth_id, view_only = self._notices.pop(conference_id)
            budget, done = await self._catch_up(conference_id, auth_id, budget, view_only=view_only)
            if not done:
                self._notices[conference_id] = (auth_id, False)
        return budget

    async def _poll(self, budget: int) -> bool:
        """One pass over every live and recently ended conference; False if the budget ran out first."""
        self._pass += 1
        self.polls += 1
        complete = True
        since = self._clock() - self._ended_window
        for live, lower in ((True, -1.0), (False, since)):
            after = (lower, "")
            while True:
                page = await self._reader.conference_marks(
                    live=live, since=lower, after=after, limit=self._page_size
                )
                for mark in page:
                    budget, done = await self._poll_one(mark, budget)
                    complete = complete and done
                if len(page) < self._page_size:
                    break
                after = (page[-1].key, page[-1].conference_id)
        if complete:  # a complete pass saw every conference still worth watching: forget the others
            for conference_id in [c for c, m in self._marks.items() if m.pass_number < self._pass]:
                del self._marks[conference_id]
        self._baseline = True
        self.ready.set()
        return complete

    async def _poll_one(self, mark: ConferenceMark, budget: int) -> tuple[int, bool]:
        known = self._marks.get(mark.conference_id)
        if known is not None:
            known.pass_number = self._pass
        if not self._baseline or not self._hub.watches(mark.auth_id):
            self._advance(mark.conference_id, mark.last_seq)
            return budget, True
        if known is not None and mark.last_seq <= known.published:
            return budget, True
        if budget <= 0:
            return budget, False
        return await self._catch_up(mark.conference_id, mark.auth_id, budget, view_only=False)

    async def _catch_up(
        self, conference_id: str, auth_id: str, budget: int, *, view_only: bool
    ) -> tuple[int, bool]:
        """Publish the conference's events the hub has not had, up to `budget`; (budget left, caught up)."""
        if not self._hub.watches(auth_id):
            return budget, True  # nobody sees it here; the next poll moves its mark on
        record = await self._reader.get_conference(conference_id)
        if record is None:
            return budget, True
        conf = snapshot.load(record.state["core"])
        version = conf.next_seq - 1
        known = self._marks.get(conference_id)
        after = 0 if known is None else known.published
        events: list[EventRecord] = []
        if version > after:
            events = await self._reader.events_between(conference_id, after, version, budget)
        known = self._marks.get(conference_id)  # the local service may have published meanwhile
        fresh = [e for e in events if known is None or e.seq > known.published]
        if fresh:
            self._advance(conference_id, fresh[-1].seq)
            self.remote_events += len(fresh)
            self._hub.publish(record, conf, fresh)
        elif view_only and not events:
            self._hub.publish(record, conf, [])  # a change of the view without an event
        if conference_id not in self._marks:
            self._advance(conference_id, after)  # known from now on, so polls do not read it again
        caught_up = not events or events[-1].seq >= version
        return budget - len(events), caught_up

    def _advance(self, conference_id: str, seq: int) -> None:
        mark = self._marks.get(conference_id)
        if mark is None:
            self._marks[conference_id] = _Mark(seq, self._pass)
        else:
            mark.published = max(mark.published, seq)
            mark.pass_number = self._pass
