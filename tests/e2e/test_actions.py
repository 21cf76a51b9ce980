"""Every MPC action and member action through Plivo's SDK, with the state checked after each one.

A (agent) and C (customer) are connected by a PHLO run; T is the party an action dials.
"""

from __future__ import annotations

from typing import Any

import plivo
import pytest
from e2e_scenarios import check_an_address_is_in_one_conference_at_most
from e2ekit import Api, Phlo, hearing, number, sdk_mpc, wait_until

# A phone that answers this late leaves a test time to look at the ringing state (a state, not a duration).
SLOW_ANSWER_MS = 1000


def connected(api: Api, **node: Any) -> tuple[Phlo, str, str, dict[str, Any]]:
    phlo = api.create_phlo(**node)
    agent, customer = number(), number()
    run = phlo.connect(agent, customer)
    return phlo, agent, customer, run


def talking(phlo: Phlo, *addresses: str) -> None:
    """Each of `addresses` is connected and hears exactly the others, with no music."""
    for address in addresses:
        phlo.wait_member(
            address, status="connected", hears=[a for a in addresses if a != address], music=None
        )


def transfers(phlo: Phlo, mpc_uuid: str) -> list[dict[str, Any]]:
    return list(phlo.conference(mpc_uuid)["transfers"])


# --------------------------------------------------------------------------- call
def test_call_adds_a_member_with_its_role(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api)
    target = number()

    assert sdk_mpc(sdk, phlo).call(agent, target, "customer").error == ""

    view = phlo.wait_member(target, status="connected")
    assert view["role"] == "customer"
    assert view["answered_by"] == "human"
    assert view["room"] == "main"
    talking(phlo, agent, customer, target)
    mpc_uuid = view["mpc_uuid"]
    assert api.phone_hears(target, mpc_uuid) == ({agent, customer}, None)
    assert api.phone_hears(agent, mpc_uuid) == ({customer, target}, None)


@pytest.mark.parametrize(
    ("answer", "reason"), [("busy", "busy"), ("no_answer", "no_answer"), ("reject", "rejected")]
)
def test_call_that_fails_leaves_the_others_unaffected(api: Api, sdk: Any, answer: str, reason: str) -> None:
    phlo, agent, customer, _ = connected(api, ring_timeout=1)
    target = number()
    api.phone(target, answer)

    assert sdk_mpc(sdk, phlo).call(agent, target, "agent").error == ""
    if answer == "no_answer":
        ringing = phlo.wait_member(target, status="dialing", ringing=True)
        assert ringing["hears"] == [] and ringing["music"] is None
        talking(phlo, agent, customer)

    left = phlo.wait_member(target, status="left")
    assert left["leave_reason"] == reason
    assert left["connected_on"] is None
    assert left["left_on"] is not None
    talking(phlo, agent, customer)
    conference = phlo.conference(left["mpc_uuid"])
    assert conference["status"] == "live"
    assert api.phone_hears(target, left["mpc_uuid"]) is None


# --------------------------------------------------------------------------- warm transfer
def warm_transfer_consulting(api: Api, sdk: Any) -> tuple[Phlo, Any, str, str, str, str]:
    """A consults T privately while C waits with the customer hold music."""
    phlo, agent, customer, _ = connected(api, customer_hold_music="tone:523", agent_hold_music="tone:440")
    mpc = sdk_mpc(sdk, phlo)
    target = number()
    assert mpc.warm_transfer(agent, target, "agent").error == ""
    t = phlo.wait_member(target, status="connected", hears=[agent], music=None)
    a = phlo.wait_member(agent, hears=[target], music=None)
    c = phlo.wait_member(customer, status="connected", hears=[], music="customer_hold")
    assert a["room"] == t["room"] != "main"
    assert c["room"] == "main"
    assert a["transfer"]["transfer_state"] == "consulting"
    mpc_uuid = a["mpc_uuid"]
    assert api.phone_hears(customer, mpc_uuid) == (set(), "customer_hold")
    assert api.phone_hears(agent, mpc_uuid) == ({target}, None)
    assert api.phone_hears(target, mpc_uuid) == ({agent}, None)
    return phlo, mpc, agent, customer, target, mpc_uuid


