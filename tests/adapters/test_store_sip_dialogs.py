"""The SIP carrier's saved dialogs: its `DialogStore` port as both SQL stores provide it (SQLite and
PostgreSQL, see conftest), and `DialogKeeper`'s write-behind over it (adapters/carriers/sip/recovery.py)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bridgeline.adapters.carriers.sip.recovery import FENCE_RECHECK_S, DialogKeeper, DialogStore
from bridgeline.adapters.store import open_store
from bridgeline.adapters.store.base import SqlStore
from bridgeline.app.records import JSON
from bridgeline.sip.offer_answer import PCMA
from bridgeline.sip.saved_dialog import Origin, SavedDialog
from bridgeline.sip.sdes import CryptoSuite
from bridgeline.sip.transaction import Target, Transport


def saved(call_id: str = "a84b4c76e66710@pc33.example.com", local_seq: int = 7) -> SavedDialog:
    return SavedDialog(
        outbound=False,
        call_id=call_id,
        local='"Zoë ☎" <sip:bridgeline@192.0.2.10>;tag=ours1',
        remote="<sip:alice@198.51.100.7:5062>;tag=theirs1",
        remote_target="sip:alice@198.51.100.7:5062;transport=tcp",
        route_set=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"),
        local_seq=local_seq,
        remote_seq=2**32 - 1,
        peer=Target("198.51.100.7", 5062, Transport.TCP),
        origin=Origin("-", 2**70 + 1, 2**64),  # o= numbers beyond 64 bits survive the JSON column
        codec=dataclasses.replace(PCMA, payload_type=96),
        srtp_suite=CryptoSuite.AES_CM_128_HMAC_SHA1_32,
        srtp_required=True,
        session_interval=1800,
    )


async def test_saved_dialogs_are_upserted_read_listed_and_deleted(store: SqlStore) -> None:
    first, second = saved(), saved("other@host", local_seq=1)
    await store.put_sip_dialog("leg-1", "conf-1", first.to_json(), 1700000000.5)
    await store.put_sip_dialog("leg-2", "conf-1", second.to_json(), 1700000000.5)
    raised = dataclasses.replace(first, local_seq=8)
    await store.put_sip_dialog("leg-1", "conf-1", raised.to_json(), 1700000001.0)  # the same leg again

    got = await store.get_sip_dialog("leg-1")
    assert got is not None and SavedDialog.from_json(got) == raised
    assert await store.get_sip_dialog("leg-404") is None
    listed = await store.list_sip_dialogs()
    assert {leg: SavedDialog.from_json(raw) for leg, raw in listed.items()} == {
        "leg-1": raised,
        "leg-2": second,
    }

    await store.delete_sip_dialogs(["leg-1", "leg-404"])
    await store.delete_sip_dialogs([])
    assert list(await store.list_sip_dialogs()) == ["leg-2"]


async def test_saved_dialogs_survive_a_restart(store_url: str) -> None:
    first = open_store(store_url)
    await first.migrate()
    await first.put_sip_dialog("leg-1", "conf-1", saved().to_json(), 1.0)
    await first.close()
    second = open_store(store_url)
    await second.migrate()
    try:
        got = await second.get_sip_dialog("leg-1")
        assert got is not None and SavedDialog.from_json(got) == saved()
    finally:
        await second.close()


# --- the write-behind ------------------------------------------------------------------------------------


class MemoryDialogs:
    """A DialogStore in memory that counts its writes and can be made to fail."""

    def __init__(self) -> None:
        self.rows: dict[str, JSON] = {}
        self.puts = 0
        self.failing = False

    async def put_sip_dialog(self, leg_id: str, conference_id: str, dialog: JSON, saved_at: float) -> None:
        await asyncio.sleep(0)  # a round trip: more changes may queue meanwhile
        if self.failing:
            raise OSError("database unreachable")
        self.rows[leg_id] = dialog
        self.puts += 1

    async def get_sip_dialog(self, leg_id: str) -> JSON | None:
        return self.rows.get(leg_id)

    async def list_sip_dialogs(self) -> dict[str, JSON]:
        return dict(self.rows)

    async def delete_sip_dialogs(self, leg_ids: list[str]) -> None:  # type: ignore[override]
        for leg_id in leg_ids:
            self.rows.pop(leg_id, None)


async def test_the_keeper_writes_the_latest_state_once_and_skips_what_did_not_change() -> None:
    memory = MemoryDialogs()
    store: DialogStore = memory
    keeper = DialogKeeper(store, clock=lambda: 1.0)
    keeper.start()
    for seq in range(1, 51):  # 50 changes while nothing was written yet: one write
        keeper.save("leg-1", "conf-1", saved(local_seq=seq))
    await keeper.flush()
    assert memory.puts == 1 and SavedDialog.from_json(memory.rows["leg-1"]).local_seq == 50

    keeper.save("leg-1", "conf-1", saved(local_seq=50))  # the same as what the store holds
    await keeper.flush()
    assert memory.puts == 1
    keeper.save("leg-1", "conf-1", saved(local_seq=51))
    await keeper.flush()
    assert memory.puts == 2

    keeper.forget("leg-1")
    keeper.forget("never-saved")  # nothing to delete: no write
    await keeper.flush()
    assert memory.rows == {}
    assert await keeper.load("leg-1") is None
    await keeper.stop()


async def test_a_failed_write_is_counted_and_the_next_change_is_written() -> None:
    memory = MemoryDialogs()
    keeper = DialogKeeper(memory)
    keeper.start()
    memory.failing = True
    keeper.save("leg-1", "conf-1", saved(local_seq=1))
    await keeper.flush()
    assert keeper.failures == 1 and memory.rows == {}
    memory.failing = False
    keeper.save("leg-1", "conf-1", saved(local_seq=2))
    await keeper.flush()
    assert SavedDialog.from_json(memory.rows["leg-1"]).local_seq == 2
    await keeper.stop()


async def test_unreadable_rows_are_skipped_when_loading() -> None:
    memory = MemoryDialogs()
    memory.rows = {"good": saved().to_json(), "bad": {"format": 99}, "junk": {"x": [1]}}
    keeper = DialogKeeper(memory)
    assert await keeper.load_all() == {"good": saved()}
    assert await keeper.load("bad") is None


@pytest.mark.parametrize("legs", [1, 20])
async def test_stop_waits_for_queued_writes(legs: int) -> None:
    memory = MemoryDialogs()
    keeper = DialogKeeper(memory)
    keeper.start()
    for n in range(legs):
        keeper.save(f"leg-{n}", "conf-1", saved(call_id=f"c{n}@h"))
    await keeper.stop()
    assert len(memory.rows) == legs


class Fence:
    """The node's local lease as the keeper sees it: `held` False means fenced."""

    def __init__(self) -> None:
        self.held = True

    def __call__(self) -> bool:
        return not self.held


