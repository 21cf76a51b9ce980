"""Transfers a phone asks for with REFER (RFC 3515), between the SIP endpoint and the conference.

A REFER from a member's phone becomes the API's cold transfer (`ConferenceService.leg_cold_transfer`,
bound with `SipCarrier.bind_transfers`): first the policy (`refer` settings: who may transfer, to
where), then the conference's own rules; a refusal answers the REFER (403 with the reason), an
accepted transfer answers 202 and then NOTIFYs the referrer how the target's call went: 180 when it
rings, 200 when it answers (the conference then hangs the referrer up, as the API's cold transfer
does), or the failure. The target's leg is recognised when the conference dials it: the dial for
the asked address in that conference, placed while the transfer is being applied.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from bridgeline.core.errors import ActionRefused
from bridgeline.sip import events as sip
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.refer_policy import LegKind, ReferPolicy, read_target

log = structlog.get_logger(__name__)

TransferHandler = Callable[[str, str, str], Awaitable[None]]
"""(conference_id, leg_id, to): apply a cold transfer asked for by that leg; raises ActionRefused."""


@dataclass(slots=True)
class _Transfer:
    conference_id: str
    transferor: str  # the referring leg
    to: str
    accepted: bool = False  # 202 sent
    rang: bool = False
    outcome: tuple[int, str] | None = None  # the target's final status, once known


class ReferTransfers:
    def __init__(
        self,
        endpoint: SipEndpoint,
        policy: ReferPolicy,
        *,
        local_hosts: frozenset[str],
        accounts: frozenset[str],
        trunk_domain: str | None,
        now: Callable[[], float],
        flush: Callable[[], None],
        spawn: Callable[[Awaitable[None]], None],
    ) -> None:
        self.policy = policy
        self._endpoint = endpoint
        self._local_hosts, self._accounts, self._trunk_domain = local_hosts, accounts, trunk_domain
        self._now, self._flush, self._spawn = now, flush, spawn
        self._handler: TransferHandler | None = None
        self._applying: dict[tuple[str, str], _Transfer] = {}  # (conference, to): being applied now
        self._by_target: dict[str, _Transfer] = {}
        self._by_transferor: dict[str, _Transfer] = {}
        self.stats = {"accepted": 0, "refused": 0}

    def bind(self, handler: TransferHandler) -> None:
        self._handler = handler

    def sizes(self) -> int:
        return len(self._applying) + len(self._by_target) + len(self._by_transferor)

    # ----------------------------------------------------------------- from the carrier
    def requested(self, event: sip.TransferRequested, conference_id: str | None, kind: LegKind) -> None:
        """A REFER arrived on a leg of ours (its conference, None if it has none yet)."""
        target = read_target(
            event.target,
            local_hosts=self._local_hosts,
            accounts=self._accounts,
            trunk_domain=self._trunk_domain,
        )
        refusal = self.policy.refusal(kind, target)
        if refusal is None and (conference_id is None or self._handler is None):
            refusal = "The call is not in a conference"
        if refusal is not None or conference_id is None:
            self._refuse(event.leg_id, str(event.target), refusal or "Refused")
            return
        if (conference_id, target.address) in self._applying:  # its dial must be told apart from ours
            self._refuse(event.leg_id, str(event.target), f"{target.address} is already being called")
            return
        transfer = _Transfer(conference_id, event.leg_id, target.address)
        self._by_transferor[event.leg_id] = transfer
        self._applying[(conference_id, target.address)] = transfer
        self._spawn(self._apply(transfer))

    def dialing(self, conference_id: str, to: str, leg_id: str) -> None:
        """The carrier is about to dial `to` for this conference."""
        transfer = self._applying.pop((conference_id, to), None)
        if transfer is not None:
            self._by_target[leg_id] = transfer

    def on_event(self, event: sip.EndpointEvent) -> None:
        """The target's progress, before the carrier handles the event."""
        transfer = self._by_target.get(getattr(event, "leg_id", ""))
        if transfer is None or transfer.outcome is not None:
            return
        if isinstance(event, sip.LegRinging) and not transfer.rang:
            transfer.rang = True
            self._notify(transfer, 180, "Ringing", final=False)
        elif isinstance(event, sip.LegAnswered):
            self._finish(transfer, 200, "OK")
        elif isinstance(event, sip.LegFailed):
            self._finish(transfer, event.status, _FAILED_PHRASES.get(event.reason, "Transfer Failed"))

    def leg_gone(self, leg_id: str) -> None:
        """A leg's terminal event: a target that ended unanswered fails its transfer; a referrer's
        transfer is forgotten (its BYE ended the subscription)."""
        transfer = self._by_target.get(leg_id)
        if transfer is not None and transfer.outcome is None:
            self._finish(transfer, 503, "Transfer Failed")
        self._by_target.pop(leg_id, None)
        gone = self._by_transferor.pop(leg_id, None)
        if gone is not None:
            for target, t in list(self._by_target.items()):
                if t is gone:
                    del self._by_target[target]

    # ----------------------------------------------------------------- machinery
    async def _apply(self, transfer: _Transfer) -> None:
        key = (transfer.conference_id, transfer.to)
        assert self._handler is not None
        try:
            await self._handler(transfer.conference_id, transfer.transferor, transfer.to)
        except ActionRefused as exc:
            self._by_transferor.pop(transfer.transferor, None)
            self._refuse(transfer.transferor, transfer.to, str(exc))
            return
        except Exception:
            log.exception("sip_refer_failed", leg_id=transfer.transferor, to=transfer.to)
            self._by_transferor.pop(transfer.transferor, None)
            self._answer(transfer.transferor, 500, "Transfer could not be started")
            return
        finally:
            if self._applying.get(key) is transfer:
                del self._applying[key]
        self.stats["accepted"] += 1
        log.info("sip_refer_accepted", leg_id=transfer.transferor, to=transfer.to)
        transfer.accepted = True
        self._answer(transfer.transferor, 202, None)
        if transfer.outcome is not None:  # the target's dial ended before our 202 went out
            self._notify(transfer, *transfer.outcome, final=True)

    def _refuse(self, leg_id: str, to: str, reason: str) -> None:
        self.stats["refused"] += 1
        log.info("sip_refer_refused", leg_id=leg_id, to=to[:120], reason=reason)
        self._answer(leg_id, 403, reason)

    def _finish(self, transfer: _Transfer, status: int, reason: str) -> None:
        transfer.outcome = (status, reason)
        if transfer.accepted:
            self._notify(transfer, status, reason, final=True)

    def _answer(self, leg_id: str, status: int, reason: str | None) -> None:
        self._endpoint.answer_refer(leg_id, status, self._now(), reason)
        self._flush()

    def _notify(self, transfer: _Transfer, status: int, reason: str, *, final: bool) -> None:
        if transfer.accepted:
            self._endpoint.notify_refer(transfer.transferor, status, self._now(), reason, final=final)
            self._flush()


_FAILED_PHRASES = {
    sip.FailReason.BUSY: "Busy Here",
    sip.FailReason.REJECTED: "Decline",
    sip.FailReason.NO_ANSWER: "Temporarily Unavailable",
    sip.FailReason.CANCELLED: "Request Terminated",
    sip.FailReason.UNREACHABLE: "Not Found",
}
