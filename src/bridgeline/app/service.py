"""The conference service: the single owner of every live conference.

Each input (API action, leg signal, timer) for a conference runs under that conference's
lock, in arrival order (asyncio.Lock is FIFO): the pure core computes effects, the new state
and its events are committed to the store in one transaction, and only then are the effects
carried out (carrier commands, callbacks, listeners). If the commit fails, the in-memory state
goes back to the last committed one and no effect runs. Each commit sets the request's
`commit_mark`, so a failure after it is not reported as "nothing was changed".

This module keeps that order and the live conferences; the translations around it live beside it:
`commit_rows.py` (what one commit writes), `carry_out.py` (committed effects to the carrier and
the recording manager), `address_index.py` (which live conference holds each address).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from bridgeline.app.address_index import AddressIndex
from bridgeline.app.carry_out import RecordingControl, carry_out, leg_request
from bridgeline.app.commit_mark import mark_committed
from bridgeline.app.commit_rows import commit_rows
from bridgeline.app.live import (
    ConferenceMeta,
    Listener,
    LiveConference,
    NotFound,
    callback_params,
    live_from_record,
    rules_for,
    run_end_of,
)
from bridgeline.app.ports import Carrier, ConferenceStore
from bridgeline.app.records import AddressTaken, ConferenceRecord, LeaseLost
from bridgeline.core import snapshot
from bridgeline.core.audio import set_audio
from bridgeline.core.commands import (
    LegColdTransfer,
    LegSignal,
    MemberAction,
    MpcAction,
    RecorderChanged,
    RecordingCommand,
    RecordingFinished,
)
from bridgeline.core.conference import Conference
from bridgeline.core.effects import Effect
from bridgeline.core.errors import ActionRefused, AddressInUse
from bridgeline.core.model import AnsweredParty, ConferencePhase, QueuedDial, Role
from bridgeline.core.recording import RecordingState
from bridgeline.phlo.definition import NodeSettings

__all__ = [
    "ConferenceMeta",
    "ConferenceService",
    "LiveConference",
    "NotFound",
    "callback_params",
    "run_end_of",
]

log = structlog.get_logger(__name__)

Owner = Callable[[], tuple[str, int] | None]
"""The (node_id, epoch) whose commits the store accepts for this node's conferences; None: no cluster."""


class ConferenceMoved(Exception):
    """The conference is no longer this node's (another node took it over): ask its owner."""

    def __init__(self, conference_id: str) -> None:
        super().__init__(f"conference {conference_id} moved to another node; retry")
        self.message = str(self)
        self.conference_id = conference_id