async def test_a_fenced_keeper_writes_nothing_until_its_lease_holds_again() -> None:
    memory = MemoryDialogs()
    memory.rows = {"moved": saved(call_id="moved@h").to_json(), "gone": saved(call_id="gone@h").to_json()}
    keeper, fence = DialogKeeper(memory), Fence()
    keeper.fenced = fence
    keeper.start()
    keeper.known("moved", saved(call_id="moved@h"))
    keeper.known("gone", saved(call_id="gone@h"))
    fence.held = False  # paused past the lease: the legs may be another node's by now
    keeper.save("moved", "conf-1", saved(call_id="moved@h", local_seq=99))
    keeper.forget("gone")
    keeper.save("kept", "conf-2", saved(call_id="kept@h"))
    await asyncio.sleep(FENCE_RECHECK_S * 4)  # several looks at the fence: nothing written meanwhile
    assert memory.puts == 0 and set(memory.rows) == {"moved", "gone"}

    keeper.release("moved")  # the lease was lost: the node lets conf-1's legs go
    keeper.release("gone")
    fence.held = True  # registered again
    await keeper.flush()
    assert SavedDialog.from_json(memory.rows["moved"]).local_seq == 7  # the new owner's row, untouched
    assert "gone" in memory.rows and "kept" in memory.rows and memory.puts == 1
    await keeper.stop()


async def test_a_fence_that_falls_during_a_batch_holds_the_rest_of_it() -> None:
    memory, fence = MemoryDialogs(), Fence()
    put = memory.put_sip_dialog

    async def pause_after_first(leg_id: str, conference_id: str, dialog: JSON, saved_at: float) -> None:
        await put(leg_id, conference_id, dialog, saved_at)
        fence.held = False  # the process was paused while this statement ran

    memory.put_sip_dialog = pause_after_first  # type: ignore[method-assign]
    keeper = DialogKeeper(memory)
    keeper.fenced = fence
    keeper.start()
    for n in range(3):
        keeper.save(f"leg-{n}", "conf-1", saved(call_id=f"c{n}@h"))
    keeper.forget("leg-0")  # queued behind: a delete is a write too
    await asyncio.sleep(FENCE_RECHECK_S * 4)
    assert list(memory.rows) == ["leg-1"]  # the first of the batch (leg-0 became a delete)
    fence.held = True
    memory.put_sip_dialog = put  # type: ignore[method-assign]
    await keeper.flush()
    assert sorted(memory.rows) == ["leg-1", "leg-2"]
    await keeper.stop()


async def test_stopping_without_a_lease_drops_the_held_writes_and_counts_them() -> None:
    memory, fence = MemoryDialogs(), Fence()
    keeper = DialogKeeper(memory)
    keeper.fenced = fence
    keeper.start()
    fence.held = False
    keeper.save("leg-1", "conf-1", saved())
    keeper.save("leg-2", "conf-1", saved(call_id="other@h"))
    await keeper.stop()  # returns: it does not wait for a lease that will not come back
    assert memory.rows == {} and keeper.fenced_drops == 2 and keeper.writes == 0
