"""Recording segments (core/recording.py `recorder_changed`): an adopted conference goes on recording."""

from __future__ import annotations

import dataclasses

from corekit import AGENT, CUSTOMER, RULES, agent_and_customer, start

from bridgeline.core import snapshot
from bridgeline.core.commands import (
    PauseRecording,
    RecorderChanged,
    RecordingFinished,
    StartRecording,
    StopRecording,
)
from bridgeline.core.effects import ControlRecording, RecordingAction
from bridgeline.core.model import EventType
from bridgeline.core.recording import RecordingKind, RecordingState

RECORD = dataclasses.replace(RULES, record=True, record_min_member_count=2)


def test_an_active_recording_ends_as_a_segment_and_goes_on_in_a_new_one() -> None:
    h = agent_and_customer(dataclasses.replace(RECORD, record_file_format="mp3"))
    effects = h.do(RecorderChanged())
    controls = [e for e in effects if isinstance(e, ControlRecording)]
    assert [(e.recording_id, e.action) for e in controls] == [
        ("c1-r1", RecordingAction.STOP),
        ("c1-r2", RecordingAction.START),
    ]
    assert controls[1].file_format == "mp3"
    old, new = h.conf.recordings
    assert old.state is RecordingState.STOPPING and old.ended_at == h.now
    assert new.state is RecordingState.RECORDING and new.previous_recording_id == "c1-r1"
    assert h.types() == [EventType.RECORDING_INITIATED]  # the old one's Completed waits for its file
    data = h.event(EventType.RECORDING_INITIATED)
    assert data["recording_id"] == "c1-r2" and data["previous_recording_id"] == "c1-r1"
    h.do(RecordingFinished("c1-r1", duration_ms=3000))
    completed = h.event(EventType.RECORDING_COMPLETED)
    assert completed["recording_id"] == "c1-r1" and "previous_recording_id" not in completed
    assert "already being recorded" in h.refused(StartRecording())  # the new segment is the active one


def test_a_paused_recording_goes_on_paused() -> None:
    h = agent_and_customer(RECORD)
    h.do(PauseRecording())
    effects = h.do(RecorderChanged())
    assert [(e.recording_id, e.action) for e in effects if isinstance(e, ControlRecording)] == [
        ("c1-r1", RecordingAction.STOP),
        ("c1-r2", RecordingAction.START),
        ("c1-r2", RecordingAction.PAUSE),
    ]
    assert h.types() == [EventType.RECORDING_INITIATED, EventType.RECORDING_PAUSED]
    assert h.conf.recordings[-1].state is RecordingState.PAUSED
    assert "already paused" in h.refused(PauseRecording())


def test_participant_tracks_go_on_for_each_member_still_on_the_line() -> None:
    h = start(("A", AGENT), ("C", CUSTOMER), rules=dataclasses.replace(RULES, record_participant_track=True))
    h.answer("A")
    h.answer("C")
    h.do(StopRecording(member="C"))  # stopped: finished, not continued
    h.do(RecorderChanged())
    segments = [r for r in h.conf.recordings if r.previous_recording_id is not None]
    assert [(r.kind, r.member, r.leg_id, r.previous_recording_id) for r in segments] == [
        (RecordingKind.PARTICIPANT, "A", h.leg("A"), "c1-r1")
    ]
    data = h.event(EventType.PARTICIPANT_RECORDING_INITIATED)
    assert data["member_address"] == "A" and data["previous_recording_id"] == "c1-r1"


def test_nothing_recorded_nothing_changes_and_the_segment_link_survives_a_snapshot() -> None:
    h = agent_and_customer(RULES)
    assert not h.do(RecorderChanged())
    h = agent_and_customer(RECORD)
    h.do(RecorderChanged())
    twin = snapshot.load(snapshot.dump(h.conf))
    assert twin.recordings[-1].previous_recording_id == "c1-r1"
    raw = snapshot.dump(h.conf)
    for item in raw["recordings"]:
        del item["previous_recording_id"]  # a snapshot written before segments existed
    assert snapshot.load(raw).recordings[-1].previous_recording_id is None


def test_an_ended_conference_refuses_it() -> None:
    h = agent_and_customer(RECORD)
    h.hang("A")
    h.hang("C")
    assert "ended" in h.refused(RecorderChanged())
