"""Recording in the conference engine: which recordings run, and the events and effects they cause.

Pure, like the rest of the core. The engine decides; the app carries `ControlRecording` effects out
(the carrier taps the media, a writer thread writes the file) and answers each stop with
`RecordingFinished`, which is accepted even after the conference has ended, because a file is
finished only once its writer has flushed it.

What is recorded (docs/semantics.md "Recording"):
- the conference recording is the main room's mix: every member of the main room who talks
  (`Member.talking`); a held member, hold and wait music, a voicemail drop and a warm transfer's
  private consultation are not in it;
- a participant track is what that member says.
Pausing keeps the timeline: the tap goes on writing silence, so the file's length is the wall clock.

Segments: a process that adopts a conference (restart, takeover, hand-off) cannot write the files
the previous one opened, so `RecorderChanged` ends each active recording there (its file is finished
by the process that wrote it) and starts a new one, `previous_recording_id` naming the segment before.

Auto start: with `record` on, the conference recording starts once `record_min_member_count`
members are on the line (answered, in the main room); with `record_participant_track` on, each
member's track starts when it answers. Each starts once: stopped through the API, it stays stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bridgeline.core.commands import (
    PauseRecording,
    RecordingCommand,
    RecordingFinished,
    ResumeRecording,
    StartRecording,
    StopRecording,
)
from bridgeline.core.effects import ControlRecording, RecordingAction
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import MAIN_ROOM, EventType, Member

if TYPE_CHECKING:
    from bridgeline.core.floor import Floor

CONFERENCE_MARK = ""  # the auto-start mark of the conference recording (participants: their address)


class RecordFormat(StrEnum):
    WAV = "wav"
    MP3 = "mp3"


class RecordingKind(StrEnum):
    CONFERENCE = "conference"
    PARTICIPANT = "participant"


class RecordingState(StrEnum):
    RECORDING = "recording"
    PAUSED = "paused"
    STOPPING = "stopping"  # stopped; its file is being finished
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (RecordingState.RECORDING, RecordingState.PAUSED)


@dataclass(slots=True)
class Recording:
    recording_id: str
    kind: RecordingKind
    member: str | None  # a participant track's member address
    leg_id: str | None  # ... and its leg
    file_format: RecordFormat
    state: RecordingState
    started_at: float
    ended_at: float | None = None
    duration_ms: int | None = None
    failure: str | None = None
    previous_recording_id: str | None = None  # the segment this one continues (after a restart)


_EVENTS = {
    RecordingKind.CONFERENCE: {
        "initiated": EventType.RECORDING_INITIATED,
        "paused": EventType.RECORDING_PAUSED,
        "resumed": EventType.RECORDING_RESUMED,
        "completed": EventType.RECORDING_COMPLETED,
        "failed": EventType.RECORDING_FAILED,
    },
    RecordingKind.PARTICIPANT: {
        "initiated": EventType.PARTICIPANT_RECORDING_INITIATED,
        "paused": EventType.PARTICIPANT_RECORDING_PAUSED,
        "resumed": EventType.PARTICIPANT_RECORDING_RESUMED,
        "completed": EventType.PARTICIPANT_RECORDING_COMPLETED,
        "failed": EventType.PARTICIPANT_RECORDING_FAILED,
    },
}


def recorded_legs(members: list[Member]) -> tuple[str, ...]:
    """The legs the conference recording hears: the main room's talkers."""
    return tuple(m.leg_id for m in members if m.room == MAIN_ROOM and m.talking)


def active(floor: Floor, member: str | None) -> Recording | None:
    return next(
        (r for r in floor.recordings if r.member == member and r.state.active),
        None,
    )


def running(floor: Floor) -> list[Recording]:
    """Recordings whose file is still open (active or being finished)."""
    return [r for r in floor.recordings if r.state.active or r.state is RecordingState.STOPPING]


def handle_command(floor: Floor, command: RecordingCommand, now: float) -> None:
    """An API action on a recording; ActionRefused (nothing changed) when it cannot apply."""
    member: Member | None = None
    if command.member is not None:
        member = floor.require_member(command.member)
    current = active(floor, command.member)
    what = "the conference" if member is None else member.address
    if isinstance(command, StartRecording):
        if current is not None:
            raise ActionRefused(f"{what} is already being recorded ({current.recording_id})")
        if member is not None and not member.answered:
            raise ActionRefused(f"cannot record {member.address}: the member has not answered yet")
        file_format = _format(command.file_format or floor.rules.record_file_format)
        start(floor, member, file_format, now)
        return
    if current is None:
        raise ActionRefused(f"{what} is not being recorded")
    if isinstance(command, StopRecording):
        stop(floor, current, now)
    elif isinstance(command, PauseRecording):
        if current.state is RecordingState.PAUSED:
            raise ActionRefused(f"the recording of {what} is already paused")
        current.state = RecordingState.PAUSED
        floor.effects.append(ControlRecording(current.recording_id, RecordingAction.PAUSE))
        _emit(floor, current, "paused", now)
    elif isinstance(command, ResumeRecording):
        if current.state is not RecordingState.PAUSED:
            raise ActionRefused(f"the recording of {what} is not paused")
        current.state = RecordingState.RECORDING
        floor.effects.append(ControlRecording(current.recording_id, RecordingAction.RESUME))
        _emit(floor, current, "resumed", now)


