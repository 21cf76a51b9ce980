"""What the conference service keeps per live conference, and the records it derives from one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridgeline.app.records import ConferenceRecord, EventRecord, RunEnd, RunStatus
from bridgeline.core import snapshot
from bridgeline.core.conference import Conference, ConferenceRules
from bridgeline.phlo.definition import NodeSettings


class NotFound(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class ConferenceMeta:
    conference_id: str
    auth_id: str
    phlo_id: str
    node_id: str
    run_id: str | None
    settings: NodeSettings
    created_at: float
    # The settings as stored in every snapshot; they never change, so they are dumped once.
    settings_data: dict[str, object] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings_data", self.settings.model_dump())


@dataclass(slots=True)
class LiveConference:
    meta: ConferenceMeta
    conf: Conference
    last_state: dict[str, object]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timer: asyncio.TimerHandle | None = None
    timer_deadline: float | None = None  # what `timer` was armed for
    addresses: set[str] = field(default_factory=set)
    # The addresses the store holds for it (conference_addresses): what the next commit claims or releases
    # is the difference. Empty after a takeover, so the new owner's first commit claims them all again.
    committed_addresses: set[str] = field(default_factory=set)
    moved: bool = False  # released to another node: inputs still queued on the lock are told so
    # Recordings whose file an earlier process holds (open or stopping when this one adopted it): their
    # end comes from that process's row, read by app/segments.py, or is declared lost.
    inherited_files: frozenset[str] = frozenset()


def live_from_record(record: ConferenceRecord) -> LiveConference:
    """A conference as its stored snapshot holds it (a restart, a takeover, a crashed recording's end)."""
    meta = ConferenceMeta(
        record.conference_id,
        record.auth_id,
        record.phlo_id,
        record.node_id,
        record.run_id,
        NodeSettings.model_validate(record.state["settings"]),
        record.created_at,
    )
    return LiveConference(meta, snapshot.load(record.state["core"]), last_state=record.state)


Listener = Callable[[ConferenceMeta, Conference, list[EventRecord]], None]


def rules_for(settings: NodeSettings) -> ConferenceRules:
    return ConferenceRules(
        max_participants=settings.max_participants,
        max_duration=float(settings.max_duration),
        ring_timeout=float(settings.ring_timeout),
        voicemail_configured=settings.voicemail_message is not None,
        record=settings.record,
        record_participant_track=settings.record_participant_track,
        record_file_format=settings.record_file_format,
        record_min_member_count=settings.record_min_member_count,
    )


def run_end_of(conf: Conference, run_id: str, at: float) -> RunEnd:
    """A run ends with its conference: completed if anybody was connected, failed otherwise."""
    connected = any(m.connected_at is not None for m in conf.members.values())
    reason = conf.end_reason.value if conf.end_reason else "ended"
    status = RunStatus.COMPLETED if connected else RunStatus.FAILED
    return RunEnd(run_id, status, f"; conference ended ({reason})", at)


RECORDING_EVENTS = frozenset(
    f"{prefix}Recording{what}"
    for prefix in ("MPC", "Participant")
    for what in ("Initiated", "Paused", "Resumed", "Completed", "Failed")
)


def _iso(at: object) -> str:
    return (
        ""
        if not isinstance(at, int | float)
        else datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    )


def recording_urls(public_url: str, recording_id: str) -> tuple[str, str]:
    """(the file's download URL, the recording resource's URL) as the recordings API serves them."""
    resource = f"{public_url.rstrip('/')}/v1/recordings/{recording_id}"
    return f"{resource}/download", resource


def recording_params(meta: ConferenceMeta, event: EventRecord, public_url: str) -> dict[str, str]:
    """Plivo's fields of a recording event (core/recording.py's data, renamed and completed)."""
    data = event.data
    download, resource = recording_urls(public_url, str(data["recording_id"]))
    duration_ms = data.get("duration_ms")
    params = {
        "EventName": event.type,
        "EventTimestamp": _iso(event.at),
        "MPCName": meta.node_id,
        "MPCUUID": meta.conference_id,
        "SequenceNumber": str(event.seq),
        "RecordingUUID": str(data["recording_id"]),
        "RecordingFormat": str(data["recording_format"]),
        "RecordingStartTime": _iso(data.get("started_at")),
        "RecordingEndTime": _iso(data.get("ended_at")),
        "RecordingDuration": "" if duration_ms is None else str(round(int(duration_ms) / 1000)),
        "RecordingDurationMs": "" if duration_ms is None else str(duration_ms),
        "RecordingURL": download,
        "RecordingResourceURL": resource,
    }
    if data.get("member_address") is not None:
        params["MemberID"] = str(data["member_address"])
    if data.get("reason") is not None:
        params["FailureReason"] = str(data["reason"])
    if data.get("previous_recording_id") is not None:  # Bridgeline's: the segment this one continues
        params["PreviousRecordingUUID"] = str(data["previous_recording_id"])
    return params


def callback_params(meta: ConferenceMeta, event: EventRecord, public_url: str = "") -> dict[str, str]:
    """The form fields POSTed to the node's callback URL for one event (a recording event also
    carries Plivo's Recording* fields)."""
    params = {
        "event": event.type,
        "sequence": str(event.seq),
        "timestamp": datetime.fromtimestamp(event.at, UTC).isoformat(timespec="milliseconds"),
        "mpc_uuid": meta.conference_id,
        "phlo_id": meta.phlo_id,
        "node_id": meta.node_id,
        "phlo_run_id": meta.run_id or "",
    }
    for key, value in event.data.items():
        params[key] = _form_value(value)
    if event.type in RECORDING_EVENTS:
        params.update(recording_params(meta, event, public_url))
    return params


def _form_value(value: object) -> str:
    """A form field's text: JSON's spelling for booleans (`mute=true`), not Python's."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
