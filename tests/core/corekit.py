"""A small driver for the conference engine used by the core tests.

Addresses are short names; every command goes through `Harness.do`, which keeps the effects of the
last step and all events published so far, so tests can assert on either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from bridgeline.core import snapshot
from bridgeline.core.audio import Listening
from bridgeline.core.commands import (
    Command,
    LegAnswered,
    LegFailed,
    LegHungUp,
    LegRinging,
    PlaybackFinished,
)
from bridgeline.core.conference import Conference, ConferenceRules
from bridgeline.core.effects import DialLeg, DropLeg, Effect, PlayMessage, Publish, SetAudio
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import (
    AnsweredBy,
    Event,
    EventType,
    LeaveReason,
    Member,
    MemberStatus,
    Music,
    QueuedDial,
    Role,
    Transfer,
)

AGENT = Role.AGENT
CUSTOMER = Role.CUSTOMER
RULES = ConferenceRules(max_participants=5, max_duration=3600.0, ring_timeout=30.0, voicemail_configured=True)
T0 = 1_000.0

SILENCE = Listening((), None)
WAIT = Listening((), Music.WAIT)
AGENT_HOLD = Listening((), Music.AGENT_HOLD)
CUSTOMER_HOLD = Listening((), Music.CUSTOMER_HOLD)
VOICEMAIL = Listening((), Music.VOICEMAIL)


def hears(*addresses: str) -> Listening:
    return Listening(tuple(addresses), None)


class Harness:
    def __init__(self, conf: Conference, effects: list[Effect], now: float) -> None:
        self.conf = conf
        self.now = now
        self.last = effects
        self.published: list[Event] = []
        self.routing: SetAudio | None = None  # the last SetAudio emitted
        self._record(effects)

    # ----------------------------------------------------------------- driving
    def do(self, command: Command, *, at: float | None = None) -> list[Effect]:
        self.now = self.now + 1 if at is None else at
        self._record(self.conf.handle(command, self.now))
        return self.last

    def timer(self, at: float) -> list[Effect]:
        self.now = at
        self._record(self.conf.handle_timer(at))
        return self.last

    def refused(self, command: Command) -> str:
        """Assert the command is refused and changes nothing; return the refusal message."""
        before = snapshot.dump(self.conf)
        with pytest.raises(ActionRefused) as info:
            self.conf.handle(command, self.now + 1)
        assert snapshot.dump(self.conf) == before
        return info.value.message

    def leg(self, address: str) -> str:
        return self.conf.members[address].leg_id

    def ring(self, address: str) -> list[Effect]:
        return self.do(LegRinging(self.leg(address)))

    def answer(self, *addresses: str, by: AnsweredBy = AnsweredBy.HUMAN) -> list[Effect]:
        effects: list[Effect] = []
        for address in addresses:
            effects += self.do(LegAnswered(self.leg(address), by))
        self.last = effects
        return effects

    def fail(self, address: str, reason: LeaveReason = LeaveReason.BUSY) -> list[Effect]:
        return self.do(LegFailed(self.leg(address), reason))

    def hang(self, address: str) -> list[Effect]:
        """The party hangs up (remote)."""
        return self.do(LegHungUp(self.leg(address)))

    def playback_done(self, address: str) -> list[Effect]:
        return self.do(PlaybackFinished(self.leg(address)))

    def _record(self, effects: list[Effect]) -> None:
        self.last = effects
        self.published += [e.event for e in effects if isinstance(e, Publish)]
        self.routing = next((e for e in reversed(effects) if isinstance(e, SetAudio)), self.routing)

    # ----------------------------------------------------------------- looking
    def member(self, address: str) -> Member:
        return self.conf.members[address]

    def status(self, address: str) -> MemberStatus:
        return self.conf.members[address].status

    def room(self, address: str) -> str:
        return self.conf.members[address].room

    def transfer(self) -> Transfer:
        return self.conf.transfers[-1]

    def plan(self) -> dict[str, Listening]:
        return self.conf.audio_plan()

    def events(self, effects: Iterable[Effect] | None = None) -> list[Event]:
        source = self.last if effects is None else effects
        return [e.event for e in source if isinstance(e, Publish)]

    def types(self, effects: Iterable[Effect] | None = None) -> list[EventType]:
        return [e.type for e in self.events(effects)]

    def drops(self, effects: Iterable[Effect] | None = None) -> list[DropLeg]:
        return [e for e in (self.last if effects is None else effects) if isinstance(e, DropLeg)]

    def dials(self, effects: Iterable[Effect] | None = None) -> list[DialLeg]:
        return [e for e in (self.last if effects is None else effects) if isinstance(e, DialLeg)]

    def audio(self, effects: Iterable[Effect] | None = None) -> list[SetAudio]:
        return [e for e in (self.last if effects is None else effects) if isinstance(e, SetAudio)]

    def plays(self, effects: Iterable[Effect] | None = None) -> list[PlayMessage]:
        return [e for e in (self.last if effects is None else effects) if isinstance(e, PlayMessage)]

    def event(self, type_: EventType) -> dict[str, Any]:
        """The data of the only event of that type in the last step."""
        found = [e.data for e in self.events() if e.type is type_]
        assert len(found) == 1, f"{type_}: {self.types()}"
        return found[0]


def start(
    *parties: tuple[str, Role],
    rules: ConferenceRules = RULES,
    sequential: bool = False,
) -> Harness:
    conf, effects = Conference.start(
        "c1", rules, T0, [QueuedDial(a, r) for a, r in parties], sequential=sequential
    )
    return Harness(conf, effects, T0)


def talking(*parties: tuple[str, Role], rules: ConferenceRules = RULES) -> Harness:
    """A conference in which every party has answered."""
    h = start(*parties, rules=rules)
    h.answer(*(a for a, _ in parties))
    return h


def agent_and_customer(rules: ConferenceRules = RULES) -> Harness:
    """U1 = agent `A` talking with U2 = customer `C`."""
    return talking(("A", AGENT), ("C", CUSTOMER), rules=rules)
