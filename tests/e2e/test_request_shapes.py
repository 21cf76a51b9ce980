"""The other SDKs' request shapes: the same action through another URI acts the same.

- Java's `MultiPartyCallUpdater` posts to a member's URI when `.member(addr)` was set, whatever the
  action: `warm_transfer` / `cold_transfer` arrive there with `to` and `role`, the path naming the
  member who asks (Jackson drops null fields; no trailing slash).
- Java's updater without `.member()`, Go's `MultiPartyCallActionPayload` (whose `Action` the caller
  sets, every field serialised, empty ones as "") and the Python SDK's public `MultiPartyCall.update`
  post `resume_call` / `abort_transfer` to the node URI, the member named by `trigger_source`.

Java and Go are not installed here, so their requests are reproduced byte for byte with httpx (path,
body, content type); the Python ones go through the SDK. Each shape is run on a conference of its own
and compared with the usual shape: same answer, same events (same order, same fields), same state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from e2ekit import Api, CallbackReceiver, Phlo, assert_action_ok, number, sdk_mpc, wait_until
from test_actions import connected

JAVA_JSON = {"Content-Type": "application/json; charset=UTF-8"}  # Retrofit's JacksonConverterFactory
GO_JSON = {"Content-Type": "application/json"}


def java_member_uri(phlo: Phlo, member: str, **fields: str) -> httpx.Response:
    """`MultiPartyCall.updater(p, n).member(member).<action>().to(..).role(..).update()`."""
    body = json.dumps(fields, separators=(",", ":")).encode()
    return phlo.http.post(phlo.member_path(member), content=body, headers=JAVA_JSON)


def java_node_uri(phlo: Phlo, **fields: str) -> httpx.Response:
    """`MultiPartyCall.updater(p, n).<action>().triggerSource(..).update()`."""
    body = json.dumps(fields, separators=(",", ":")).encode()
    return phlo.http.post(phlo.node_path, content=body, headers=JAVA_JSON)


def go_node_uri(phlo: Phlo, action: str, trigger_source: str, to: str = "", role: str = "") -> httpx.Response:
    """`mpc.Call(plivo.MultiPartyCallActionPayload{Action: action, TriggerSource: ...})`: all four fields."""
    payload = {"action": action, "to": to, "role": role, "trigger_source": trigger_source}
    return phlo.http.post(phlo.node_path, content=json.dumps(payload).encode(), headers=GO_JSON)


def sdk_ok(answer: Any) -> None:
    assert answer.error == "" and answer.api_id


# The parties of one conference, by what they are, so that conferences can be compared.
Parties = dict[str, str]
FIELDS = ("event", "role", "status", "mute", "transfer_type", "transfer_state", "outcome", "reason")


def story(receiver: CallbackReceiver, mpc_uuid: str, parties: Parties, last: str) -> list[tuple[str, ...]]:
    """The conference's callbacks up to `last`, every one delivered, with addresses named by party."""
    names = {address: name for name, address in parties.items()}

    def complete() -> list[dict[str, str]] | None:
        delivered = sorted((c.params for c in receiver.delivered(mpc_uuid)), key=lambda p: int(p["sequence"]))
        seqs = [int(p["sequence"]) for p in delivered]
        if not delivered or seqs != list(range(1, len(seqs) + 1)) or delivered[-1]["event"] != last:
            return None
        return delivered

    return [
        (
            *(p.get(f, "") for f in FIELDS),
            *(names.get(p.get(k, ""), "") for k in ("member_address", "initiator", "target")),
        )
        for p in wait_until(complete, timeout=10.0, what=f"the callbacks of {mpc_uuid} up to {last}")
    ]


def state(phlo: Phlo, mpc_uuid: str, parties: Parties) -> list[tuple[Any, ...]]:
    names = {address: name for name, address in parties.items()}
    return sorted(
        (
            names[m["member_address"]],
            m["status"],
            m["mute"],
            m["room"] == "main",
            tuple(sorted(names[h] for h in m["hears"])),
            m["music"],
        )
        for m in phlo.conference(mpc_uuid)["members"]
    )


WarmStep = Callable[[Phlo, Any, Parties], None]


def warm_then_resume(
    api: Api, sdk: Any, receiver: CallbackReceiver, warm: WarmStep, resume: WarmStep
) -> tuple[list[tuple[str, ...]], list[tuple[Any, ...]]]:
    phlo, agent, customer, _ = connected(api, callback_url=receiver.url(), customer_hold_music="tone:523")
    parties = {"agent": agent, "customer": customer, "target": number()}
    mpc_uuid = phlo.conference()["mpc_uuid"]
    warm(phlo, sdk, parties)
    phlo.wait_member(parties["target"], status="connected", hears=[agent])
    phlo.wait_member(customer, music="customer_hold")
    resume(phlo, sdk, parties)
    phlo.wait_member(customer, hears=[agent, parties["target"]])
    return story(receiver, mpc_uuid, parties, "transfer_completed"), state(phlo, mpc_uuid, parties)


def sdk_warm(phlo: Phlo, sdk: Any, p: Parties) -> None:
    sdk_ok(sdk_mpc(sdk, phlo).warm_transfer(p["agent"], p["target"]))


