"""What the conference service keeps per live conference, and the records it derives from one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridgeline.app.records import EventRecord, RunEnd, RunStatus
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


Listener = Callable[[ConferenceMeta, Conference, list[EventRecord]], None]


def rules_for(settings: NodeSettings) -> ConferenceRules:
    return ConferenceRules(
        max_participants=settings.max_participants,
        max_duration=float(settings.max_duration),
        ring_timeout=float(settings.ring_timeout),
        voicemail_configured=settings.voicemail_message is not None,
    )


def run_end_of(conf: Conference, run_id: str, at: float) -> RunEnd:
    """A run ends with its conference: completed if anybody was connected, failed otherwise."""
    connected = any(m.connected_at is not None for m in conf.members.values())
    reason = conf.end_reason.value if conf.end_reason else "ended"
    status = RunStatus.COMPLETED if connected else RunStatus.FAILED
    return RunEnd(run_id, status, f"; conference ended ({reason})", at)


def callback_params(meta: ConferenceMeta, event: EventRecord) -> dict[str, str]:
    """The form fields POSTed to the node's callback URL for one event."""
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
    return params


def _form_value(value: object) -> str:
    """A form field's text: JSON's spelling for booleans (`mute=true`), not Python's."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
