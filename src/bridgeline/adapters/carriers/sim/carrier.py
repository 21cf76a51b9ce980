"""The `sim` carrier: deterministic virtual phones for development and CI.

Each address behaves as configured through `PUT /v1/sim/phones/{address}` (kept in the phone book,
phones.py, so a restart keeps it): answer, busy, no_answer (rings until the ring timeout), reject, or
voicemail (answers as a machine). Unknown addresses answer after the default delay. What each
phone hears is recorded from the conference's audio routing, so tests and demos can ask.

Phones "say" a tone of their own (media/recording_mix.py: a frequency derived from the address), so
recordings of sim conferences hold the tones of the phones they heard: a 20 ms loop timer writes
each recording's frames, catching up to the loop's clock, so a file's length is the wall clock.

Phones are per account: what account A configures for an address applies to the calls A's
conferences place to it, never to B's (B's calls to the same address follow B's own setting, or the
default), and an account sees and hangs up only the calls of its own conferences.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridgeline.adapters.carriers.sim.phones import AnswerMode, PhoneBehaviour, PhoneBook, VirtualPhones
from bridgeline.app.ports import LegRequest, RecordingSink, SignalSink
from bridgeline.core.commands import (
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegRinging,
    LegSignal,
    PlaybackFinished,
)
from bridgeline.core.effects import MusicSources, SetAudio
from bridgeline.core.model import AnsweredBy, LeaveReason
from bridgeline.media.recording_mix import mix_tones, phone_tone_hz

FRAME_S = 0.020


@dataclass(slots=True)
class SimTap:
    """One recording: the conference's recorded legs (leg_id None) or one leg's voice."""

    conference_id: str
    leg_id: str | None
    sink: RecordingSink
    next_frame: int  # the recordings' frame clock: frame n covers [origin + n*20 ms, +20 ms)


@dataclass(slots=True)
class SimLeg:
    request: LegRequest
    answered: bool = False
    pending: list[asyncio.Handle] = field(default_factory=list)
    hears: tuple[str, ...] = ()
    music: str | None = None


class SimCarrier:
    name = "sim"

    def __init__(
        self, phone_book: PhoneBook, *, answer_delay_ms: int = 1000, playback_ms: int = 3000
    ) -> None:
        self._phones = VirtualPhones(phone_book)
        self._default_delay = answer_delay_ms / 1000
        self._playback = playback_ms / 1000
        self._legs: dict[str, SimLeg] = {}
        self._sink: SignalSink | None = None
        self._taps: dict[str, SimTap] = {}  # by recording id
        self._recorded: dict[str, tuple[str, ...]] = {}  # conference id -> the legs its recording hears
        self._frame_origin: float | None = None  # loop time of frame 0
        self._ticker: asyncio.TimerHandle | None = None

    # ----------------------------------------------------------------- lifecycle
    def bind(self, sink: SignalSink) -> None:
        self._sink = sink

    async def start(self) -> None:
        await self._phones.load()

    async def stop(self) -> None:
        for leg in self._legs.values():
            _cancel(leg)
        self._legs.clear()
        self._taps.clear()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    # ----------------------------------------------------------------- phones
    async def configure_phone(self, auth_id: str, address: str, behaviour: PhoneBehaviour) -> None:
        await self._phones.configure(auth_id, address, behaviour)

    def configured(self, auth_id: str, address: str) -> bool:
        return self._phones.configured(auth_id, address)

    def phone(self, auth_id: str, address: str) -> PhoneBehaviour:
        return self._phones.behaviour(auth_id, address)

    def calls_of(self, auth_id: str, address: str) -> list[dict[str, Any]]:
        """The phone's live calls from the account's conferences, and what it hears on each."""
        return [
            {
                "call_uuid": leg_id,
                "mpc_uuid": leg.request.conference_id,
                "state": "answered" if leg.answered else "ringing",
                "hears": [self._legs[h].request.to for h in leg.hears if h in self._legs],
                "music": leg.music,
                "tone_hz": phone_tone_hz(address),
            }
            for leg_id, leg in self._legs.items()
            if leg.request.to == address and leg.request.auth_id == auth_id
        ]

    def hang_up_phone(self, auth_id: str, address: str) -> int:
        """The party hangs up (or rejects a ringing call) the account's calls. Returns how many it dropped."""
        dropped = 0
        for leg_id, leg in list(self._legs.items()):
            if leg.request.to != address or leg.request.auth_id != auth_id:
                continue
            _cancel(leg)
            del self._legs[leg_id]
            signal: LegSignal = LegHungUp(leg_id) if leg.answered else LegFailed(leg_id, LeaveReason.REJECTED)
            self._signal(leg.request.conference_id, signal)
            dropped += 1
        return dropped

    # ----------------------------------------------------------------- carrier port
    def dial(self, request: LegRequest) -> None:
        leg = SimLeg(request)
        self._legs[request.leg_id] = leg
        behaviour = self.phone(request.auth_id, request.to)
        delay = self._default_delay if behaviour.answer_delay_ms is None else behaviour.answer_delay_ms / 1000
        loop = asyncio.get_running_loop()
        leg.pending.append(loop.call_soon(self._signal, request.conference_id, LegRinging(request.leg_id)))
        outcomes: dict[AnswerMode, LegSignal | None] = {
            AnswerMode.ANSWER: LegAnswered(request.leg_id, AnsweredBy.HUMAN),
            AnswerMode.VOICEMAIL: LegAnswered(request.leg_id, AnsweredBy.MACHINE),
            AnswerMode.BUSY: LegFailed(request.leg_id, LeaveReason.BUSY),
            AnswerMode.REJECT: LegFailed(request.leg_id, LeaveReason.REJECTED),
            AnswerMode.NO_ANSWER: None,  # rings until the conference's ring timeout cancels it
        }
        outcome = outcomes[behaviour.answer]
        if outcome is not None:
            leg.pending.append(loop.call_later(delay, self._settle, request.leg_id, outcome))

    def drop(self, leg_id: str, reason: LeaveReason) -> None:
        leg = self._legs.pop(leg_id, None)
        if leg is not None:
            _cancel(leg)

    def play(self, leg_id: str, media: str | None) -> None:
        leg = self._legs.get(leg_id)
        if leg is None:
            return
        leg.music = "voicemail"
        loop = asyncio.get_running_loop()
        leg.pending.append(
            loop.call_later(self._playback, self._signal, leg.request.conference_id, PlaybackFinished(leg_id))
        )

    def set_audio(self, conference_id: str, audio: SetAudio, music: MusicSources) -> None:
        self._write_due()  # what was recorded up to now was heard with the old routing
        self._recorded[conference_id] = audio.recorded
        for routing in audio.legs:
            leg = self._legs.get(routing.leg_id)
            if leg is not None:
                leg.hears = routing.hears
                leg.music = None if routing.music is None else routing.music.value

    def restore(self, request: LegRequest, *, answered: bool) -> None:
        if answered:
            self._legs[request.leg_id] = SimLeg(request, answered=True)
        else:
            self.dial(request)  # the virtual phone rings again, as it would after a failover

    def conference_ended(self, conference_id: str) -> None:
        self.release_conference(conference_id)

    def release_conference(self, conference_id: str) -> None:
        # A virtual phone has no far end to tell: dropping the leg's timers is all there is to forget.
        for leg_id, leg in list(self._legs.items()):
            if leg.request.conference_id == conference_id:
                _cancel(leg)
                del self._legs[leg_id]
        self._recorded.pop(conference_id, None)
        for recording_id, tap in list(self._taps.items()):
            if tap.conference_id == conference_id:  # the core stops its recordings before this
                del self._taps[recording_id]

    # ----------------------------------------------------------------- recording
    def start_recording(
        self, conference_id: str, recording_id: str, leg_id: str | None, sink: RecordingSink
    ) -> None:
        loop = asyncio.get_running_loop()
        if self._frame_origin is None:
            self._frame_origin = loop.time()
        self._write_due()
        self._taps[recording_id] = SimTap(conference_id, leg_id, sink, self._frame_now(loop.time()))
        if self._ticker is None:
            self._schedule(loop)

    def stop_recording(self, recording_id: str) -> None:
        self._write_due()
        self._taps.pop(recording_id, None)

    def flush_recording(self, recording_id: str, then: Callable[[], None]) -> None:
        self._write_due()
        then()

    def _frame_now(self, now: float) -> int:
        assert self._frame_origin is not None
        return int((now - self._frame_origin) / FRAME_S)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._frame_origin is not None
        due = self._frame_origin + (self._frame_now(loop.time()) + 1) * FRAME_S
        self._ticker = loop.call_at(due, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        self._write_due()
        if self._taps:
            self._schedule(asyncio.get_running_loop())

    def _write_due(self) -> None:
        """Every tap's frames up to the loop's clock (a late timer catches up; nothing is skipped)."""
        if not self._taps or self._frame_origin is None:
            return
        now = self._frame_now(asyncio.get_running_loop().time())
        for recording_id, tap in list(self._taps.items()):
            tones = self._tones_of(tap)
            if now > tap.next_frame:  # every frame of a steady tone is the same: one chunk of them
                tap.sink(recording_id, mix_tones(tones) * (now - tap.next_frame))
                tap.next_frame = now

    def _tones_of(self, tap: SimTap) -> list[int]:
        leg_ids = self._recorded.get(tap.conference_id, ()) if tap.leg_id is None else (tap.leg_id,)
        legs = [self._legs.get(leg_id) for leg_id in leg_ids]
        return [phone_tone_hz(leg.request.to) for leg in legs if leg is not None and leg.answered]

    # ----------------------------------------------------------------- internals
    def _settle(self, leg_id: str, outcome: LegSignal) -> None:
        leg = self._legs.get(leg_id)
        if leg is None:
            return
        if isinstance(outcome, LegAnswered):
            leg.answered = True
        else:
            del self._legs[leg_id]
        self._signal(leg.request.conference_id, outcome)

    def _signal(self, conference_id: str, signal: LegSignal) -> None:
        if self._sink is not None:
            self._sink(conference_id, signal)


def _cancel(leg: SimLeg) -> None:
    for handle in leg.pending:
        handle.cancel()
    leg.pending.clear()
