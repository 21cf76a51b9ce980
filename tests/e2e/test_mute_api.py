"""mute / unmute through Plivo's Python SDK (`Member.mute()`, `.unmute()`), checked in the member view,
on the sim carrier's phones (what each one hears), in the signed callbacks, and on the legacy
`conference_bridge` URI that the SDK's `client.phlo.member(...)` posts to by default.

A (agent) and C (customer) are connected by a PHLO run; S is a second agent, T a transfer target.
"""

from __future__ import annotations

from typing import Any

from e2ekit import Api, CallbackReceiver, assert_plivo_error, number, sdk_mpc, wait_until
from test_actions import connected, talking
from test_callbacks import assert_signed


def test_a_muted_member_is_heard_by_nobody_and_still_hears_the_room(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api)
    mpc = sdk_mpc(sdk, phlo)
    second = number()
    assert mpc.call(agent, second, "agent").error == ""
    talking(phlo, agent, customer, second)

    assert mpc.member(customer).mute().error == ""
    muted = phlo.wait_member(customer, mute=True, status="connected", hears=[agent, second], music=None)
    mpc_uuid = muted["mpc_uuid"]
    phlo.wait_member(agent, mute=False, hears=[second], music=None)
    phlo.wait_member(second, mute=False, hears=[agent], music=None)
    assert api.phone_hears(customer, mpc_uuid) == ({agent, second}, None)
    assert api.phone_hears(agent, mpc_uuid) == ({second}, None)
    assert api.phone_hears(second, mpc_uuid) == ({agent}, None)

    assert mpc.member(customer).unmute().error == ""
    phlo.wait_member(customer, mute=False)
    talking(phlo, agent, customer, second)
    assert api.phone_hears(agent, mpc_uuid) == ({customer, second}, None)


def test_the_only_other_member_muted_leaves_silence_not_music(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api, customer_hold_music="tone:523")
    mpc = sdk_mpc(sdk, phlo)
    assert mpc.member(agent).mute().error == ""
    phlo.wait_member(customer, hears=[], music=None)
    phlo.wait_member(agent, mute=True, hears=[customer], music=None)


def test_mute_survives_hold_and_a_warm_transfer(api: Api, sdk: Any) -> None:
    phlo, agent, customer, _ = connected(api, customer_hold_music="tone:523")
    mpc = sdk_mpc(sdk, phlo)
    assert mpc.member(customer).mute().error == ""
    assert mpc.member(customer).hold().error == ""
    phlo.wait_member(customer, mute=True, status="on_hold", music="customer_hold")
    assert mpc.member(customer).unhold().error == ""
    phlo.wait_member(customer, mute=True, status="connected", hears=[agent])

    # The agent consults T muted: T hears nobody, the agent hears T.
    target = number()
    assert mpc.member(agent).mute().error == ""
    assert mpc.warm_transfer(agent, target, "agent").error == ""
    phlo.wait_member(target, status="connected", hears=[], music=None)
    consulting = phlo.wait_member(agent, mute=True, hears=[target])
    assert consulting["room"] != "main"
    assert api.phone_hears(target, consulting["mpc_uuid"]) == (set(), None)
    assert mpc.member(agent).resume_call().error == ""
    # Back in the main room both are still muted: only T is heard.
    phlo.wait_member(agent, mute=True, room="main", hears=[target])
    phlo.wait_member(customer, mute=True, hears=[target])
    phlo.wait_member(target, mute=False, hears=[])


def test_mute_and_unmute_are_published_and_called_back_signed(
    api: Api, sdk: Any, receiver: CallbackReceiver
) -> None:
    url = receiver.url("/events")
    phlo, _, customer, _ = connected(api, callback_url=url)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    mpc = sdk_mpc(sdk, phlo)
    assert mpc.member(customer).mute().error == ""
    assert mpc.member(customer).unmute().error == ""

    def muting() -> list[dict[str, str]] | None:
        found = [
            c.params
            for c in receiver.delivered(mpc_uuid)
            if c.params["event"] in ("member_muted", "member_unmuted")
        ]
        return found if len(found) == 2 else None

    muted, unmuted = sorted(wait_until(muting, what="the mute callbacks"), key=lambda p: int(p["sequence"]))
    assert (muted["event"], muted["member_address"], muted["mute"]) == ("member_muted", customer, "true")
    assert (unmuted["event"], unmuted["mute"]) == ("member_unmuted", "false")
    assert int(unmuted["sequence"]) == int(muted["sequence"]) + 1
    [signed] = [c for c in receiver.delivered(mpc_uuid) if c.params["event"] == "member_muted"]
    assert_signed(signed, url)


def test_the_legacy_conference_bridge_uri_mutes_unmutes_and_hangs_up_an_mpc_member(
    api: Api, sdk: Any
) -> None:
    """`client.phlo.member(phlo_id, node_id, address, action)` posts to …/conference_bridge/… by default."""
    phlo, agent, customer, _ = connected(api)
    assert sdk.phlo.member(phlo.phlo_id, phlo.node_id, customer, "mute").error == ""
    phlo.wait_member(customer, mute=True)
    phlo.wait_member(agent, hears=[])
    assert sdk.phlo.member(phlo.phlo_id, phlo.node_id, customer, "unmute").error == ""
    phlo.wait_member(agent, hears=[customer])
    assert sdk.phlo.member(phlo.phlo_id, phlo.node_id, customer, "hangup").error == ""
    phlo.wait_member(customer, status="left", leave_reason="hangup")
    # A node that is not one of the PHLO's MPC nodes is as unknown there as anywhere.
    response = api.http.post(
        f"/v1/phlo/{phlo.phlo_id}/conference_bridge/no-such-node/members/{agent}", json={"action": "mute"}
    )
    assert_plivo_error(response, 404)