class ConferenceService:
    def __init__(
        self,
        store: ConferenceStore,
        carrier: Carrier,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        owner: Owner = lambda: None,
        public_url: str = "",
    ) -> None:
        self._store = store
        self._owner = owner
        self._carrier = carrier
        self._clock = clock
        self._new_id = new_id
        self._live: dict[str, LiveConference] = {}
        self._addresses = AddressIndex()
        self._tasks: set[asyncio.Task[None]] = set()
        self.listeners: list[Listener] = []
        self.recorder: RecordingControl | None = None
        self._public_url = public_url  # the base of recordings' URLs in callbacks
        # Ended conferences whose recordings' files are still being finished, for RecordingFinished.
        self._finishing: dict[str, LiveConference] = {}
        carrier.bind(self.on_signal)

    # ----------------------------------------------------------------- queries
    def find(self, auth_id: str, phlo_id: str, node_id: str, address: str) -> LiveConference | None:
        conference_id = self._addresses.holder(auth_id, phlo_id, node_id, address)
        return None if conference_id is None else self._live.get(conference_id)

    @property
    def live_count(self) -> int:
        return len(self._live)

    def live_conferences(
        self, auth_id: str, phlo_id: str, node_id: str | None = None
    ) -> list[LiveConference]:
        """The live conferences of one account's PHLO (and node)."""
        return [
            live
            for live in self._live.values()
            if live.meta.auth_id == auth_id
            and live.meta.phlo_id == phlo_id
            and (node_id is None or live.meta.node_id == node_id)
        ]

    def get_live(self, conference_id: str) -> LiveConference | None:
        return self._live.get(conference_id)

    @property
    def conference_ids(self) -> list[str]:
        return list(self._live)

    @property
    def live_leg_count(self) -> int:
        return sum(len(live.conf.live_members()) for live in self._live.values())

    # ----------------------------------------------------------------- inputs
    async def start_conference(
        self,
        *,
        auth_id: str,
        phlo_id: str,
        node_id: str,
        run_id: str | None,
        settings: NodeSettings,
        dials: list[tuple[str, Role]],
        sequential: bool,
        conference_id: str | None = None,
        answered: list[tuple[str, Role, str]] | None = None,
    ) -> str:
        """Open a conference; `answered` are inbound legs already connected (address, role, leg id)."""
        answered = answered or []
        for address, *_ in [*dials, *answered]:
            if self._addresses.holder(auth_id, phlo_id, node_id, address) is not None:
                raise AddressInUse(f"{address} is already in a live conference of this node")
        conference_id = conference_id or self._new_id()
        now = self._clock()
        conf, effects = Conference.start(
            conference_id,
            rules_for(settings),
            now,
            [QueuedDial(address, role) for address, role in dials],
            sequential=sequential,
            answered=[AnsweredParty(address, role, leg_id) for address, role, leg_id in answered],
        )
        meta = ConferenceMeta(conference_id, auth_id, phlo_id, node_id, run_id, settings, now)
        live = LiveConference(meta, conf, last_state={})
        self._live[conference_id] = live
        # Claimed before the first await, so a concurrent start sees the addresses.
        self._addresses.update(live)
        committed = False
        try:
            async with live.lock:
                await self._commit(live, effects)
                committed = True
                self._carry_out(live, effects)
        except BaseException:
            if committed:  # the conference is in the store and stays live; the answer says so
                raise
            self._live.pop(conference_id, None)
            live.conf.phase = ConferencePhase.ENDED
            self._addresses.update(live)
            raise
        return conference_id

    async def mpc_action(self, auth_id: str, phlo_id: str, node_id: str, command: MpcAction) -> str:
        live = self.find(auth_id, phlo_id, node_id, command.trigger_source)
        if live is None:
            raise ActionRefused(
                f"trigger_source {command.trigger_source} is not in a live conference of this node"
            )

        def step(conf: Conference, now: float) -> list[Effect]:
            owner = self._addresses.holder(auth_id, phlo_id, node_id, command.to)
            if owner is not None and owner != conf.conference_id:
                raise AddressInUse(f"{command.to} is already in another live conference of this node")
            return conf.handle(command, now)

        await self._apply(live, step)
        return live.meta.conference_id

    async def member_action(self, auth_id: str, phlo_id: str, node_id: str, command: MemberAction) -> str:
        live = self.find(auth_id, phlo_id, node_id, command.address)
        if live is None:
            raise NotFound(f"member {command.address} is not in a live conference of this node")
        if live.conf.live_member(command.address) is None:
            raise NotFound(
                f"member {command.address} has not been dialed yet (queued behind the first party)"
            )
        await self._apply(live, lambda conf, now: conf.handle(command, now))
        return live.meta.conference_id

    async def recording_action(
        self, auth_id: str, phlo_id: str, node_id: str, address: str, command: RecordingCommand
    ) -> str:
        """Start/stop/pause/resume the recording of the conference that holds `address` (the
        conference's when command.member is None, else that member's track)."""
        live = self.find(auth_id, phlo_id, node_id, address)
        if live is None:
            raise NotFound(f"{address} is not in a live conference of this node")
        await self._apply(live, lambda conf, now: conf.handle(command, now))
        return live.meta.conference_id

    async def recording_finished(
        self, conference_id: str, signal: RecordingFinished, record: ConferenceRecord | None = None
    ) -> None:
        """A recording's file is finished (or failed): its Completed/Failed event, committed like any
        other. The conference may be live, ended here, or (`record`, after a crash) only stored."""
        live = self._live.get(conference_id) or self._finishing.get(conference_id)
        if live is None and record is not None:
            live = live_from_record(record)
        if live is None:
            log.warning("recording_finished_unknown_conference", conference_id=conference_id)
            return
        if live.conf.live:
            await self._apply(live, lambda conf, now: conf.handle(signal, now))
            return
        async with live.lock:
            effects = live.conf.handle(signal, self._clock())
            if effects:
                await self._commit(live, effects, finish_run=False)
            if not self._awaits_files(live):
                self._finishing.pop(conference_id, None)

    async def leg_cold_transfer(self, conference_id: str, leg_id: str, to: str) -> None:
        """A member's phone asked for a cold transfer (SIP REFER): applied like the API's, with the
        same events and callbacks. Raises ActionRefused (the reason) when the conference refuses."""
        live = self._live.get(conference_id)
        if live is None:
            raise ActionRefused("the conference has ended")
        meta = live.meta

        def step(conf: Conference, now: float) -> list[Effect]:
            owner = self._addresses.holder(meta.auth_id, meta.phlo_id, meta.node_id, to)
            if owner is not None and owner != conf.conference_id:
                raise ActionRefused(f"{to} is already in another live conference of this node")
            return conf.handle(LegColdTransfer(leg_id, to), now)

        await self._apply(live, step)

    def on_signal(self, conference_id: str, signal: LegSignal) -> None:
        """The carriers' sink: queue the signal behind the conference's other inputs."""
        live = self._live.get(conference_id)
        if live is None:
            return
        self._spawn(self._apply_quietly(live, lambda conf, now: conf.handle(signal, now)))

    async def restore(self) -> int:
        """Take back the conferences that were live when the server stopped (no cluster: all of them)."""
        records = await self._store.load_live_conferences()
        segments = [task for record in records if (task := self.adopt(record)) is not None]
        await asyncio.gather(*segments, return_exceptions=True)
        return len(records)

    def adopt(self, record: ConferenceRecord) -> asyncio.Task[None] | None:
        """Take over one live conference from its stored snapshot (after a restart, or from another node):
        its legs are handed to the carrier (which recovers or re-rings them), its audio and deadlines
        set up again, and its active recordings go on in new segments (`RecorderChanged`, committed
        like any input; the task is returned, None when nothing is recorded)."""
        existing = self._live.get(record.conference_id)
        if existing is not None:
            self._release(
                existing
            )  # an older copy (e.g. from before a lease was lost): the store is the truth
        live = live_from_record(record)
        conf, meta, settings = live.conf, live.meta, live.meta.settings
        live.inherited_files = frozenset(
            r.recording_id for r in conf.recordings if r.state.active or r.state is RecordingState.STOPPING
        )
        self._live[record.conference_id] = live
        self._addresses.update(live)
        for member in conf.live_members():
            request = leg_request(meta, member.leg_id, member.address, member.role)
            self._carrier.restore(request, answered=member.answered)
        self._carrier.set_audio(record.conference_id, set_audio(conf), settings.music_sources())
        for member in conf.live_members():
            if member.playing_voicemail:  # the message starts over: its end hangs the leg up
                self._carrier.play(member.leg_id, settings.voicemail_message)
        self._arm_timer(live)
        if not any(r.state.active for r in conf.recordings):
            return None
        # Spawned before any other input of this conference can exist, so it takes the lock first:
        # the old segments are STOPPING before recover() hands their RecordingFinished in.
        return self._spawn(self._apply_quietly(live, lambda c, now: c.handle(RecorderChanged(), now)))

    async def release(self, conference_id: str) -> None:
        """Forget a conference without hanging up its legs: another node owns it now."""
        live = self._live.get(conference_id)
        if live is not None:
            async with live.lock:
                self._release(live)

    async def hand_off(self, conference_id: str, give: Callable[[], Awaitable[bool]]) -> bool:
        """Give a conference away (drain): `give` records the new owner in the store; once it has, the
        conference is forgotten here without a word to its legs. Under its lock, so no input is half-way."""
        live = self._live.get(conference_id)
        if live is None:
            return False
        async with live.lock:
            if self._live.get(conference_id) is not live or not await give():
                return False
            self._release(live)
            return True

    async def shutdown(self) -> None:
        for live in self._live.values():
            if live.timer is not None:
                live.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ----------------------------------------------------------------- machinery
    async def _apply(self, live: LiveConference, step: Callable[[Conference, float], list[Effect]]) -> None:
        async with live.lock:
            if self._live.get(live.meta.conference_id) is not live:
                if live.moved:
                    raise ConferenceMoved(live.meta.conference_id)
                raise ActionRefused("the conference has ended")
            effects = step(live.conf, self._clock())
            if not effects:
                self._arm_timer(live)  # a timer that fired a little early must be re-armed
                return
            # Claim new addresses before awaiting the store: an input for another conference of the
            # node, running while this commit waits, must already see them.
            self._addresses.update(live)
            try:
                await self._commit(live, effects)
            except BaseException:
                if not live.moved:
                    self._addresses.update(live)  # the failed commit put the state (and its addresses) back
                raise
            self._carry_out(live, effects)

    async def _apply_quietly(
        self, live: LiveConference, step: Callable[[Conference, float], list[Effect]]
    ) -> None:
        try:
            await self._apply(live, step)
        except ActionRefused:
            pass  # the conference ended while the signal or timer waited
        except ConferenceMoved:
            pass  # logged once, when the store refused the commit
        except Exception:
            log.exception("conference_input_failed", conference_id=live.meta.conference_id)

    async def _commit(self, live: LiveConference, effects: list[Effect], *, finish_run: bool = True) -> None:
        meta, conf = live.meta, live.conf
        rows = commit_rows(
            live,
            effects,
            owner=self._owner(),
            updated_at=self._clock(),
            public_url=self._public_url,
            finish_run=finish_run,
        )
        events = rows.events
        try:
            await self._store.commit_conference(
                rows.record, events, rows.deliveries, rows.run_end, rows.claimed, rows.released
            )
        except BaseException as error:
            if live.last_state:
                live.conf = snapshot.load(live.last_state["core"])  # type: ignore[arg-type]
            if isinstance(error, LeaseLost):
                # Fenced: someone else owns it now (or this node's lease ran out). Its legs are theirs.
                log.warning("lease_lost", conference_id=meta.conference_id, reason=str(error))
                self._release(live)
                raise ConferenceMoved(meta.conference_id) from None
            if isinstance(error, AddressTaken):  # by a conference of another cluster node
                raise AddressInUse(str(error)) from None
            raise
        mark_committed()
        live.last_state = rows.state
        live.committed_addresses = set(live.addresses)
        if log.is_enabled_for(logging.DEBUG):  # the events API and the console show every event anyway
            for event in events:
                log.debug("event", mpc_uuid=meta.conference_id, seq=event.seq, type=event.type, **event.data)
        for listener in self.listeners:
            try:
                listener(meta, conf, events)
            except Exception:
                log.exception("listener_failed", conference_id=meta.conference_id)

    def _carry_out(self, live: LiveConference, effects: list[Effect]) -> None:
        """Run the effects of a committed input (its addresses were indexed before the commit)."""
        carry_out(self._carrier, self.recorder, live.meta, effects)
        if live.conf.live:
            self._arm_timer(live)
        else:
            self._forget(live)

    def _forget(self, live: LiveConference) -> None:
        conference_id = live.meta.conference_id
        if live.timer is not None:
            live.timer.cancel()
        self._live.pop(conference_id, None)
        if self._awaits_files(live):
            self._finishing[conference_id] = live
        self._carrier.conference_ended(conference_id)

    @staticmethod
    def _awaits_files(live: LiveConference) -> bool:
        """A recording is still being finished (its Completed/Failed is due): by this process, or by the
        one it was adopted from (app/segments.py settles those)."""
        return any(r.state is RecordingState.STOPPING for r in live.conf.recordings)

    def inherited_segments(self) -> list[tuple[str, str]]:
        """(conference id, recording id) of the segments still being finished by an earlier process
        (the one this conference was adopted from), in live conferences and those ended here."""
        return [
            (conference_id, r.recording_id)
            for conferences in (self._live, self._finishing)
            for conference_id, live in conferences.items()
            for r in live.conf.recordings
            if r.state is RecordingState.STOPPING and r.recording_id in live.inherited_files
        ]

    def _release(self, live: LiveConference) -> None:
        """Forget a live conference here only: no effect, no hang-up (its owner is elsewhere now)."""
        conference_id = live.meta.conference_id
        live.moved = True
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        if self._live.get(conference_id) is live:
            del self._live[conference_id]
        self._addresses.release(live)
        self._carrier.release_conference(conference_id)

    def _arm_timer(self, live: LiveConference) -> None:
        deadline = live.conf.next_deadline()
        if live.timer is not None:
            if deadline == live.timer_deadline:
                return  # most inputs leave the next deadline where it was
            live.timer.cancel()
            live.timer = None
        if deadline is None:
            return
        live.timer_deadline = deadline
        delay = max(0.0, deadline - self._clock())
        loop = asyncio.get_running_loop()
        live.timer = loop.call_later(delay, self._timer_fired, live)

    def _timer_fired(self, live: LiveConference) -> None:
        live.timer = None
        self._spawn(self._apply_quietly(live, lambda conf, now: conf.handle_timer(now)))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
