"""The sip carrier's shared registrations in the store (its RegistrationBook port), on SQLite and
PostgreSQL: bindings by (domain, username, contact), expiry, and never one endpoint's for another."""

from __future__ import annotations

import asyncio

import pytest

from bridgeline.adapters.carriers.sip.shared_registrations import (
    RegistrationBook,
    SharedRegistrations,
    binding_from_json,
)
from bridgeline.adapters.store import SqlStore
from bridgeline.sip.events import Registered, Unregistered
from bridgeline.sip.headers import parse_name_address
from bridgeline.sip.transaction import Transport
from bridgeline.sip.uri import parse_sip_uri

DOMAIN = "bridgeline.test"
PATH = "<sip:127.0.0.1:5060;lr;received=sip:127.0.0.1:40000>"


def binding(contact: str, path: list[str] | None = None, transport: str = "UDP") -> dict[str, object]:
    return {"contact": contact, "target": contact, "path": path or [], "transport": transport}


async def test_put_refresh_and_delete(store: SqlStore) -> None:
    book: RegistrationBook = store  # the store provides the port structurally (mypy checks it)
    await book.put_sip_binding(DOMAIN, "alice", "sip:alice@h1", binding("sip:alice@h1"), 1100.0, 1000.0)
    await book.put_sip_binding(DOMAIN, "alice", "sip:alice@h2", binding("sip:alice@h2"), 1100.0, 1001.0)
    # most recently refreshed first
    assert [b["contact"] for b in await book.sip_bindings(DOMAIN, "alice", 1002.0)] == [
        "sip:alice@h2",
        "sip:alice@h1",
    ]
    refreshed = binding("sip:alice@h1", [PATH])
    await book.put_sip_binding(DOMAIN, "alice", "sip:alice@h1", refreshed, 1200.0, 1050.0)
    rows = await book.sip_bindings(DOMAIN, "alice", 1150.0)  # h2 expired at 1100
    assert rows == [binding("sip:alice@h1", [PATH])]
    await book.delete_sip_binding(DOMAIN, "alice", "sip:alice@h1")
    assert await book.sip_bindings(DOMAIN, "alice", 1150.0) == []


async def test_a_binding_is_only_ever_its_own_endpoint_s(store: SqlStore) -> None:
    await store.put_sip_binding(DOMAIN, "alice", "sip:alice@h1", binding("sip:alice@h1"), 2000.0, 1000.0)
    for domain, username in [(DOMAIN, "bob"), (DOMAIN, "Alice"), (DOMAIN, "alice "), ("other.test", "alice"),
                             (DOMAIN, "%"), (DOMAIN, "")]:  # fmt: skip
        assert await store.sip_bindings(domain, username, 1001.0) == [], (domain, username)
    await store.delete_sip_binding(DOMAIN, "bob", "sip:alice@h1")  # another endpoint cannot remove it
    assert len(await store.sip_bindings(DOMAIN, "alice", 1001.0)) == 1


async def test_expired_bindings_are_never_returned_and_are_deleted_by_writes(
    store: SqlStore, raw_query: object
) -> None:
    await store.put_sip_binding(DOMAIN, "alice", "sip:alice@old", binding("sip:alice@old"), 1010.0, 1000.0)
    assert await store.sip_bindings(DOMAIN, "alice", 1010.0) == []  # expires_at is exclusive
    await store.put_sip_binding(DOMAIN, "bob", "sip:bob@h", binding("sip:bob@h"), 1100.0, 1020.0)
    rows = raw_query("SELECT username FROM sip_registrations ORDER BY username")  # type: ignore[operator]
    assert rows == [("bob",)]


async def test_shared_registrations_write_in_order_and_find_what_another_node_stored(store: SqlStore) -> None:
    clock = iter(float(t) for t in range(1000, 2000))
    node_a = SharedRegistrations(store, DOMAIN, clock=lambda: next(clock))
    node_b = SharedRegistrations(store, DOMAIN, clock=lambda: 1500.0)
    contact = parse_sip_uri("sip:alice@127.0.0.1:40000")
    path = (parse_name_address(PATH),)
    node_a.record(Registered("alice", contact, contact, 600, path, Transport.UDP))
    await node_a.close()
    found = await node_b.lookup("alice")
    assert found is not None and found.target == contact and found.path == path
    assert await node_b.lookup("bob") is None
    # Refreshed through node B since: node A's own copy expiring must not remove B's row.
    node_b.record(Registered("alice", contact, contact, 600, path, Transport.UDP))
    await node_b.close()
    node_a.record(Unregistered("alice", contact, "expired"))
    await node_a.close()
    assert await node_b.lookup("alice") is not None
    node_a.record(Registered("alice", contact, contact, 600, path, Transport.UDP))
    node_a.record(Unregistered("alice", contact, "removed"))  # in order: the removal wins
    await node_a.close()
    assert await node_b.lookup("alice") is None


async def test_bindings_tied_to_another_node_s_connection_or_unreadable_are_skipped() -> None:
    assert binding_from_json(binding("sip:alice@127.0.0.1:40000", transport="TCP")) is None
    through_front = binding_from_json(binding("sip:alice@127.0.0.1:40000", [PATH], transport="TCP"))
    assert through_front is not None and len(through_front.path) == 1
    for junk in [{}, {"contact": "tel:+1", "target": "tel:+1"}, binding("sip:a@h", ["<tel:1>"]),
                 binding("sip:a@h", transport="SCTP"), {**binding("sip:a@h"), "path": 5}]:  # fmt: skip
        assert binding_from_json(junk) is None, junk


@pytest.mark.parametrize("failing", ["put", "lookup"])
async def test_a_store_that_fails_leaves_registrations_local(failing: str) -> None:
    class Broken:
        async def put_sip_binding(self, *args: object) -> None:
            raise OSError("database away")

        async def delete_sip_binding(self, *args: object) -> None:
            raise OSError("database away")

        async def sip_bindings(self, *args: object) -> list[dict[str, object]]:
            raise OSError("database away")

    shared = SharedRegistrations(Broken(), DOMAIN)  # type: ignore[arg-type]
    contact = parse_sip_uri("sip:alice@127.0.0.1:40000")
    if failing == "put":
        shared.record(Registered("alice", contact, contact, 600))
        await shared.close()
        assert shared.write_failures == 1
    else:
        assert await shared.lookup("alice") is None
    await asyncio.sleep(0)
