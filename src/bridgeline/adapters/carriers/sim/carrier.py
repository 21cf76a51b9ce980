"""The `sim` carrier: deterministic virtual phones for development and CI.

Each address behaves as configured through `PUT /v1/sim/phones/{address}` (kept in the phone book,
phones.py, so a restart keeps it): answer, busy, no_answer (rings until the ring timeout), reject, or
voicemail (answers as a machine). Unknown addresses answer after the default delay. What each
phone hears is recorded from the conference's audio routing, so tests and demos can ask.

Phones are per account: what account A configures for an address applies to the calls A's
conferences place to it, never to B's (B's calls to the same address follow B's own setting, or the
default), and an account sees and hangs up only the calls of its own conferences.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from bridgeline.adapters.carriers.sim.phones import AnswerMode, PhoneBehaviour, PhoneBook, VirtualPhones
from bridgeline.app.ports import LegRequest, SignalSink
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

    # ----------------------------------------------------------------- lifecycle
    def bind(self, sink: SignalSink) -> None:
        self._sink = sink

    async def start(self) -> None:
        await self._phones.load()

    async def stop(self) -> None:
        for leg in self._legs.values():
            _cancel(leg)
        self._legs.clear()

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
