"""Schemathesis against the served OpenAPI document: no generated request makes the server fail.

Bounded (a few examples per operation, no shrinking), loopback only; the autouse fixture in
conftest.py also fails the test on any traceback in the server's log. Path parameters name a real
PHLO, node and phone (except for DELETE), so generated bodies reach their validation."""

from __future__ import annotations

from typing import Any

import schemathesis
from e2ekit import AUTH_ID, AUTH_TOKEN, Api, number
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

EXAMPLES_PER_OPERATION = 8
NEVER_ENDS = "/v1/events/stream"  # server-sent events: a response that stays open


def test_no_generated_request_makes_the_server_fail(api: Api) -> None:
    phlo = api.create_phlo()
    real = {
        "auth_id": AUTH_ID,
        "phlo_id": phlo.phlo_id,
        "node_type": "multi_party_call",
        "node_id": phlo.node_id,
        "member_address": number(),
        "address": number(),
    }
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.path != NEVER_ENDS]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def call(case: Any) -> None:
            if case.method != "DELETE" and case.path_parameters:
                case.path_parameters = {k: real.get(k, v) for k, v in case.path_parameters.items()}
            case.call_and_validate(base_url=api.url, auth=(AUTH_ID, AUTH_TOKEN), checks=[not_a_server_error])

        call()
