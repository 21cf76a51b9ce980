"""Every consumer of the store names only the ports it uses (docs/architecture.md, "narrow ports").

mypy already holds each consumer to the methods of the ports it names; this checks the other side,
from the source: no consumer takes the whole `Store` (only main/, which wires), and every store port
a consumer names is one whose methods it calls. The parts share no method, so a consumer's ports are
then the fewest that cover what it calls.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from bridgeline.adapters.carriers.sim.phones import PhoneBook
from bridgeline.adapters.carriers.sip.recovery import DialogStore
from bridgeline.adapters.carriers.sip.shared_registrations import RegistrationBook
from bridgeline.app.ports import Store

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "bridgeline"
PORTS: dict[str, type] = {
    port.__name__: port
    for port in [*(b for b in Store.__bases__ if b is not Protocol), PhoneBook, DialogStore, RegistrationBook]
}
WIRING = "main"  # chooses the adapters and hands the one store to every consumer
# Where a port's declarations and its use may sit in different modules: the route handlers use the
# context's ports (http/context.py), the sim carrier its phone book (carriers/sim/phones.py), the SIP
# carrier its dialog store (taken by carrier.py, used by carriers/sip/recovery.py).
PACKAGES_AS_ONE = ("adapters/http", "adapters/carriers/sim", "adapters/carriers/sip", "cli", "main")


def methods(port: type) -> set[str]:
    return {name for name, value in vars(port).items() if not name.startswith("_") and callable(value)}


def consumers() -> Iterator[tuple[str, list[ast.Module]]]:
    """(name, parsed modules) per consumer: a module, or one of PACKAGES_AS_ONE."""
    grouped: dict[str, list[ast.Module]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "app/ports.py":
            continue
        unit = next((p for p in PACKAGES_AS_ONE if relative.startswith(p + "/")), relative)
        grouped.setdefault(unit, []).append(ast.parse(path.read_text(), relative))
    yield from grouped.items()


def _names_in(annotation: ast.expr) -> Iterator[str]:
    for node in ast.walk(annotation):
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, ast.Attribute):
            yield node.attr
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
            yield from _names_in(ast.parse(node.value, mode="eval").body)


def ports_named(modules: list[ast.Module]) -> set[str]:
    """The store ports that appear in the annotations of parameters, fields, variables and returns."""
    annotations: list[ast.expr] = []
    for module in modules:
        for node in ast.walk(module):
            if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
                annotations.append(node.annotation)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
                annotations.append(node.returns)
    found = {name for annotation in annotations for name in _names_in(annotation)}
    return found & {*PORTS, "Store"}


def attributes_used(modules: list[ast.Module]) -> set[str]:
    return {node.attr for module in modules for node in ast.walk(module) if isinstance(node, ast.Attribute)}


CONSUMERS = dict(consumers())


def test_the_check_sees_the_consumers() -> None:
    """A guard against a check that finds nothing: these are known to use the store."""
    named = {unit: ports_named(modules) for unit, modules in CONSUMERS.items()}
    assert named["app/service.py"] == {"ConferenceStore"}
    assert named["app/runs.py"] == {"RunStore", "ConferenceHistory"}
    assert named["adapters/webhooks/dispatcher.py"] == {"DeliveryOutbox"}
    assert {"PhloStore", "RunStore", "ConferenceHistory", "AccountStore"} <= named["adapters/http"]
    assert named["adapters/carriers/sim"] == {"PhoneBook"}
    assert named["adapters/carriers/sip"] == {"DialogStore", "RegistrationBook"}
    assert "Store" in named[WIRING]


def test_only_the_wiring_takes_the_whole_store() -> None:
    takers = sorted(
        unit for unit, modules in CONSUMERS.items() if unit != WIRING and "Store" in ports_named(modules)
    )
    assert takers == [], f"these take the whole Store instead of the parts they use: {takers}"


def test_every_port_a_consumer_names_is_one_it_calls() -> None:
    idle: dict[str, list[str]] = {}
    for unit, modules in CONSUMERS.items():
        if unit == WIRING:
            continue
        used = attributes_used(modules)
        unused = [name for name in ports_named(modules) - {"Store"} if not methods(PORTS[name]) & used]
        if unused:
            idle[unit] = sorted(unused)
    assert idle == {}, f"ports named but none of their methods called: {idle}"
