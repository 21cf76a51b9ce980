"""How a REFER becomes a cold transfer and how its NOTIFYs follow the target (the carrier's
`ReferTransfers`), with the conference and the SIP endpoint stood in for by recorders."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from bridgeline.adapters.carriers.sip.refer_transfers import ReferTransfers
from bridgeline.core.errors import ActionRefused
from bridgeline.sip import events as sip
from bridgeline.sip.refer_policy import LegKind, ReferPolicy
from bridgeline.sip.uri import SipURI


class Endpoint:
    """Records what the bridge tells the SIP endpoint."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def answer_refer(self, leg_id: str, status: int, now: float, reason: str | None = None) -> bool:
        self.sent.append(("answer", leg_id, status, reason))
        return True

    def notify_refer(
        self, leg_id: str, status: int, now: float, reason: str | None = None, *, final: bool = True
    ) -> bool:
        self.sent.append(("notify", leg_id, status, reason, final))
        return True


def bridge(
    handler: Any, policy: ReferPolicy | None = None
) -> tuple[ReferTransfers, Endpoint, list[Awaitable[None]]]:
    endpoint = Endpoint()
    tasks: list[Awaitable[None]] = []
    refers = ReferTransfers(
        endpoint,  # type: ignore[arg-type]
        policy
        or ReferPolicy.from_entries(enabled=True, allowed=["endpoints", "+1415"], transferors=["endpoints"]),
        local_hosts=frozenset({"bridge.example"}),
        accounts=frozenset({"bob"}),
        trunk_domain="trunk.example",
        now=lambda: 1.0,
        flush=lambda: None,
        spawn=tasks.append,
    )
    refers.bind(handler)
    return refers, endpoint, tasks


def asked(user: str) -> sip.TransferRequested:
    return sip.TransferRequested("agent-leg", SipURI("bridge.example", user))


async def run(tasks: list[Awaitable[None]]) -> None:
    while tasks:
        await tasks.pop(0)


async def test_accepted_then_ringing_and_answered_are_notified_in_order() -> None:
    calls: list[tuple[str, str, str]] = []
    refers: ReferTransfers

    async def handler(conference_id: str, leg_id: str, to: str) -> None:
        calls.append((conference_id, leg_id, to))
        refers.dialing(conference_id, to, "target-leg")  # the conference dials within the transfer

    refers, endpoint, tasks = bridge(handler)
    refers.requested(asked("+14155550123"), "conf-1", LegKind.ENDPOINT)
    await run(tasks)
    assert calls == [("conf-1", "agent-leg", "+14155550123")]
    refers.on_event(sip.LegRinging("target-leg", 180))
    refers.on_event(sip.LegRinging("target-leg", 183))  # once
    refers.on_event(sip.LegAnswered("target-leg", None, None))  # type: ignore[arg-type]
    refers.leg_gone("agent-leg")
    refers.leg_gone("target-leg")
    assert endpoint.sent == [
        ("answer", "agent-leg", 202, None),
        ("notify", "agent-leg", 180, "Ringing", False),
        ("notify", "agent-leg", 200, "OK", True),
    ]
    assert refers.sizes() == 0 and refers.stats == {"accepted": 1, "refused": 0}


async def test_a_target_that_fails_before_the_202_is_notified_after_it() -> None:
    refers: ReferTransfers

    async def handler(conference_id: str, leg_id: str, to: str) -> None:
        refers.dialing(conference_id, to, "target-leg")
        refers.on_event(sip.LegFailed("target-leg", 486, sip.FailReason.BUSY))
        refers.leg_gone("target-leg")

    refers, endpoint, tasks = bridge(handler)
    refers.requested(asked("bob"), "conf-1", LegKind.ENDPOINT)
    await run(tasks)
    assert endpoint.sent == [
        ("answer", "agent-leg", 202, None),
        ("notify", "agent-leg", 486, "Busy Here", True),
    ]


async def test_a_dial_that_ends_without_a_sip_answer_is_a_503() -> None:
    refers: ReferTransfers

    async def handler(conference_id: str, leg_id: str, to: str) -> None:
        refers.dialing(conference_id, to, "target-leg")

    refers, endpoint, tasks = bridge(handler)
    refers.requested(asked("bob"), "conf-1", LegKind.ENDPOINT)
    await run(tasks)
    refers.leg_gone("target-leg")  # e.g. no RTP port: the carrier failed it before any INVITE
    assert endpoint.sent[-1] == ("notify", "agent-leg", 503, "Transfer Failed", True)


async def test_refusals_by_policy_and_by_the_conference_carry_their_reason() -> None:
    async def refusing(conference_id: str, leg_id: str, to: str) -> None:
        raise ActionRefused("trigger_source agent already has a transfer in progress")

    refers, endpoint, tasks = bridge(refusing)
    refers.requested(asked("+19005550123"), "conf-1", LegKind.ENDPOINT)  # not allowed
    refers.requested(asked("bob"), "conf-1", LegKind.TRUNK)  # the trunk's calls may not transfer
    refers.requested(asked("bob"), None, LegKind.ENDPOINT)  # not in a conference
    refers.requested(asked("bob"), "conf-1", LegKind.ENDPOINT)
    await run(tasks)
    assert endpoint.sent == [
        ("answer", "agent-leg", 403, "Transfer target not allowed"),
        ("answer", "agent-leg", 403, "This call may not transfer"),
        ("answer", "agent-leg", 403, "The call is not in a conference"),
        ("answer", "agent-leg", 403, "trigger_source agent already has a transfer in progress"),
    ]
    assert refers.sizes() == 0 and refers.stats["refused"] == 4


async def test_an_unexpected_failure_is_a_500_and_leaves_nothing_behind() -> None:
    async def broken(conference_id: str, leg_id: str, to: str) -> None:
        raise RuntimeError("store down")

    refers, endpoint, tasks = bridge(broken)
    refers.requested(asked("bob"), "conf-1", LegKind.ENDPOINT)
    await run(tasks)
    assert endpoint.sent == [("answer", "agent-leg", 500, "Transfer could not be started")]
    assert refers.sizes() == 0


async def test_two_refers_to_one_target_at_once_the_second_is_refused() -> None:
    async def handler(conference_id: str, leg_id: str, to: str) -> None:
        refers.dialing(conference_id, to, "target-leg")

    refers, endpoint, tasks = bridge(handler)
    refers.requested(asked("bob"), "conf-1", LegKind.ENDPOINT)
    refers.requested(
        sip.TransferRequested("customer-leg", SipURI("bridge.example", "bob")), "conf-1", LegKind.ENDPOINT
    )
    await run(tasks)
    assert endpoint.sent == [
        ("answer", "customer-leg", 403, "bob is already being called"),
        ("answer", "agent-leg", 202, None),
    ]