def test_warm_transfer_while_the_target_rings(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api, customer_hold_music="tone:523")
    target = number()
    api.phone(target, "answer", delay_ms=SLOW_ANSWER_MS)

    assert sdk_mpc(sdk, phlo).warm_transfer(agent, target, "agent").error == ""

    dialing = phlo.member(target)
    assert dialing["status"] == "dialing"
    assert dialing["transfer"]["transfer_state"] == "dialing"
    initiator = phlo.member(agent)
    assert initiator["room"] == dialing["room"] != "main"
    assert hearing(initiator) == (set(), "wait")  # alone in the consultation room, waiting
    assert hearing(phlo.member(customer)) == (set(), "customer_hold")
    phlo.wait_member(target, status="connected", hears=[agent])
    phlo.wait_member(agent, hears=[target], music=None)


def test_warm_transfer_completes_when_the_agent_hangs_up(api: Api, sdk: Any) -> None:
    phlo, mpc, agent, customer, target, mpc_uuid = warm_transfer_consulting(api, sdk)

    assert mpc.member(agent).hangup().error == ""

    left = phlo.wait_member(agent, status="left")
    assert left["leave_reason"] == "hangup"
    talking(phlo, customer, target)
    assert phlo.member(target)["room"] == "main"
    assert api.phone_hears(customer, mpc_uuid) == ({target}, None)
    assert api.phone_hears(agent, mpc_uuid) is None
    [transfer] = transfers(phlo, mpc_uuid)
    assert transfer["transfer_state"] == "completed"
    assert transfer["outcome"] == "transferred"
    assert (transfer["initiator"], transfer["target"]) == (agent, target)


def test_warm_transfer_abort_brings_the_agent_back(api: Api, sdk: Any) -> None:
    phlo, mpc, agent, customer, target, mpc_uuid = warm_transfer_consulting(api, sdk)

    assert mpc.member(agent).abort_transfer().error == ""

    left = phlo.wait_member(target, status="left")
    assert left["leave_reason"] == "transfer_aborted"
    talking(phlo, agent, customer)
    assert phlo.member(agent)["room"] == "main"
    assert phlo.member(agent)["transfer"] is None
    [transfer] = transfers(phlo, mpc_uuid)
    assert transfer["transfer_state"] == "aborted"
    assert api.phone_hears(target, mpc_uuid) is None
    assert api.phone_hears(customer, mpc_uuid) == ({agent}, None)


def test_warm_transfer_resume_call_makes_a_three_way_call(api: Api, sdk: Any) -> None:
    phlo, mpc, agent, customer, target, mpc_uuid = warm_transfer_consulting(api, sdk)

    assert mpc.member(agent).resume_call().error == ""

    talking(phlo, agent, customer, target)
    assert {m["room"] for m in phlo.conference(mpc_uuid)["members"]} == {"main"}
    [transfer] = transfers(phlo, mpc_uuid)
    assert transfer["transfer_state"] == "completed"
    assert transfer["outcome"] == "three_way"
    assert api.phone_hears(customer, mpc_uuid) == ({agent, target}, None)


def test_warm_transfer_to_a_target_that_never_answers_fails_by_itself(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api, ring_timeout=1)
    target = number()
    api.phone(target, "no_answer")

    assert sdk_mpc(sdk, phlo).warm_transfer(agent, target, "agent").error == ""
    phlo.wait_member(target, status="dialing", ringing=True)

    left = phlo.wait_member(target, status="left")
    assert left["leave_reason"] == "no_answer"
    talking(phlo, agent, customer)
    assert phlo.member(agent)["room"] == "main"
    [transfer] = transfers(phlo, left["mpc_uuid"])
    assert transfer["transfer_state"] == "failed"


