"""SIP calls that survive a restart or a move to another node (docs/sip.md, "Recovering calls").

`DialogStore` is this carrier's own port: where answered legs' dialogs are kept (the SQL stores'
`sip_dialogs` table satisfies it structurally; neither side imports the other). `DialogKeeper`
writes behind: a leg's dialog is saved when the endpoint says it changed (answered, CSeq, target,
route set, session: `SipEndpoint.take_changed_dialogs`, read after each batch of SIP traffic), only
when it differs from what was last written, coalesced per leg and written by one task, so SIP
handling never waits for the database and no write happens per RTP packet. `CallRecovery` is what
`SipCarrier.restore(request, answered=True)` does: read the leg's saved dialog, open a new RTP port
and send the re-INVITE (sip/recovery.py); the leg is reported hung up when there is nothing to
recover or the peer refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from bridgeline.adapters.carriers.sip.carrier_legs import SipLeg
from bridgeline.adapters.carriers.sip.media_engine import MediaEngine, MediaPortsExhausted
from bridgeline.adapters.carriers.sip.transport_udp import SipUdpTransport
from bridgeline.app.ports import LegRequest
from bridgeline.app.records import JSON
from bridgeline.core.commands import LegHungUp, LegSignal
from bridgeline.core.model import LeaveReason
from bridgeline.sip import events as sip
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.offer_answer import Codec, MediaParams
from bridgeline.sip.refer_policy import LegKind
from bridgeline.sip.saved_dialog import SavedDialog, SavedDialogError, recovery_offer

log = structlog.get_logger(__name__)

FENCE_RECHECK_S = 0.05  # how often held dialog writes look whether the lease holds again


class DialogStore(Protocol):
    """Saved dialogs by leg id, as `SavedDialog.to_json()` documents."""

    async def put_sip_dialog(
        self, leg_id: str, conference_id: str, dialog: JSON, saved_at: float
    ) -> None: ...
    async def get_sip_dialog(self, leg_id: str) -> JSON | None: ...
    async def list_sip_dialogs(self) -> dict[str, JSON]:
        """Every saved dialog (a node that starts expects requests for them)."""
        ...

    async def delete_sip_dialogs(self, leg_ids: Sequence[str]) -> None: ...


class DialogKeeper:
    """Write-behind of saved dialogs: the latest state per leg, one writer task."""

    def __init__(self, store: DialogStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        # True while the node's lease does not hold locally (docs/cluster.md, "Local fencing"): the
        # legs may be another node's already, whose rows this node must not overwrite or delete.
        self.fenced: Callable[[], bool] = lambda: False
        self._stopping = False
        self._written: dict[str, SavedDialog] = {}  # what the store holds, by leg
        self._pending: dict[str, tuple[str, SavedDialog] | None] = {}  # None: delete
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.writes = 0  # rows written (upserts and deletes), for /metrics and tests
        self.failures = 0
        self.fenced_drops = 0  # rows not written: the process stopped while its lease did not hold

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopping = True
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def save(self, leg_id: str, conference_id: str, saved: SavedDialog) -> None:
        if self._written.get(leg_id) == saved and leg_id not in self._pending:
            return  # a change that a saved copy does not hold (e.g. the peer's CSeq)
        self._queue(leg_id, (conference_id, saved))

    def forget(self, leg_id: str) -> None:
        if leg_id in self._written or self._pending.get(leg_id) is not None:
            self._queue(leg_id, None)

    def release(self, leg_id: str) -> None:
        """Stop keeping this leg's dialog without deleting it (its call moved to another node)."""
        self._pending.pop(leg_id, None)
        self._written.pop(leg_id, None)

    def known(self, leg_id: str, saved: SavedDialog) -> None:
        """A dialog read back from the store: the store holds it already."""
        self._written[leg_id] = saved

    def _queue(self, leg_id: str, entry: tuple[str, SavedDialog] | None) -> None:
        self._pending[leg_id] = entry
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is written (or failed)."""
        if self._task is not None:
            await self._idle.wait()

    async def load(self, leg_id: str) -> SavedDialog | None:
        raw = await self._store.get_sip_dialog(leg_id)
        return None if raw is None else _read(leg_id, raw)

    async def load_all(self) -> dict[str, SavedDialog]:
        found = {leg_id: _read(leg_id, raw) for leg_id, raw in (await self._store.list_sip_dialogs()).items()}
        return {leg_id: saved for leg_id, saved in found.items() if saved is not None}

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Fenced, writes wait: a renewal lets them go; a lost lease releases the legs first
            # (`release` drops their writes), so a paused node that wakes up writes nothing for them.
            # Polled: a lease runs out with the clock, which signals nothing.
            while self._pending and self.fenced() and not self._stopping:  # noqa: ASYNC110
                await asyncio.sleep(FENCE_RECHECK_S)
            if self.fenced():  # stopping without a lease: these rows may be another node's now
                self.fenced_drops += len(self._pending)
                self._pending.clear()
            batch, self._pending = self._pending, {}
            try:
                await self._write(batch)
            except Exception as exc:  # the call goes on; only its recovery is at stake
                self.failures += 1
                log.warning("sip_dialog_save_failed", error=repr(exc)[:300], legs=len(batch))
            if self._pending:
                self._wake.set()  # queued meanwhile, or put back by a fence
            else:
                self._idle.set()

    async def _write(self, batch: dict[str, tuple[str, SavedDialog] | None]) -> None:
        """Write a batch, checking the fence before each statement (the process may have been paused
        during the one before); what a fence stops is put back, unless a newer entry replaced it."""
        left = dict(batch)
        for leg_id, entry in batch.items():
            if entry is None:
                continue
            if self.fenced():
                self._put_back(left)
                return
            conference_id, saved = entry
            await self._store.put_sip_dialog(leg_id, conference_id, saved.to_json(), self._clock())
            del left[leg_id]
            self._written[leg_id] = saved
            self.writes += 1
        if left:  # the deletes, in one statement
            if self.fenced():
                self._put_back(left)
                return
            await self._store.delete_sip_dialogs(list(left))
            self.writes += len(left)
            for leg_id in left:
                self._written.pop(leg_id, None)

    def _put_back(self, entries: dict[str, tuple[str, SavedDialog] | None]) -> None:
        for leg_id, entry in entries.items():
            self._pending.setdefault(leg_id, entry)


def _read(leg_id: str, raw: JSON) -> SavedDialog | None:
    try:
        return SavedDialog.from_json(raw)
    except SavedDialogError as exc:
        log.warning("sip_dialog_unreadable", leg_id=leg_id, error=str(exc))
        return None


@dataclass(frozen=True, slots=True)
class CarrierHooks:
    """What recovering a leg needs from its SipCarrier (as ReferTransfers gets its callbacks)."""

    legs: dict[str, SipLeg]  # the carrier's own table: a recovered leg is added to it
    transport: Callable[[], SipUdpTransport | None]
    signal: Callable[[str, LegSignal], None]
    finish: Callable[[str, LegSignal | None], None]
    connect_media: Callable[[str, MediaParams], bool]
    media_unusable: Callable[[str], None]
    spawn: Callable[[Coroutine[Any, Any, None]], None]
    kind_of: Callable[[str], LegKind]  # who a member address is (REFER's transferors)


class CallRecovery:
    """Saving answered legs' dialogs, and taking legs back on `restore`, for one SipCarrier."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        media: MediaEngine,
        store: DialogStore | None,
        hooks: CarrierHooks,
        *,
        offer_host: str,
        codecs: Sequence[Codec],
    ) -> None:
        self._endpoint = endpoint
        self._media = media
        self._hooks = hooks
        self._offer_host = offer_host
        self._codecs = codecs
        self.keeper = DialogKeeper(store) if store is not None else None
        self._preloaded: dict[str, SavedDialog] = {}

    async def start(self, now: float) -> None:
        """Read every saved dialog once: restores at start need no more reads, and requests for
        these dialogs are held (not answered 481) until their legs are recovered."""
        if self.keeper is None:
            return
        self.keeper.start()
        try:
            self._preloaded = await self.keeper.load_all()
        except Exception as exc:  # the server starts anyway; each restore reads its own row then
            log.warning("sip_dialogs_unreadable", error=repr(exc)[:300])
        self._endpoint.expect_recoveries([s.dialog_id for s in self._preloaded.values()], now)

    async def stop(self, hung_up: Sequence[str]) -> None:
        if self.keeper is not None:
            for leg_id in hung_up:
                self.keeper.forget(leg_id)
            await self.keeper.stop()

    def save_changed(self) -> None:
        """After a batch of SIP traffic: queue the dialogs that changed (see DialogKeeper)."""
        keeper = self.keeper
        for leg_id in self._endpoint.take_changed_dialogs():
            leg = self._hooks.legs.get(leg_id)
            if keeper is None or leg is None or not leg.answered or leg.dropped or leg.conference_id is None:
                continue
            saved = self._endpoint.saved_dialog(leg_id)
            if saved is not None:
                keeper.save(leg_id, leg.conference_id, saved)

    def forget(self, leg_id: str) -> None:
        self._preloaded.pop(leg_id, None)
        if self.keeper is not None:
            self.keeper.forget(leg_id)

    def release(self, leg_id: str) -> None:
        """Another node owns the leg's conference now: forget the leg here without BYE, free its
        RTP port, and leave its saved dialog in the store for the new owner to recover."""
        self._preloaded.pop(leg_id, None)
        if self.keeper is not None:
            self.keeper.release(leg_id)
        self._endpoint.forget(leg_id)
        self._media.close_leg(leg_id)
        self._hooks.legs.pop(leg_id, None)

    def restore(self, request: LegRequest) -> None:
        """Take an answered leg back from its saved dialog; report it hung up when there is none."""
        saved = self._preloaded.pop(request.leg_id, None)
        if saved is not None or self.keeper is None:
            self._recover(request, saved)
            return
        keeper = self.keeper

        async def load_then_recover() -> None:
            try:
                found = await keeper.load(request.leg_id)
            except Exception as exc:
                log.warning("sip_dialog_load_failed", leg_id=request.leg_id, error=repr(exc)[:300])
                found = None
            self._recover(request, found)

        self._hooks.spawn(load_then_recover())

    def _recover(self, request: LegRequest, saved: SavedDialog | None) -> None:
        hooks, leg_id = self._hooks, request.leg_id
        if leg_id in hooks.legs:
            log.info("sip_recovery_skipped", leg_id=leg_id, reason="the leg is live here")
            return
        transport = hooks.transport()
        if saved is None or transport is None:
            log.info("sip_recovery_impossible", leg_id=leg_id, saved=saved is not None)
            asyncio.get_running_loop().call_soon(hooks.signal, request.conference_id, LegHungUp(leg_id))
            return
        if self.keeper is not None:
            self.keeper.known(leg_id, saved)
        kind = hooks.kind_of(request.to)
        hooks.legs[leg_id] = SipLeg(request.conference_id, not saved.outbound, True, kind=kind)
        try:
            port = self._media.open_leg(leg_id)
            key = os.urandom(saved.srtp_suite.key_length) if saved.srtp_suite is not None else None
            offer = recovery_offer(saved, self._offer_host, port, self._codecs, key)
            self._endpoint.recover(leg_id, saved, offer, transport.now)
        except (MediaPortsExhausted, OSError, ValueError) as exc:
            log.warning("sip_recovery_failed", leg_id=leg_id, error=str(exc))
            hooks.finish(leg_id, LegHungUp(leg_id, LeaveReason.FAILED))
            return
        log.info("sip_recovery_started", leg_id=leg_id, call_id=saved.call_id, rtp_port=port)
        transport.flush()

    def on_recovered(self, event: sip.LegRecovered) -> None:
        """The peer took our re-INVITE: the leg's media goes to its answer."""
        log.info("sip_recovered", leg_id=event.leg_id, codec=event.media.codec.encoding)
        if not self._hooks.connect_media(event.leg_id, event.media):
            self._hooks.media_unusable(event.leg_id)
