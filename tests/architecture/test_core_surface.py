"""The Conference's public API is its inputs and its queries; the mutation steps live on its Floor.

Issue #10: the Conference used to expose `dial`, `member_left`, `emit`, `require_*` ... only so that
the transfer machine could call them. These tests pin the narrowing: the Conference's public names
are exactly the list below, the state it shares with the floor cannot be reassigned through it,
and the input handlers (`transfers.py`, `member_actions.py`, `leg_signals.py`) work on a `Floor`
and never name the Conference.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bridgeline.core import transfers
from bridgeline.core.conference import Conference, ConferenceRules
from bridgeline.core.effects import PlayMessage
from bridgeline.core.model import QueuedDial, Role

CORE = Path(transfers.__file__).resolve().parent  # the package imported, wherever it is

INPUTS = {"start", "restore", "handle", "handle_timer"}
QUERIES = {
    "live",
    "live_member",
    "live_members",
    "member_by_leg",
    "claimed_addresses",
    "pending_transfer_by",
    "pending_transfer_to",
    "next_deadline",
    "audio_plan",
    "effects",  # a copy of what is produced and not yet returned: empty between inputs
}
# Kept by the Conference itself (lifecycle), assigned only by its own handlers and `restore`.
LIFECYCLE = {"started_at", "phase", "ended_at", "end_reason"}
# Kept by the floor; the Conference shows them read-only.
FLOOR_STATE = {
    "conference_id",
    "rules",
    "members",
    "transfers",
    "queued",
    "next_seq",
    "leg_counter",
    "transfer_counter",
    "recordings",  # core/recording.py
    "recording_counter",
    "auto_recorded",
}
# The steps the transfer machine uses; none of them may be reachable on the Conference.
FLOOR_STEPS = {"require_member", "require_trigger", "require_can_add", "new_transfer_id", "dial"}
FLOOR_STEPS |= {"member_left", "emit", "member_data", "take_effects"}


def a_conference() -> Conference:
    conference, _ = Conference.start(
        "cf", ConferenceRules(), 0.0, [QueuedDial("a", Role.AGENT), QueuedDial("c", Role.CUSTOMER)]
    )
    return conference


def test_the_conference_public_names_are_exactly_its_inputs_queries_and_state() -> None:
    public = {name for name in dir(a_conference()) if not name.startswith("_")}
    assert public == INPUTS | QUERIES | LIFECYCLE | FLOOR_STATE
    assert not public & FLOOR_STEPS


def test_the_floor_state_cannot_be_replaced_through_the_conference() -> None:
    for name in FLOOR_STATE | {"effects"}:
        attribute = getattr(Conference, name, None)
        assert isinstance(attribute, property), f"Conference.{name} should be a read-only property"
        assert attribute.fset is None, f"Conference.{name} can be assigned"


def test_effects_is_a_copy_that_cannot_queue_an_effect() -> None:
    conference = a_conference()
    conference.effects.append(PlayMessage("cf-l1"))
    assert conference.effects == []


def _module(name: str) -> ast.Module:
    path = CORE / name
    return ast.parse(path.read_text(), path.name)


@pytest.mark.parametrize("handlers", ["transfers.py", "member_actions.py", "leg_signals.py"])
def test_the_handlers_never_name_or_import_the_conference(handlers: str) -> None:
    tree = _module(handlers)
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert "bridgeline.core.conference" not in imported
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert "Conference" not in names


def test_every_transfer_function_takes_the_floor() -> None:
    tree = _module("transfers.py")
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    takers = [f.name for f in functions if f.args.args and f.args.args[0].arg == "floor"]
    # transfer_data only formats a Transfer; every other function works on the floor it is handed
    assert {f.name for f in functions} - set(takers) == {"transfer_data"}
    for function in functions:
        if function.name in takers:
            annotation = function.args.args[0].annotation
            assert isinstance(annotation, ast.Name) and annotation.id == "Floor", function.name


def test_the_floor_does_not_know_the_conference() -> None:
    tree = _module("floor.py")
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "bridgeline.core.conference" not in imported