def test_warm_transfer_aborted_while_the_target_rings(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api)
    target = number()
    api.phone(target, "no_answer")
    mpc = sdk_mpc(sdk, phlo)
    assert mpc.warm_transfer(agent, target, "agent").error == ""
    phlo.wait_member(target, status="dialing", ringing=True)

    assert mpc.member(agent).abort_transfer().error == ""

    left = phlo.wait_member(target, status="left")
    assert left["leave_reason"] == "transfer_aborted"
    talking(phlo, agent, customer)
    assert phlo.member(agent)["room"] == "main"
    [transfer] = transfers(phlo, left["mpc_uuid"])
    assert transfer["transfer_state"] == "aborted"
    assert api.phone_hears(target, left["mpc_uuid"]) is None


def test_warm_transfer_resumed_while_the_target_rings(api: Api, sdk: Any) -> None:
    """resume_call before the answer: the agent is back at once, the target joins all on answer."""
    phlo, agent, customer, _ = connected(api)
    target = number()
    api.phone(target, "answer", delay_ms=SLOW_ANSWER_MS)
    mpc = sdk_mpc(sdk, phlo)
    assert mpc.warm_transfer(agent, target, "agent").error == ""

    assert mpc.member(agent).resume_call().error == ""

    back = phlo.member(agent)
    assert back["room"] == "main"
    assert phlo.member(target)["status"] == "dialing"
    assert phlo.member(target)["room"] == "main"
    assert hearing(back) == ({customer}, None)
    [transfer] = transfers(phlo, back["mpc_uuid"])
    assert (transfer["transfer_state"], transfer["outcome"]) == ("completed", "three_way")
    talking(phlo, agent, customer, target)


def test_warm_transfer_initiator_leaving_before_the_answer_is_a_blind_transfer(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api)
    target = number()
    api.phone(target, "answer", delay_ms=SLOW_ANSWER_MS)
    mpc = sdk_mpc(sdk, phlo)
    assert mpc.warm_transfer(agent, target, "agent").error == ""

    assert mpc.member(agent).hangup().error == ""

    waiting = phlo.member(customer)
    assert hearing(waiting) == (set(), "wait")
    [transfer] = transfers(phlo, waiting["mpc_uuid"])
    assert (transfer["transfer_state"], transfer["outcome"]) == ("completed", "blind")
    talking(phlo, customer, target)
    assert phlo.member(target)["room"] == "main"


# --------------------------------------------------------------------------- cold transfer
def test_cold_transfer_disconnects_the_agent_when_the_target_answers(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api)
    target = number()
    api.phone(target, "answer", delay_ms=SLOW_ANSWER_MS)

    assert sdk_mpc(sdk, phlo).cold_transfer(agent, target, "agent").error == ""

    dialing = phlo.member(target)
    assert dialing["status"] == "dialing"
    assert dialing["room"] == "main"
    assert dialing["transfer"]["transfer_type"] == "cold"
    # no private consultation: agent and customer keep talking while the target rings
    assert hearing(phlo.member(agent)) == ({customer}, None)
    assert hearing(phlo.member(customer)) == ({agent}, None)

    left = phlo.wait_member(agent, status="left")
    assert left["leave_reason"] == "transferred"
    talking(phlo, customer, target)
    [transfer] = transfers(phlo, left["mpc_uuid"])
    assert transfer["transfer_state"] == "completed"
    assert transfer["outcome"] == "transferred"
    assert api.phone_hears(agent, left["mpc_uuid"]) is None


def test_cold_transfer_aborted_before_the_answer(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api)
    target = number()
    api.phone(target, "no_answer")
    mpc = sdk_mpc(sdk, phlo)

    assert mpc.cold_transfer(agent, target, "agent").error == ""
    phlo.wait_member(target, status="dialing", ringing=True)
    assert mpc.member(agent).abort_transfer().error == ""

    left = phlo.wait_member(target, status="left")
    assert left["leave_reason"] == "transfer_aborted"
    talking(phlo, agent, customer)
    [transfer] = transfers(phlo, left["mpc_uuid"])
    assert transfer["transfer_state"] == "aborted"
    assert api.phone_hears(target, left["mpc_uuid"]) is None


