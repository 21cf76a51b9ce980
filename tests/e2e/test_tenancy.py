"""Tenancy on a real server with two accounts: PHLO ids are per account, and neither account can see
or touch the other's PHLOs, conferences or virtual phones."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from e2ekit import Api, ServerProcess, add_account, assert_action_ok, assert_plivo_error, number, wait_until

_ids = itertools.count(1)


@pytest.fixture(scope="module")
def other(server: ServerProcess) -> Iterator[Api]:
    """A second account on the shared server, made by `bridgeline account add`."""
    client = Api(server, auth=add_account(server))
    yield client
    client.close()


def test_two_accounts_each_have_a_phlo_with_the_same_id(api: Api, other: Api) -> None:
    phlo_id = f"support-{next(_ids)}"
    mine = api.create_phlo(phlo_id=phlo_id)
    # Before: 409 "already exists", telling the other account that the id is in use.
    theirs = other.create_phlo(phlo_id=phlo_id)
    assert mine.phlo_id == theirs.phlo_id == phlo_id
    duplicate = api.http.post("/v1/phlo", json={"name": "again", "phlo_id": phlo_id, "nodes": [{}]})
    assert_plivo_error(duplicate, 409)  # an id is still unique within one account

    # The same members in both accounts' conferences at once: each account's lookups are its own.
    agent, customer = number(), number()
    my_run = mine.connect(agent, customer)
    their_run = theirs.connect(agent, customer)
    my_conference = mine.conference()["mpc_uuid"]
    their_conference = theirs.conference()["mpc_uuid"]
    assert my_conference != their_conference
    assert [i["mpc_uuid"] for i in mine.instances()] == [my_conference]
    assert [i["mpc_uuid"] for i in theirs.instances()] == [their_conference]
    assert mine.member(customer)["mpc_uuid"] == my_conference
    assert mine.get_run(my_run["phlo_run_id"])["mpc_uuids"] == [my_conference]
    assert_plivo_error(theirs.http.get(f"/v1/phlo/{phlo_id}/runs/{my_run['phlo_run_id']}"), 404)
    assert_plivo_error(mine.http.get(f"/v1/phlo/{phlo_id}/runs/{their_run['phlo_run_id']}"), 404)

    # Their hang-ups end their conference only.
    assert_action_ok(theirs.member_action(customer, "hangup"))
    assert_action_ok(theirs.member_action(agent, "hangup"))
    theirs.wait_ended(their_conference)
    assert mine.conference(my_conference)["status"] == "live"
    mine.wait_member(customer, status="connected", hears=[agent])

    # Their delete removes their PHLO only.
    assert other.http.delete(f"/v1/phlo/{phlo_id}").status_code == 200
    assert_plivo_error(other.http.get(f"/v1/phlo/{phlo_id}"), 404)
    assert api.http.get(f"/v1/phlo/{phlo_id}").status_code == 200
    assert_action_ok(mine.member_action(customer, "hangup"))
    assert_action_ok(mine.member_action(agent, "hangup"))
    mine.wait_ended(my_conference)
    assert wait_until(lambda: mine.get_run(my_run["phlo_run_id"])["status"] == "completed")