def sdk_resume(phlo: Phlo, sdk: Any, p: Parties) -> None:
    sdk_ok(sdk_mpc(sdk, phlo).member(p["agent"]).resume_call())


def test_warm_transfer_and_resume_call_through_every_sdks_uri_act_alike(
    api: Api, sdk: Any, receiver: CallbackReceiver
) -> None:
    usual = warm_then_resume(api, sdk, receiver, sdk_warm, sdk_resume)

    def java_warm(phlo: Phlo, sdk: Any, p: Parties) -> None:
        assert_action_ok(
            java_member_uri(phlo, p["agent"], to=p["target"], role="agent", action="warm_transfer")
        )

    def java_resume(phlo: Phlo, sdk: Any, p: Parties) -> None:
        assert_action_ok(java_node_uri(phlo, trigger_source=p["agent"], action="resume_call"))

    def go_warm(phlo: Phlo, sdk: Any, p: Parties) -> None:
        assert_action_ok(go_node_uri(phlo, "warm_transfer", p["agent"], to=p["target"]))

    def go_resume(phlo: Phlo, sdk: Any, p: Parties) -> None:
        assert_action_ok(go_node_uri(phlo, "resume_call", p["agent"]))

    def python_update_resume(phlo: Phlo, sdk: Any, p: Parties) -> None:
        sdk_ok(sdk_mpc(sdk, phlo).update("resume_call", p["agent"], None, None))

    assert warm_then_resume(api, sdk, receiver, java_warm, java_resume) == usual
    assert warm_then_resume(api, sdk, receiver, go_warm, go_resume) == usual
    assert warm_then_resume(api, sdk, receiver, sdk_warm, python_update_resume) == usual
    events, members = usual
    assert (
        "transfer_completed",
        "",
        "",
        "",
        "warm",
        "completed",
        "three_way",
        "",
        "",
        "agent",
        "target",
    ) in events
    assert members == [
        ("agent", "connected", False, True, ("customer", "target"), None),
        ("customer", "connected", False, True, ("agent", "target"), None),
        ("target", "connected", False, True, ("agent", "customer"), None),
    ]


def cold_then_abort(
    api: Api, sdk: Any, receiver: CallbackReceiver, cold: WarmStep, abort: WarmStep
) -> tuple[list[tuple[str, ...]], list[tuple[Any, ...]]]:
    phlo, agent, customer, _ = connected(api, callback_url=receiver.url())
    parties = {"agent": agent, "customer": customer, "target": number()}
    api.phone(parties["target"], "no_answer")
    mpc_uuid = phlo.conference()["mpc_uuid"]
    cold(phlo, sdk, parties)
    phlo.wait_member(parties["target"], status="dialing", ringing=True)
    abort(phlo, sdk, parties)
    phlo.wait_member(parties["target"], status="left", leave_reason="transfer_aborted")
    return story(receiver, mpc_uuid, parties, "member_left"), state(phlo, mpc_uuid, parties)


def test_cold_transfer_and_abort_transfer_through_every_sdks_uri_act_alike(
    api: Api, sdk: Any, receiver: CallbackReceiver
) -> None:
    def sdk_cold(phlo: Phlo, sdk: Any, p: Parties) -> None:
        sdk_ok(sdk_mpc(sdk, phlo).cold_transfer(p["agent"], p["target"]))

    def sdk_abort(phlo: Phlo, sdk: Any, p: Parties) -> None:
        sdk_ok(sdk_mpc(sdk, phlo).member(p["agent"]).abort_transfer())

    def java_cold(phlo: Phlo, sdk: Any, p: Parties) -> None:
        assert_action_ok(
            java_member_uri(phlo, p["agent"], to=p["target"], role="agent", action="cold_transfer")
        )

    def java_abort(phlo: Phlo, sdk: Any, p: Parties) -> None:
        assert_action_ok(java_node_uri(phlo, trigger_source=p["agent"], action="abort_transfer"))

    def go_abort(phlo: Phlo, sdk: Any, p: Parties) -> None:
        assert_action_ok(go_node_uri(phlo, "abort_transfer", p["agent"]))

    usual = cold_then_abort(api, sdk, receiver, sdk_cold, sdk_abort)
    assert cold_then_abort(api, sdk, receiver, java_cold, java_abort) == usual
    assert cold_then_abort(api, sdk, receiver, sdk_cold, go_abort) == usual
    events, members = usual
    assert [e[0] for e in events][-2:] == ["transfer_aborted", "member_left"]
    assert ("target", "left", False, True, (), None) in members


def test_a_transfer_on_a_member_uri_naming_a_stranger_is_refused_like_on_the_node_uri(api: Api) -> None:
    phlo, _, _, _ = connected(api)
    stranger = number()
    on_member = java_member_uri(phlo, stranger, to=number(), role="agent", action="warm_transfer")
    on_node = go_node_uri(phlo, "warm_transfer", stranger, to=number())
    assert on_member.status_code == on_node.status_code == 400
    assert (
        on_member.json()["error"]
        == on_node.json()["error"]
        == (f"trigger_source {stranger} is not in a live conference of this node")
    )