def test_cold_transfer_to_a_busy_target_changes_nothing_else(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api)
    target = number()
    api.phone(target, "busy")

    assert sdk_mpc(sdk, phlo).cold_transfer(agent, target, "agent").error == ""

    left = phlo.wait_member(target, status="left")
    assert left["leave_reason"] == "busy"
    talking(phlo, agent, customer)
    [transfer] = transfers(phlo, left["mpc_uuid"])
    assert transfer["transfer_state"] == "failed"
    assert phlo.member(agent)["transfer"] is None


def test_cold_transfer_goes_on_when_the_agent_leaves_first(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api)
    target = number()
    api.phone(target, "answer", delay_ms=SLOW_ANSWER_MS)
    mpc = sdk_mpc(sdk, phlo)
    assert mpc.cold_transfer(agent, target, "agent").error == ""

    assert mpc.member(agent).hangup().error == ""
    assert phlo.member(agent)["leave_reason"] == "hangup"
    # the agent's address stays claimed by its transfer until the transfer is over
    with pytest.raises(plivo.exceptions.ValidationError, match="transfer"):
        mpc.call(customer, agent, "agent")

    talking(phlo, customer, target)
    [transfer] = transfers(phlo, phlo.member(customer)["mpc_uuid"])
    assert (transfer["transfer_state"], transfer["outcome"]) == ("completed", "transferred")


# --------------------------------------------------------------------------- hold / unhold
def test_hold_plays_the_members_own_hold_music_and_nobody_hears_it(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api, customer_hold_music="tone:523", agent_hold_music="tone:440")
    mpc = sdk_mpc(sdk, phlo)
    second = number()
    assert mpc.call(agent, second, "agent").error == ""
    talking(phlo, agent, customer, second)

    assert mpc.member(customer).hold().error == ""
    held = phlo.wait_member(customer, status="on_hold", hears=[], music="customer_hold")
    mpc_uuid = held["mpc_uuid"]
    talking(phlo, agent, second)  # nobody hears the held customer
    assert api.phone_hears(customer, mpc_uuid) == (set(), "customer_hold")
    assert api.phone_hears(agent, mpc_uuid) == ({second}, None)

    assert mpc.member(agent).hold().error == ""
    phlo.wait_member(agent, status="on_hold", hears=[], music="agent_hold")
    # the second agent is left with two held members: it hears nothing, and no music either
    phlo.wait_member(second, status="connected", hears=[], music=None)

    assert mpc.member(customer).unhold().error == ""
    assert mpc.member(agent).unhold().error == ""
    talking(phlo, agent, customer, second)
    assert api.phone_hears(customer, mpc_uuid) == ({agent, second}, None)


# --------------------------------------------------------------------------- voicemail drop
def test_voicemail_drop_plays_the_message_then_the_member_leaves(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api, voicemail_message="tone:660")
    mpc = sdk_mpc(sdk, phlo)
    machine = number()
    api.phone(machine, "voicemail")
    assert mpc.call(agent, machine, "customer").error == ""
    answered = phlo.wait_member(machine, status="connected")
    assert answered["answered_by"] == "machine"
    mpc_uuid = answered["mpc_uuid"]

    assert mpc.member(machine).voicemail_drop().error == ""
    playing = phlo.member(machine)
    assert (playing["status"], playing["leave_reason"]) == ("connected", None)
    assert hearing(playing) == (set(), "voicemail")
    assert api.phone_hears(machine, mpc_uuid) == (set(), "voicemail")
    talking(phlo, agent, customer)  # nobody hears the message

    left = phlo.wait_member(machine, status="left")
    assert left["leave_reason"] == "voicemail_dropped"
    assert api.phone_hears(machine, mpc_uuid) is None
    talking(phlo, agent, customer)
    assert phlo.conference(mpc_uuid)["status"] == "live"


