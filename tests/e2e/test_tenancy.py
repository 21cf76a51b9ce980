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


def test_another_accounts_virtual_phone_is_not_found_and_its_calls_are_out_of_reach(
    api: Api, other: Api
) -> None:
    agent, customer = number(), number()
    mine = api.create_phlo()
    mine.connect(agent, customer)
    conference = mine.conference()["mpc_uuid"]

    # Before: the other account read the call, hung it up (201) and made the phone busy for everyone.
    assert_plivo_error(other.http.get(f"/v1/sim/phones/{customer}"), 404)
    assert_plivo_error(other.hang_up_phone(customer), 404)
    assert other.phone(customer, "busy")["calls"] == []  # its own setting, and none of my calls
    assert_plivo_error(other.hang_up_phone(customer), 404)
    assert [c["mpc_uuid"] for c in api.phone_calls(customer)] == [conference]
    assert api.phone_view(customer)["answer"] == "answer"  # my phone's setting did not change
    mine.wait_member(customer, status="connected", hears=[agent])
    # A phone the other account never configured nor dialed looks the same as one that nobody uses.
    unused = number()
    for phone in (agent, unused):
        assert_plivo_error(other.http.get(f"/v1/sim/phones/{phone}"), 404)

    assert_action_ok(mine.member_action(customer, "hangup"))
    assert_action_ok(mine.member_action(agent, "hangup"))
    mine.wait_ended(conference)


def test_a_phone_setting_applies_to_the_calls_of_its_own_account(api: Api, other: Api) -> None:
    """Account A's busy phone still answers account B's calls, which follow B's own setting."""
    shared = number()
    api.phone(shared, "busy")
    theirs, mine = other.create_phlo(), api.create_phlo()

    their_customer = number()
    theirs.connect(shared, their_customer)  # B's call to the address A made busy is answered
    their_conference = theirs.conference()["mpc_uuid"]
    assert [c["mpc_uuid"] for c in other.phone_calls(shared)] == [their_conference]
    assert api.phone_calls(shared) == []  # A does not see B's call to its phone

    my_run = mine.run(agent=shared, customer=number())  # A's call gets A's setting: busy

    conference = mine.wait_newest_ended()
    assert conference["phlo_run_id"] == my_run["phlo_run_id"]
    assert [(m["member_address"], m["leave_reason"]) for m in conference["members"]] == [(shared, "busy")]
    theirs.wait_member(shared, status="connected", hears=[their_customer])

    assert_action_ok(theirs.member_action(their_customer, "hangup"))
    assert_action_ok(theirs.member_action(shared, "hangup"))
    theirs.wait_ended(their_conference)