def start(
    floor: Floor,
    member: Member | None,
    file_format: RecordFormat,
    now: float,
    previous_recording_id: str | None = None,
) -> Recording:
    floor.recording_counter += 1
    recording = Recording(
        recording_id=f"{floor.conference_id}-r{floor.recording_counter}",
        kind=RecordingKind.CONFERENCE if member is None else RecordingKind.PARTICIPANT,
        member=None if member is None else member.address,
        leg_id=None if member is None else member.leg_id,
        file_format=file_format,
        state=RecordingState.RECORDING,
        started_at=now,
        previous_recording_id=previous_recording_id,
    )
    floor.recordings.append(recording)
    floor.auto_recorded.add(CONFERENCE_MARK if member is None else member.address)
    floor.effects.append(
        ControlRecording(
            recording.recording_id,
            RecordingAction.START,
            recording.leg_id,
            file_format.value,
            recording.member,
            previous_recording_id,
        )
    )
    _emit(floor, recording, "initiated", now)
    return recording


def stop(floor: Floor, recording: Recording, now: float) -> None:
    recording.state = RecordingState.STOPPING
    recording.ended_at = now
    floor.effects.append(ControlRecording(recording.recording_id, RecordingAction.STOP))


def recorder_changed(floor: Floor, now: float) -> None:
    """A new process records this conference: each active recording becomes a finished segment
    (STOPPING until its writer's RecordingFinished) and goes on in a new one, paused if it was."""
    for previous in [r for r in floor.recordings if r.state.active]:
        was_paused = previous.state is RecordingState.PAUSED
        stop(floor, previous, now)
        member = None if previous.member is None else floor.live_member(previous.member)
        if previous.member is not None and (member is None or member.leg_id != previous.leg_id):
            continue  # the member left meanwhile: nothing to go on with
        segment = start(floor, member, previous.file_format, now, previous.recording_id)
        if was_paused:
            segment.state = RecordingState.PAUSED
            floor.effects.append(ControlRecording(segment.recording_id, RecordingAction.PAUSE))
            _emit(floor, segment, "paused", now)


def finished(floor: Floor, signal: RecordingFinished, now: float) -> None:
    """The file is closed: Completed, or Failed with the reason. Unknown or already finished: ignored."""
    recording = next((r for r in floor.recordings if r.recording_id == signal.recording_id), None)
    if recording is None or recording.state in (RecordingState.COMPLETED, RecordingState.FAILED):
        return
    if recording.ended_at is None:
        recording.ended_at = now  # failed while running (disk full, storage down)
    recording.duration_ms = signal.duration_ms
    if signal.error is None:
        recording.state = RecordingState.COMPLETED
        _emit(floor, recording, "completed", now)
    else:
        recording.state, recording.failure = RecordingState.FAILED, signal.error
        _emit(floor, recording, "failed", now)


def after_input(floor: Floor, now: float) -> None:
    """Auto starts, and stops for members gone (run after every input of a live conference)."""
    rules = floor.rules
    for recording in floor.recordings:
        if recording.state.active and recording.member is not None:
            member = floor.live_member(recording.member)
            if member is None or member.leg_id != recording.leg_id:
                stop(floor, recording, now)
    on_line = [m for m in floor.members.values() if m.answered and m.room == MAIN_ROOM]
    if (
        rules.record
        and CONFERENCE_MARK not in floor.auto_recorded
        and len(on_line) >= rules.record_min_member_count
    ):
        start(floor, None, _format(rules.record_file_format), now)
    if rules.record_participant_track:
        for member in floor.members.values():
            if member.answered and member.address not in floor.auto_recorded:
                start(floor, member, _format(rules.record_file_format), now)


def conference_ended(floor: Floor, now: float) -> None:
    for recording in floor.recordings:
        if recording.state.active:
            stop(floor, recording, now)


def _format(value: str) -> RecordFormat:
    try:
        return RecordFormat(value)
    except ValueError:
        raise ActionRefused(f"record_file_format must be wav or mp3, not {value[:20]!r}") from None


def _emit(floor: Floor, recording: Recording, what: str, now: float) -> None:
    floor.emit(now, _EVENTS[recording.kind][what], recording_data(recording))


def recording_data(recording: Recording) -> dict[str, Any]:
    """An event's data: the recording as it is now (the app adds URLs and Plivo's field names)."""
    data: dict[str, Any] = {
        "recording_id": recording.recording_id,
        "recording_kind": recording.kind.value,
        "recording_format": recording.file_format.value,
        "recording_state": recording.state.value,
        "started_at": recording.started_at,
        "ended_at": recording.ended_at,
        "duration_ms": recording.duration_ms,
    }
    if recording.member is not None:
        data["member_address"] = recording.member
        data["leg_id"] = recording.leg_id
    if recording.failure is not None:
        data["reason"] = recording.failure
    if recording.previous_recording_id is not None:
        data["previous_recording_id"] = recording.previous_recording_id
    return data


def dump(recording: Recording) -> dict[str, Any]:
    return {
        "recording_id": recording.recording_id,
        "kind": recording.kind.value,
        "member": recording.member,
        "leg_id": recording.leg_id,
        "file_format": recording.file_format.value,
        "state": recording.state.value,
        "started_at": recording.started_at,
        "ended_at": recording.ended_at,
        "duration_ms": recording.duration_ms,
        "failure": recording.failure,
        "previous_recording_id": recording.previous_recording_id,
    }


def load(raw: dict[str, Any]) -> Recording:
    return Recording(
        recording_id=raw["recording_id"],
        kind=RecordingKind(raw["kind"]),
        member=raw["member"],
        leg_id=raw["leg_id"],
        file_format=RecordFormat(raw["file_format"]),
        state=RecordingState(raw["state"]),
        started_at=raw["started_at"],
        ended_at=raw["ended_at"],
        duration_ms=raw["duration_ms"],
        failure=raw["failure"],
        previous_recording_id=raw.get("previous_recording_id"),  # absent in older snapshots
    )