# --------------------------------------------------------------------------- hangup and the end
def test_hangup_removes_only_that_member(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api)
    mpc = sdk_mpc(sdk, phlo)
    second = number()
    assert mpc.call(agent, second, "agent").error == ""
    talking(phlo, agent, customer, second)

    assert mpc.member(second).hangup().error == ""

    left = phlo.wait_member(second, status="left")
    assert left["leave_reason"] == "hangup"
    assert api.phone_hears(second, left["mpc_uuid"]) is None
    talking(phlo, agent, customer)


def test_conference_ends_when_the_last_member_leaves(api: Api, sdk: Any) -> None:
    phlo, agent, customer, run = connected(api)
    mpc = sdk_mpc(sdk, phlo)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    assert phlo.get_run(run["phlo_run_id"])["status"] == "running"

    assert mpc.member(customer).hangup().error == ""
    alone = phlo.wait_member(agent, status="connected", hears=[], music="wait")
    assert alone["mpc_uuid"] == mpc_uuid
    assert phlo.conference(mpc_uuid)["status"] == "live"
    assert mpc.member(agent).hangup().error == ""

    ended = phlo.wait_ended(mpc_uuid)
    assert ended["end_reason"] == "empty"
    assert ended["ended_on"] is not None
    assert {m["status"] for m in ended["members"]} == {"left"}
    run_view = wait_until(
        lambda: (r := phlo.get_run(run["phlo_run_id"]))["status"] != "running" and r, what="run to finish"
    )
    assert run_view["status"] == "completed"
    assert run_view["mpc_uuids"] == [mpc_uuid]
    # the member views stay readable after the end
    assert phlo.member(agent)["status"] == "left"
    # member actions on a conference that ended: the member is gone
    with pytest.raises(plivo.exceptions.ResourceNotFoundError):
        mpc.member(agent).hold()
    # the addresses are free again: a new run starts a new conference
    phlo.connect(agent, customer)
    assert phlo.conference()["mpc_uuid"] != mpc_uuid


def test_phone_side_hangup(api: Api) -> None:
    phlo, agent, customer, run = connected(api)
    mpc_uuid = phlo.conference()["mpc_uuid"]

    response = api.hang_up_phone(customer)
    assert response.status_code == 201, response.text
    assert response.json()["calls_dropped"] == 1

    left = phlo.wait_member(customer, status="left")
    assert left["leave_reason"] == "remote_hangup"
    phlo.wait_member(agent, status="connected", hears=[], music="wait")

    assert api.hang_up_phone(agent).status_code == 201
    ended = phlo.wait_ended(mpc_uuid)
    assert {m["leave_reason"] for m in ended["members"]} == {"remote_hangup"}
    wait_until(lambda: phlo.get_run(run["phlo_run_id"])["status"] == "completed", what="run completed")
    # a phone with no call has nothing to hang up
    response = api.hang_up_phone(agent)
    assert response.status_code == 404


def test_hangup_of_a_member_still_ringing_cancels_the_dial(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api)
    target = number()
    api.phone(target, "no_answer")
    mpc = sdk_mpc(sdk, phlo)
    assert mpc.call(agent, target, "agent").error == ""
    ringing = phlo.wait_member(target, status="dialing", ringing=True)
    assert api.phone_calls(target)[0]["state"] == "ringing"

    assert mpc.member(target).hangup().error == ""

    left = phlo.wait_member(target, status="left")
    assert left["leave_reason"] == "hangup"
    assert api.phone_hears(target, ringing["mpc_uuid"]) is None
    talking(phlo, agent, customer)


def test_phone_side_hangup_of_a_ringing_call_is_a_rejection(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api)
    target = number()
    api.phone(target, "no_answer")
    assert sdk_mpc(sdk, phlo).call(agent, target, "agent").error == ""
    phlo.wait_member(target, status="dialing", ringing=True)

    assert api.hang_up_phone(target).status_code == 201

    left = phlo.wait_member(target, status="left")
    assert left["leave_reason"] == "rejected"
    talking(phlo, agent, customer)


