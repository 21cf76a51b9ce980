"""The sim carrier's virtual phones: how each one answers, per account, kept across restarts.

Where the settings are kept is this carrier's own small port, `PhoneBook`: the SQL stores provide it
(their `sim_phones` table), but the carrier names only the two calls it needs, so it imports no
store and the app's store ports know nothing about phones.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bridgeline.app.records import JSON


class AnswerMode(StrEnum):
    ANSWER = "answer"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECT = "reject"
    VOICEMAIL = "voicemail"


@dataclass(frozen=True, slots=True)
class PhoneBehaviour:
    answer: AnswerMode = AnswerMode.ANSWER
    answer_delay_ms: int | None = None  # None: the carrier's default

    def to_json(self) -> JSON:
        return {"answer": self.answer.value, "answer_delay_ms": self.answer_delay_ms}

    @classmethod
    def from_json(cls, raw: JSON) -> PhoneBehaviour:
        return cls(AnswerMode(raw["answer"]), raw.get("answer_delay_ms"))


class PhoneBook(Protocol):
    """Durable phone settings by (auth_id, address), as `PhoneBehaviour.to_json()` objects."""

    async def put_sim_phone(self, auth_id: str, address: str, behaviour: JSON) -> None: ...
    async def list_sim_phones(self) -> dict[tuple[str, str], JSON]:
        """Every account's phones."""
        ...


class VirtualPhones:
    """The phones' settings in memory (dialing reads them synchronously), written through to the book."""

    def __init__(self, book: PhoneBook) -> None:
        self._book = book
        self._settings: dict[tuple[str, str], PhoneBehaviour] = {}  # by (auth_id, address)

    async def load(self) -> None:
        """Read back every setting saved before (a restart keeps them)."""
        for key, raw in (await self._book.list_sim_phones()).items():
            self._settings[key] = PhoneBehaviour.from_json(raw)

    async def configure(self, auth_id: str, address: str, behaviour: PhoneBehaviour) -> None:
        await self._book.put_sim_phone(auth_id, address, behaviour.to_json())
        self._settings[(auth_id, address)] = behaviour

    def configured(self, auth_id: str, address: str) -> bool:
        return (auth_id, address) in self._settings

    def behaviour(self, auth_id: str, address: str) -> PhoneBehaviour:
        """The account's setting for the address, or the default (answer after the carrier's delay)."""
        return self._settings.get((auth_id, address), PhoneBehaviour())
