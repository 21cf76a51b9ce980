"""The body models validate with the API's leniency and answer in Plivo's words (ApiRequest.parse)."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from pydantic import BaseModel

from bridgeline.adapters.carriers.sim.phones import AnswerMode
from bridgeline.adapters.http.context import ApiRequest
from bridgeline.adapters.http.errors import ApiError
from bridgeline.adapters.http.schemas import (
    AnswerName,
    MemberActionBody,
    MpcActionBody,
    RunBody,
    SimPhoneBody,
)
from bridgeline.core.model import Role

AGENT = "sip:agent@example.com"


def parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    request: Any = None  # parse reads only the body
    return ApiRequest(request, None, {}, body, model).parse(model)


def refusal(model: type[BaseModel], body: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as caught:
        parse(model, body)
    assert caught.value.status == 400
    return caught.value.message


@pytest.mark.parametrize(
    ("fields", "action", "to", "role"),
    [
        ({"action": "call", "to": "14155550100"}, "call", "14155550100", Role.AGENT),
        (
            {"action": "Cold-Transfer", "to": 14155550100, "role": ""},
            "cold_transfer",
            "14155550100",
            Role.AGENT,
        ),
        (
            {"action": "WARM_TRANSFER", "to": " 14155550100 ", "role": "CUSTOMER"},
            "warm_transfer",
            "14155550100",
            Role.CUSTOMER,
        ),
        (
            {"action": "call", "to": "14155550100", "role": None, "unknown": [1]},
            "call",
            "14155550100",
            Role.AGENT,
        ),
    ],
)
def test_mpc_action_leniency(fields: dict[str, Any], action: str, to: str, role: Role) -> None:
    body = parse(MpcActionBody, {**fields, "trigger_source": AGENT})
    assert (body.action, body.to, body.role, body.trigger_source) == (action, to, role, AGENT)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "action is a mandatory param."),
        ({"action": "", "to": "1"}, "action is a mandatory param."),
        (
            {"action": "dial"},
            "Invalid value provided for action. 'dial' is not one of: call, warm_transfer, cold_transfer, "
            "resume_call, abort_transfer.",
        ),
        (
            {"action": "hold", "trigger_source": AGENT},
            "Invalid value provided for action. 'hold' is not one of: call, warm_transfer, cold_transfer, "
            "resume_call, abort_transfer. 'hold' acts on one member: POST it to …/members/{member_address}.",
        ),
        ({"action": "resume_call"}, "trigger_source is a mandatory param."),
        (
            {"action": "abort_transfer", "to": "14155550100", "trigger_source": AGENT},
            "Invalid value provided for to. abort_transfer dials nobody.",
        ),
        ({"action": "call"}, "to is a mandatory param."),
        ({"action": "call", "to": True}, "Invalid value provided for to. to expects a string."),
        (
            {"action": "call", "to": "14155550100", "role": "boss", "trigger_source": AGENT},
            "Invalid value provided for role. Allowed values are 'agent' and 'customer'.",
        ),
        (
            {"action": "call", "to": "14155550100", "trigger_source": ""},
            "trigger_source is a mandatory param.",
        ),
    ],
)
def test_mpc_action_refusals(body: dict[str, Any], message: str) -> None:
    assert refusal(MpcActionBody, body) == message


def test_member_action() -> None:
    assert parse(MemberActionBody, {"action": "Resume-Call"}).action == "resume_call"
    assert refusal(MemberActionBody, {"action": 3}).startswith(
        "Invalid value provided for action. '3' is not"
    )


def test_the_node_uri_takes_the_initiators_member_actions_as_go_sends_them() -> None:
    body = parse(MpcActionBody, {"action": "resume_call", "to": "", "role": "", "trigger_source": AGENT})
    assert (body.action, body.to, body.trigger_source) == ("resume_call", None, AGENT)


def test_a_member_uri_takes_the_transfers_as_java_sends_them() -> None:
    body = parse(MemberActionBody, {"to": "14155550100", "role": "customer", "action": "COLD-TRANSFER"})
    assert (body.action, body.to, body.role, body.trigger_source) == (
        "cold_transfer",
        "14155550100",
        Role.CUSTOMER,
        None,
    )
    # a member action keeps ignoring who asks, and the `role` only a transfer reads
    body = parse(MemberActionBody, {"action": "mute", "trigger_source": AGENT, "role": "agent"})
    assert (body.action, body.to) == ("mute", None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "warm_transfer"}, "to is a mandatory param."),
        ({"action": "warm_transfer", "to": "x y"}, "Invalid value provided for to."),
        ({"action": "unmute", "to": "14155550100"}, "Invalid value provided for to. unmute dials nobody."),
        (
            {"action": "call", "to": "14155550100", "trigger_source": "+0"},
            "Invalid value provided for trigger_source.",
        ),
        ({"action": "dance"}, "Invalid value provided for action. 'dance' is not one of:"),
    ],
)
def test_member_uri_refusals(body: dict[str, Any], message: str) -> None:
    assert refusal(MemberActionBody, body).startswith(message)


def test_sim_phone() -> None:
    assert (parse(SimPhoneBody, {}).answer, parse(SimPhoneBody, {}).answer_delay_ms) == ("answer", None)
    assert parse(SimPhoneBody, {"answer": "busy", "answer_delay_ms": 600_000}).answer_delay_ms == 600_000
    for delay in ("100", True, -1, 600_001, 1.5):
        assert refusal(SimPhoneBody, {"answer_delay_ms": delay}) == (
            "Invalid value provided for answer_delay_ms. answer_delay_ms expects an integer from 0 to 600000."
        )
    assert refusal(SimPhoneBody, {"answer": "maybe"}).startswith("Invalid value provided for answer. Allowed")


def test_run_payload_is_kept_as_sent() -> None:
    payload = {"agent": 14155550100, "customer": "sip:c@example.com", "nested": {"a": [1]}}
    assert parse(RunBody, payload).model_dump() == payload


def test_a_route_validates_with_the_model_it_documents() -> None:
    request: Any = None
    with pytest.raises(TypeError, match="documents"):
        ApiRequest(request, None, {}, {"action": "hold"}, MpcActionBody).parse(MemberActionBody)


def test_the_documented_answers_are_the_simulator_modes() -> None:
    assert set(get_args(AnswerName)) == {mode.value for mode in AnswerMode}
