"""Recording in the engine (core/recording.py): auto start, API actions, events, the end, snapshots."""

from __future__ import annotations

import dataclasses

from corekit import AGENT, CUSTOMER, RULES, Harness, agent_and_customer, start

from bridgeline.core import snapshot
from bridgeline.core.commands import (
    Hold,
    Mute,
    PauseRecording,
    RecordingFinished,
    ResumeRecording,
    StartRecording,
    StopRecording,
    Unmute,
    WarmTransfer,
)
from bridgeline.core.effects import ControlRecording, RecordingAction
from bridgeline.core.model import EventType
from bridgeline.core.recording import RecordingState

RECORD = dataclasses.replace(RULES, record=True, record_min_member_count=2)


def controls(h: Harness) -> list[tuple[str, RecordingAction, str | None]]:
    return [(e.recording_id, e.action, e.leg_id) for e in h.last if isinstance(e, ControlRecording)]


def test_the_conference_recording_starts_once_the_minimum_is_on_the_line() -> None:
    h = start(("A", AGENT), ("C", CUSTOMER), rules=RECORD)
    h.answer("A")
    assert not h.conf.recordings  # one on the line, two required
    h.answer("C")
    assert controls(h) == [("c1-r1", RecordingAction.START, None)]
    data = h.event(EventType.RECORDING_INITIATED)
    assert data["recording_id"] == "c1-r1"
    assert data["recording_format"] == "wav"
    assert data["started_at"] == h.now


def test_with_a_minimum_of_one_the_first_answer_starts_it() -> None:
    h = start(("A", AGENT), ("C", CUSTOMER), rules=dataclasses.replace(RECORD, record_min_member_count=1))
    h.answer("A")
    assert controls(h) == [("c1-r1", RecordingAction.START, None)]


def test_pause_resume_stop_and_the_completed_event() -> None:
    h = agent_and_customer(RECORD)
    h.do(PauseRecording())
    assert controls(h) == [("c1-r1", RecordingAction.PAUSE, None)]
    assert h.types() == [EventType.RECORDING_PAUSED]
    assert "already paused" in h.refused(PauseRecording())
    h.do(ResumeRecording())
    assert controls(h) == [("c1-r1", RecordingAction.RESUME, None)]
    assert "not paused" in h.refused(ResumeRecording())
    h.do(StopRecording())
    assert controls(h) == [("c1-r1", RecordingAction.STOP, None)]
    assert h.types() == []  # Completed waits for the file
    assert h.conf.recordings[0].state is RecordingState.STOPPING
    h.do(RecordingFinished("c1-r1", duration_ms=4000))
    data = h.event(EventType.RECORDING_COMPLETED)
    assert data["duration_ms"] == 4000 and data["recording_state"] == "completed"
    assert "not being recorded" in h.refused(StopRecording())


def test_a_stopped_auto_recording_is_not_restarted_but_can_be_started_again() -> None:
    h = agent_and_customer(RECORD)
    h.do(StopRecording())
    h.do(Hold("C"))
    assert not controls(h)
    h.do(StartRecording(file_format="mp3"))
    assert controls(h) == [("c1-r2", RecordingAction.START, None)]
    assert h.event(EventType.RECORDING_INITIATED)["recording_format"] == "mp3"
    assert "already being recorded" in h.refused(StartRecording())
    assert "wav or mp3" in h.refused(dataclasses.replace(StartRecording(), member="A", file_format="ogg"))


def test_the_conference_end_stops_it_and_the_file_finishes_afterwards() -> None:
    h = agent_and_customer(RECORD)
    h.hang("A")
    h.hang("C")
    assert not h.conf.live
    assert ("c1-r1", RecordingAction.STOP, None) in controls(h)
    h.do(RecordingFinished("c1-r1", error="disk full: No space left on device"))
    data = h.event(EventType.RECORDING_FAILED)
    assert data["reason"] == "disk full: No space left on device"
    h.do(RecordingFinished("c1-r1", duration_ms=1))  # a second answer changes nothing
    assert h.types() == []


def test_the_recording_hears_the_main_rooms_talkers_only() -> None:
    h = agent_and_customer(RECORD)
    assert h.routing is not None and set(h.routing.recorded) == {h.leg("A"), h.leg("C")}
    h.do(Hold("C"))
    assert h.routing.recorded == (h.leg("A"),)
    h.do(WarmTransfer("B", AGENT, "A"))
    h.answer("B")
    assert h.routing.recorded == ()  # A consults B privately; C is on hold


def test_a_muted_member_is_not_in_the_conference_recording_until_unmuted() -> None:
    h = agent_and_customer(RECORD)
    h.do(Mute("C"))
    assert h.routing is not None and h.routing.recorded == (h.leg("A"),)
    h.do(Unmute("C"))
    assert set(h.routing.recorded) == {h.leg("A"), h.leg("C")}


def test_participant_tracks_start_per_member_and_stop_when_it_leaves() -> None:
    h = start(("A", AGENT), ("C", CUSTOMER), rules=dataclasses.replace(RULES, record_participant_track=True))
    h.answer("A")
    assert controls(h) == [("c1-r1", RecordingAction.START, h.leg("A"))]
    assert h.event(EventType.PARTICIPANT_RECORDING_INITIATED)["member_address"] == "A"
    h.answer("C")
    h.do(PauseRecording(member="C"))
    assert h.event(EventType.PARTICIPANT_RECORDING_PAUSED)["member_address"] == "C"
    h.hang("A")
    assert ("c1-r1", RecordingAction.STOP, None) in controls(h)
    assert "not a member" in h.refused(StartRecording(member="Z"))


def test_recordings_survive_a_snapshot() -> None:
    h = agent_and_customer(RECORD)
    h.do(PauseRecording())
    data = snapshot.dump(h.conf)
    twin = snapshot.load(data)
    assert snapshot.dump(twin) == data
    assert twin.recordings[0].state is RecordingState.PAUSED
    assert twin.rules.record and twin.rules.record_min_member_count == 2
    effects = twin.handle(ResumeRecording(), h.now + 1)
    assert [e.action for e in effects if isinstance(e, ControlRecording)] == [RecordingAction.RESUME]