# --------------------------------------------------------------------------- limits and runs
def test_max_participants_refuses_one_more(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api, max_participants=3)
    mpc = sdk_mpc(sdk, phlo)
    third, fourth = number(), number()
    assert mpc.call(agent, third, "agent").error == ""
    talking(phlo, agent, customer, third)
    assert phlo.conference()["max_participants"] == 3
    before = phlo.instances()

    with pytest.raises(plivo.exceptions.ValidationError, match="max participants"):
        mpc.call(agent, fourth, "agent")
    with pytest.raises(plivo.exceptions.ValidationError, match="max participants"):
        mpc.warm_transfer(agent, fourth, "agent")

    assert phlo.instances() == before
    assert api.phone_calls(fourth) == []


def test_sequential_run_with_a_busy_agent_never_dials_the_customer(api: Api) -> None:
    phlo = api.create_phlo()
    agent, customer = number(), number()
    api.phone(agent, "busy")

    run = phlo.run(agent=agent, customer=customer)

    conference = phlo.wait_newest_ended()
    assert conference["phlo_run_id"] == run["phlo_run_id"]
    assert [(m["member_address"], m["leave_reason"]) for m in conference["members"]] == [(agent, "busy")]
    assert conference["queued"] == []
    assert api.phone_calls(customer) == []
    run_view = wait_until(
        lambda: (r := phlo.get_run(run["phlo_run_id"]))["status"] != "running" and r, what="run to finish"
    )
    assert run_view["status"] == "failed"


def test_queued_customer_is_not_a_member_yet(api: Api, sdk: Any) -> None:
    """While the agent rings, the customer of a sequential run waits in the queue, undialed."""
    phlo = api.create_phlo()
    agent, customer = number(), number()
    api.phone(agent, "no_answer")
    phlo.run(agent=agent, customer=customer)
    phlo.wait_member(agent, status="dialing", ringing=True)
    conference = phlo.conference()
    assert conference["queued"] == [{"address": customer, "role": "customer"}]
    assert [m["member_address"] for m in conference["members"]] == [agent]

    view = api.http.get(phlo.member_path(customer))
    assert view.status_code == 404 or (view.status_code == 200 and view.json()["member_address"] == customer)
    with pytest.raises((plivo.exceptions.ResourceNotFoundError, plivo.exceptions.ValidationError)):
        sdk_mpc(sdk, phlo).member(customer).hold()
    assert phlo.conference() == conference
    assert api.phone_calls(customer) == []
    assert sdk_mpc(sdk, phlo).member(agent).hangup().error == ""
    ended = phlo.wait_ended(conference["mpc_uuid"])
    assert ended["queued"] == []
    assert [m["member_address"] for m in ended["members"]] == [agent]


def test_parallel_run_dials_everybody_at_once(api: Api) -> None:
    phlo = api.create_phlo(mode="parallel")
    agent, customer = number(), number()
    api.phone(agent, "answer", delay_ms=SLOW_ANSWER_MS)
    api.phone(customer, "answer", delay_ms=SLOW_ANSWER_MS)

    phlo.run(agent=agent, customer=customer)

    assert {m["member_address"]: m["status"] for m in phlo.conference()["members"]} == {
        agent: "dialing",
        customer: "dialing",
    }
    talking(phlo, agent, customer)


# --------------------------------------------------------------------------- concurrency
def test_an_address_is_in_one_conference_at_most(api: Api) -> None:
    check_an_address_is_in_one_conference_at_most(api)


def test_an_address_may_be_live_in_the_nodes_of_two_phlos(api: Api, sdk: Any) -> None:
    first, second = api.create_phlo(), api.create_phlo()
    agent = number()
    first.connect(agent, number())
    second.connect(agent, number())
    assert first.member(agent)["mpc_uuid"] != second.member(agent)["mpc_uuid"]
    assert len(api.phone_calls(agent)) == 2
    assert sdk_mpc(sdk, first).member(agent).hold().error == ""
    first.wait_member(agent, status="on_hold")
    assert second.member(agent)["status"] == "connected"
