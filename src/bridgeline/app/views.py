"""JSON views of conferences and members, shared by the API and the console."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from bridgeline.core.conference import Conference
from bridgeline.core.model import Member
from bridgeline.core.transfers import transfer_data


def plivo_time(ts: float | None) -> str | None:
    """Plivo's timestamp format: `2018-11-03 19:32:33.210714+00:00`."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(sep=" ")


def member_view(
    conf: Conference, member: Member, *, phlo_id: str, node_id: str, plan: dict[str, Any] | None = None
) -> dict[str, Any]:
    plan = conf.audio_plan() if plan is None else plan
    listening = plan.get(member.address)
    transfer = conf.pending_transfer_by(member.address) or conf.pending_transfer_to(member.address)
    return {
        "member_address": member.address,
        "role": member.role.value,
        "status": member.status.value,
        "mute": member.muted,
        "hears": list(listening.hears) if listening else [],
        "music": listening.music.value if listening and listening.music else None,
        "room": member.room,
        "mpc_uuid": conf.conference_id,
        "phlo_id": phlo_id,
        "node_id": node_id,
        "call_uuid": member.leg_id,
        "ringing": member.ringing,
        "answered_by": member.answered_by.value if member.answered_by else None,
        "dialed_on": plivo_time(member.dialed_at),
        "connected_on": plivo_time(member.connected_at),
        "left_on": plivo_time(member.left_at),
        "leave_reason": member.leave_reason.value if member.leave_reason else None,
        "transfer": transfer_data(transfer) if transfer else None,
    }


def conference_view(conf: Conference, *, phlo_id: str, node_id: str, run_id: str | None) -> dict[str, Any]:
    plan = conf.audio_plan()
    return {
        "mpc_uuid": conf.conference_id,
        "phlo_id": phlo_id,
        "node_id": node_id,
        "phlo_run_id": run_id,
        "status": conf.phase.value,
        "started_on": plivo_time(conf.started_at),
        "ended_on": plivo_time(conf.ended_at),
        "end_reason": conf.end_reason.value if conf.end_reason else None,
        "max_participants": conf.rules.max_participants,
        "members": [
            member_view(conf, m, phlo_id=phlo_id, node_id=node_id, plan=plan) for m in conf.members.values()
        ],
        "transfers": [transfer_data(t) for t in conf.transfers],
        "queued": [asdict(q) for q in conf.queued],
        "recording": conference_recording(conf),
    }


def conference_recording(conf: Conference) -> dict[str, Any] | None:
    """The newest conference recording (not a participant track): its id, state and format."""
    for recording in reversed(conf.recordings):
        if recording.member is None:
            return {
                "recording_id": recording.recording_id,
                "state": recording.state.value,
                "format": recording.file_format.value,
            }
    return None
