"""The issue's walkthrough, step by step, with Plivo's own Python SDK (only the base URL changed).

After every step the live state is read back through Bridgeline's views: the member view
(status, who it hears, music, room), the node's instances, and what the virtual phones hear.
The steps themselves are in e2e_scenarios.py, which test_postgres.py runs on PostgreSQL too.
"""

from __future__ import annotations

from typing import Any

from e2e_scenarios import finish_walkthrough, run_walkthrough
from e2ekit import Api


def test_walkthrough_with_the_plivo_sdk(api: Api, sdk: Any) -> None:
    phlo, mpc_uuid, run_id = run_walkthrough(api, sdk)
    finish_walkthrough(phlo, sdk, mpc_uuid, run_id)
