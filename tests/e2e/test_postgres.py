"""The same server on PostgreSQL: the SDK walkthrough, a restart in the middle of it, a second account.

Needs the local PostgreSQL server (127.0.0.1:5432, user postgres, trust auth); never skipped.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from e2e_scenarios import (
    AGENT,
    CUSTOMER,
    SECOND_AGENT,
    SUPERVISOR,
    check_an_address_is_in_one_conference_at_most,
    finish_walkthrough,
    run_walkthrough,
)
from e2ekit import Api, Phlo, ServerProcess, add_account, assert_plivo_error, guarded_client, sdk_client
from pgkit import database_url

pytestmark = pytest.mark.postgres
__all__ = ["database_url"]  # a fixture, used by name


def test_walkthrough_and_restart_on_postgres(
    database_url: str,  # first: the database outlives the servers (they stop before it is dropped)
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(env={"DATABASE_URL": database_url})
    api = Api(server)
    phlo, mpc_uuid, run_id = run_walkthrough(api, sdk_client(server.url))

    # the state lives in PostgreSQL, not in the data directory
    assert not (server.data_dir / "bridgeline.db").exists()
    with psycopg.connect(database_url) as connection:
        stored = connection.execute("SELECT count(*) FROM conferences WHERE conference_id = %s", (mpc_uuid,))
        assert stored.fetchone() == (1,)

    before = phlo.instances()
    server.stop()
    server.start()
    api = Api(server)
    phlo = Phlo(api, phlo.phlo_id, phlo.node_id)
    assert phlo.instances() == before
    assert phlo.get_run(run_id)["status"] == "running"
    for address, heard in {
        AGENT: {SUPERVISOR},
        SUPERVISOR: {AGENT},
        CUSTOMER: {SECOND_AGENT},
        SECOND_AGENT: {CUSTOMER},
    }.items():
        assert api.phone_hears(address, mpc_uuid) == (heard, None)

    sdk = sdk_client(server.url)
    mpc = sdk.phlo.get(phlo.phlo_id).multi_party_call(phlo.node_id)
    assert mpc.member(CUSTOMER).hold().error == ""
    phlo.wait_member(CUSTOMER, status="on_hold", music="customer_hold")
    assert mpc.member(CUSTOMER).unhold().error == ""
    assert mpc.member(AGENT).resume_call().error == ""
    phlo.wait_member(CUSTOMER, hears=[AGENT, SECOND_AGENT, SUPERVISOR], music=None)
    finish_walkthrough(phlo, sdk, mpc_uuid, run_id)

    # a second account, added to the same database by the CLI, sees none of the first one's PHLOs
    other_id, other_token = add_account(server)
    with guarded_client(server.url, auth=(other_id, other_token)) as other:
        assert_plivo_error(other.get(f"/v1/phlo/{phlo.phlo_id}"), 404)
        assert other.get("/v1/phlo").json()["objects"] == []


def test_an_address_is_in_one_conference_at_most_on_postgres(
    database_url: str, server_factory: Callable[..., ServerProcess]
) -> None:
    """Store writes really wait on PostgreSQL, so simultaneous requests interleave in the server."""
    check_an_address_is_in_one_conference_at_most(Api(server_factory(env={"DATABASE_URL": database_url})))
