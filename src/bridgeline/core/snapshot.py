"""Conference state to and from plain JSON-friendly dicts (what the store keeps).

Written out field by field (no dataclasses.asdict): a snapshot is taken after every input, so this
is on the path of every API action. The shape is FORMAT_VERSION 1, as it always was; a test pins a
snapshot written by the first implementation.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, TypeVar

from bridgeline.core import recording
from bridgeline.core.conference import Conference
from bridgeline.core.floor import Floor
from bridgeline.core.model import (
    AnsweredBy,
    ConferencePhase,
    ConferenceRules,
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
    rules = conf.rules
    data = {
        "version": FORMAT_VERSION,
        "conference_id": conf.conference_id,
        "rules": {
            "max_participants": rules.max_participants,
            "max_duration": rules.max_duration,
            "ring_timeout": rules.ring_timeout,
            "voicemail_configured": rules.voicemail_configured,
            **_recording_rules(rules),
        },
        "started_at": conf.started_at,
        "phase": conf.phase.value,
        "ended_at": conf.ended_at,
        "end_reason": _value(conf.end_reason),
        "members": [_dump_member(m) for m in conf.members.values()],
        "transfers": [_dump_transfer(t) for t in conf.transfers],
        "queued": [{"address": q.address, "role": q.role.value} for q in conf.queued],
        "next_seq": conf.next_seq,
        "leg_counter": conf.leg_counter,
        "transfer_counter": conf.transfer_counter,
    }
    # Written only once a conference has recorded (or may): older snapshots, and those of conferences
    # that never record, keep the first format byte for byte; load reads the keys' absence as none.
    if conf.recording_counter:
        data["recordings"] = [recording.dump(r) for r in conf.recordings]
        data["recording_counter"] = conf.recording_counter
        data["auto_recorded"] = sorted(conf.auto_recorded)
    return data


def _recording_rules(rules: ConferenceRules) -> dict[str, Any]:
    defaults = ConferenceRules()
    names = ("record", "record_participant_track", "record_file_format", "record_min_member_count")
    return {n: getattr(rules, n) for n in names if getattr(rules, n) != getattr(defaults, n)}


def load(data: dict[str, Any]) -> Conference:
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported conference snapshot version {data.get('version')!r}")
    floor = Floor(data["conference_id"], ConferenceRules(**data["rules"]))
    for raw in data["members"]:
        member = _load_member(raw)
        floor.members[member.address] = member
    floor.transfers = [_load_transfer(raw) for raw in data["transfers"]]
    floor.queued = [QueuedDial(q["address"], Role(q["role"])) for q in data["queued"]]
    floor.next_seq = data["next_seq"]
    floor.leg_counter = data["leg_counter"]
    floor.transfer_counter = data["transfer_counter"]
    floor.recordings = [recording.load(raw) for raw in data.get("recordings", ())]
    floor.recording_counter = data.get("recording_counter", 0)
    floor.auto_recorded = set(data.get("auto_recorded", ()))
    phase, end_reason = ConferencePhase(data["phase"]), _opt(EndReason, data["end_reason"])
    return Conference.restore(floor, data["started_at"], phase, data["ended_at"], end_reason)


def _dump_member(m: Member) -> dict[str, Any]:
    data: dict[str, Any] = {
        "address": m.address,
        "role": m.role.value,
        "leg_id": m.leg_id,
        "status": m.status.value,
        "room": m.room,
        "dialed_at": m.dialed_at,
        "ring_deadline": m.ring_deadline,
        "connected_at": m.connected_at,
        "left_at": m.left_at,
        "leave_reason": _value(m.leave_reason),
        "answered_by": _value(m.answered_by),
        "playing_voicemail": m.playing_voicemail,
        "ringing": m.ringing,
    }
    if m.muted:  # only when set, so an unmuted member's record is as the first format wrote it
        data["muted"] = True
    return data


def _load_member(raw: dict[str, Any]) -> Member:
    return Member(
        address=raw["address"],
        role=Role(raw["role"]),
        leg_id=raw["leg_id"],
        status=MemberStatus(raw["status"]),
        room=raw["room"],
        dialed_at=raw["dialed_at"],
        ring_deadline=raw["ring_deadline"],
        connected_at=raw["connected_at"],
        left_at=raw["left_at"],
        leave_reason=_opt(LeaveReason, raw["leave_reason"]),
        answered_by=_opt(AnsweredBy, raw["answered_by"]),
        playing_voicemail=raw["playing_voicemail"],
        ringing=raw["ringing"],
        muted=raw.get("muted", False),  # snapshots written before mute existed
    )


def _dump_transfer(t: Transfer) -> dict[str, Any]:
    return {
        "transfer_id": t.transfer_id,
        "kind": t.kind.value,
        "initiator": t.initiator,
        "target": t.target,
        "state": t.state.value,
        "started_at": t.started_at,
        "ended_at": t.ended_at,
        "outcome": _value(t.outcome),
        "room": t.room,
    }


def _load_transfer(raw: dict[str, Any]) -> Transfer:
    return Transfer(
        transfer_id=raw["transfer_id"],
        kind=TransferKind(raw["kind"]),
        initiator=raw["initiator"],
        target=raw["target"],
        state=TransferState(raw["state"]),
        started_at=raw["started_at"],
        ended_at=raw["ended_at"],
        outcome=_opt(TransferOutcome, raw["outcome"]),
        room=raw["room"],
    )


def _value(member: StrEnum | None) -> str | None:
    return None if member is None else member.value


def _opt(kind: type[_E], value: str | None) -> _E | None:
    return None if value is None else kind(value)
