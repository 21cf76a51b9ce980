"""The store's narrow ports (app/ports.py) and the carriers' own (the sim carrier's PhoneBook, the SIP
carrier's DialogStore), as both SQL stores provide them.

The store contract suite checks what the methods do; this checks that each port is one the stores
satisfy as declared (same names, parameters, defaults and annotations), and that the app's `Store` is
exactly its parts: disjoint concerns, none of them about simulated phones.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Protocol

import pytest

from bridgeline.adapters.carriers.sim.phones import PhoneBook
from bridgeline.adapters.carriers.sip.recovery import DialogStore
from bridgeline.adapters.store import PostgresStore, SqliteStore
from bridgeline.app.ports import Store

STORE_PARTS = [base for base in Store.__bases__ if base is not Protocol]
STORE_CLASSES = [SqliteStore, PostgresStore]


def members(port: type) -> set[str]:
    """The methods a protocol declares itself (not those it inherits)."""
    return {name for name, value in vars(port).items() if not name.startswith("_") and callable(value)}


def test_the_store_is_exactly_its_parts_and_no_method_belongs_to_two() -> None:
    assert len(STORE_PARTS) >= 6
    assert members(Store) == set()  # the composite adds nothing of its own
    for one, other in itertools.combinations(STORE_PARTS, 2):
        assert members(one) & members(other) == set(), (one.__name__, other.__name__)
    declared = set().union(*(members(part) for part in STORE_PARTS))
    everything = {name for name in dir(Store) if not name.startswith("_") and callable(getattr(Store, name))}
    assert everything == declared


def test_the_apps_store_knows_nothing_about_simulated_phones() -> None:
    """The phones belong to the sim carrier, which declares its own PhoneBook."""
    assert not any("sim" in name for name in dir(Store))
    assert members(PhoneBook) == {"put_sim_phone", "list_sim_phones"}


def test_the_apps_store_knows_nothing_about_sip_dialogs() -> None:
    """Saved SIP dialogs belong to the SIP carrier, which declares its own DialogStore."""
    assert not any("sip" in name for name in dir(Store))
    assert members(DialogStore) == {
        "put_sip_dialog",
        "get_sip_dialog",
        "list_sip_dialogs",
        "delete_sip_dialogs",
    }


@pytest.mark.parametrize("store_class", STORE_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("port", [*STORE_PARTS, PhoneBook, DialogStore], ids=lambda p: p.__name__)
def test_both_sql_stores_provide_every_port_as_declared(store_class: type, port: type) -> None:
    if port not in (PhoneBook, DialogStore):  # plain Protocols: the carriers need no isinstance
        assert issubclass(store_class, port)
    for name in members(port):
        declared = getattr(port, name)
        provided = getattr(store_class, name)
        assert inspect.iscoroutinefunction(provided) == inspect.iscoroutinefunction(declared), name
        assert inspect.signature(provided) == inspect.signature(declared), f"{store_class.__name__}.{name}"
