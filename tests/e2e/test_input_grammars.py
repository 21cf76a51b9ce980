"""Ids and addresses follow explicit ASCII grammars at every entry point of a real server: PHLO bodies,
path parameters and run payloads filled into templates."""

from __future__ import annotations

import pytest
from e2ekit import Api, assert_action_ok, assert_plivo_error, number

ARABIC_INDIC_ZERO = "\u0660"


@pytest.mark.parametrize("bad", ["a/b", "a?b", "a#b", "sup\x00port", "sup\nport", "é", "..", "a" * 65])
def test_phlo_and_node_ids_outside_the_grammar_are_refused(api: Api, bad: str) -> None:
    # Before: 201, and a PHLO (or node) that no path could reach.
    for body in (
        {"name": "bad id", "phlo_id": bad, "nodes": [{}]},
        {"name": "bad node id", "nodes": [{"node_id": bad}]},
    ):
        error = assert_plivo_error(api.http.post("/v1/phlo", json=body), 400)
        assert "not a valid id" in error["error"] or "at most 64" in error["error"], error


def test_ids_of_the_grammar_are_reachable(api: Api) -> None:
    phlo = api.create_phlo(phlo_id=f"Support_v1.2-{number()[1:]}")
    assert api.http.get(f"/v1/phlo/{phlo.phlo_id}").status_code == 200
    assert api.http.get(phlo.node_path).status_code == 200


def test_path_ids_outside_the_grammar_are_not_found(api: Api) -> None:
    phlo = api.create_phlo()
    for path in (
        f"/v1/phlo/{phlo.phlo_id}%0A",
        f"/v1/phlo/{phlo.phlo_id}/multi_party_call/{phlo.node_id}%00",
    ):
        assert_plivo_error(api.http.get(path), 404)


@pytest.mark.parametrize(
    "address",
    [
        "+1415555010" + ARABIC_INDIC_ZERO,  # `\d` took it
        "sip:al\x00ice@example.com",
        "sip:zoë@example.com",  # must come percent-encoded: sip:zo%C3%AB@example.com
        "sip:alice@example.com;x=\x00",
    ],
)
def test_addresses_outside_the_ascii_grammar_are_refused_everywhere(api: Api, address: str) -> None:
    phlo = api.create_phlo()
    agent, customer = number(), number()
    # A run payload filled into the dial list's templates (before: 201, and the address was dialed).
    assert_plivo_error(phlo.post_run({"agent": address, "customer": customer}), 400)
    # An action's body and a literal dial of a PHLO body.
    phlo.connect(agent, customer)
    assert_plivo_error(phlo.action(action="call", to=address, trigger_source=agent), 400)
    literal = {"name": "literal", "nodes": [{}], "run": {"dial": [{"to": address}]}}
    assert_plivo_error(api.http.post("/v1/phlo", json=literal), 400)
    assert [m["member_address"] for m in phlo.conference()["members"]] == [agent, customer]
    assert_action_ok(phlo.member_action(customer, "hangup"))
    assert_action_ok(phlo.member_action(agent, "hangup"))


def test_a_trailing_newline_is_not_part_of_an_address_in_a_path(api: Api) -> None:
    phlo = api.create_phlo()
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    # Before: `$` matched before the final newline, so this was a valid address (then "not found").
    assert_plivo_error(api.http.get(f"{phlo.member_path(customer)}%0A"), 400)
    assert_plivo_error(api.http.post(f"{phlo.member_path(customer)}%0A", json={"action": "hold"}), 400)
    assert_plivo_error(api.http.put(f"/v1/sim/phones/{customer}%0A", json={"answer": "busy"}), 400)
    assert_plivo_error(api.http.put(f"/v1/sim/phones/+1415555010{ARABIC_INDIC_ZERO}", json={}), 400)
    assert phlo.member(customer)["status"] == "connected"
    assert_action_ok(phlo.member_action(customer, "hangup"))
    assert_action_ok(phlo.member_action(agent, "hangup"))
