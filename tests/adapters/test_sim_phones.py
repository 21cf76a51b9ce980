"""The sim carrier keeps its phones in a PhoneBook of its own: any object with the two calls, the SQL
store in a server. Settings saved before a restart apply after it."""

from __future__ import annotations

from pathlib import Path

from bridgeline.adapters.carriers.sim.carrier import SimCarrier
from bridgeline.adapters.carriers.sim.phones import AnswerMode, PhoneBehaviour
from bridgeline.adapters.store import open_store
from bridgeline.app.records import JSON

ACCOUNT, OTHER = "MA00000000000000000A", "MA00000000000000000B"
PHONE = "+14155550100"


class MemoryPhoneBook:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], JSON] = {}

    async def put_sim_phone(self, auth_id: str, address: str, behaviour: JSON) -> None:
        self.rows[(auth_id, address)] = dict(behaviour)

    async def list_sim_phones(self) -> dict[tuple[str, str], JSON]:
        return dict(self.rows)


async def test_a_setting_is_written_to_the_book_and_read_back_by_the_next_carrier() -> None:
    book = MemoryPhoneBook()
    first = SimCarrier(book)
    await first.start()
    await first.configure_phone(ACCOUNT, PHONE, PhoneBehaviour(AnswerMode.BUSY, 250))
    assert book.rows == {(ACCOUNT, PHONE): {"answer": "busy", "answer_delay_ms": 250}}

    second = SimCarrier(book)
    assert not second.configured(ACCOUNT, PHONE)  # nothing read before start
    await second.start()
    assert second.configured(ACCOUNT, PHONE)
    assert second.phone(ACCOUNT, PHONE) == PhoneBehaviour(AnswerMode.BUSY, 250)
    assert not second.configured(OTHER, PHONE)
    assert second.phone(OTHER, PHONE) == PhoneBehaviour()  # another account's calls get the default


async def test_phones_saved_in_the_sql_store_are_back_after_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bridgeline.db'}"
    store = open_store(url)
    await store.migrate()
    carrier = SimCarrier(store)
    await carrier.start()
    await carrier.configure_phone(ACCOUNT, PHONE, PhoneBehaviour(AnswerMode.NO_ANSWER))
    await carrier.configure_phone(OTHER, PHONE, PhoneBehaviour(AnswerMode.VOICEMAIL, 10))
    await carrier.stop()
    await store.close()

    reopened = open_store(url)
    await reopened.migrate()
    try:
        restarted = SimCarrier(reopened)
        await restarted.start()
        assert restarted.phone(ACCOUNT, PHONE) == PhoneBehaviour(AnswerMode.NO_ANSWER)
        assert restarted.phone(OTHER, PHONE) == PhoneBehaviour(AnswerMode.VOICEMAIL, 10)
        await restarted.stop()
    finally:
        await reopened.close()
