"""Conference state to and from plain JSON-friendly dicts (what the store keeps)."""

from __future__ import annotations

from dataclasses import asdict, fields
from enum import StrEnum
from typing import Any, TypeVar

from bridgeline.core.conference import Conference, ConferenceRules
from bridgeline.core.model import (
    AnsweredBy,
    ConferencePhase,
    EndReason,
    LeaveReason,
    Member,
    MemberStatus,
    QueuedDial,
    Role,
    Transfer,
    TransferKind,
    TransferOutcome,
    TransferState,
)

FORMAT_VERSION = 1
_E = TypeVar("_E", bound=StrEnum)


def dump(conf: Conference) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "conference_id": conf.conference_id,
        "rules": asdict(conf.rules),
        "started_at": conf.started_at,
        "phase": conf.phase.value,
        "ended_at": conf.ended_at,
        "end_reason": None if conf.end_reason is None else conf.end_reason.value,
        "members": [asdict(m) for m in conf.members.values()],
        "transfers": [asdict(t) for t in conf.transfers],
        "queued": [asdict(q) for q in conf.queued],
        "next_seq": conf.next_seq,
        "leg_counter": conf.leg_counter,
        "transfer_counter": conf.transfer_counter,
    }


def load(data: dict[str, Any]) -> Conference:
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported conference snapshot version {data.get('version')!r}")
    conf = Conference(data["conference_id"], ConferenceRules(**data["rules"]), data["started_at"])
    conf.phase = ConferencePhase(data["phase"])
    conf.ended_at = data["ended_at"]
    conf.end_reason = None if data["end_reason"] is None else EndReason(data["end_reason"])
    for raw in data["members"]:
        member = _member(raw)
        conf.members[member.address] = member
    conf.transfers = [_transfer(raw) for raw in data["transfers"]]
    conf.queued = [QueuedDial(q["address"], Role(q["role"])) for q in data["queued"]]
    conf.next_seq = data["next_seq"]
    conf.leg_counter = data["leg_counter"]
    conf.transfer_counter = data["transfer_counter"]
    return conf


def _member(raw: dict[str, Any]) -> Member:
    values = {f.name: raw[f.name] for f in fields(Member)}
    values["role"] = Role(raw["role"])
    values["status"] = MemberStatus(raw["status"])
    values["leave_reason"] = _opt(LeaveReason, raw["leave_reason"])
    values["answered_by"] = _opt(AnsweredBy, raw["answered_by"])
    return Member(**values)


def _transfer(raw: dict[str, Any]) -> Transfer:
    values = {f.name: raw[f.name] for f in fields(Transfer)}
    values["kind"] = TransferKind(raw["kind"])
    values["state"] = TransferState(raw["state"])
    values["outcome"] = _opt(TransferOutcome, raw["outcome"])
    return Transfer(**values)


def _opt(kind: type[_E], value: str | None) -> _E | None:
    return None if value is None else kind(value)
