"""Recording taps in the MediaRuntime (routes.py): what a tap records, per tick, on a virtual clock."""

from __future__ import annotations

import numpy as np
import pytest
from media_sim import G722, Sim, dominant_freq, level_at, rms

from bridgeline.core.effects import LegAudio
from bridgeline.core.model import Music
from bridgeline.media.player import ToneSource


def frames_of(sim: Sim, recording_id: str) -> np.ndarray:
    sim.runtime.flush_taps()  # the frames still in the taps' block too
    pcm = b"".join(data for rid, data in sim.runtime.pop_recorded() if rid == recording_id)
    return np.frombuffer(pcm, dtype="<i2")


def drop_recorded(sim: Sim) -> None:
    sim.runtime.flush_taps()
    sim.runtime.pop_recorded()


def three_party(sim: Sim, *, wide: bool = False) -> None:
    sim.join("a", sim.peer(700, G722 if wide else 0))
    sim.join("b", sim.peer(1300))
    sim.join("c", sim.peer(2100))
    hold = LegAudio("c", (), Music.CUSTOMER_HOLD)
    routes = [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None), hold]
    sim.runtime.set_routes("c1", routes, {Music.CUSTOMER_HOLD: ToneSource(400)})


@pytest.mark.parametrize("wide", [False, True], ids=["g711", "with a g722 leg"])
def test_a_conference_tap_records_the_talkers_mixed_and_not_the_held_member(wide: bool) -> None:
    sim = Sim()
    three_party(sim, wide=wide)
    sim.runtime.set_tap("c1", "r1", ["a", "b"])  # the main room's talkers; c is on hold
    sim.settle(0.5)
    drop_recorded(sim)
    sim.run(1.0)
    pcm = frames_of(sim, "r1")
    assert len(pcm) == 8000  # one 8 kHz frame per tick: the file's length is the clock's
    assert level_at(pcm, 700) > 0.2 and level_at(pcm, 1300) > 0.2
    assert level_at(pcm, 2100) < 0.02  # the held member
    assert level_at(pcm, 400) < 0.02  # hold music is not recorded


def test_a_participant_tap_records_only_its_leg_and_a_removed_tap_stops() -> None:
    sim = Sim()
    three_party(sim)
    sim.runtime.set_tap("c1", "r2", ["b"])
    sim.settle(0.5)
    drop_recorded(sim)
    sim.run(0.5)
    pcm = frames_of(sim, "r2")
    assert dominant_freq(pcm) == pytest.approx(1300, abs=4)
    assert level_at(pcm, 700) < 0.02
    sim.runtime.remove_tap("r2")
    sim.run(0.2)
    assert sim.runtime.pop_recorded() == []


def test_a_tap_hearing_nobody_records_silence_and_moves_with_the_routing() -> None:
    sim = Sim()
    three_party(sim)
    sim.runtime.set_tap("c1", "r1", [])
    sim.settle(0.3)
    drop_recorded(sim)
    sim.run(0.2)
    assert rms(frames_of(sim, "r1")) == 0
    sim.runtime.set_tap("c1", "r1", ["c"])  # c unheld: the tap follows
    sim.settle(0.3)
    drop_recorded(sim)
    sim.run(0.5)
    assert dominant_freq(frames_of(sim, "r1")) == pytest.approx(2100, abs=4)


def chunk_frames(recorded: list[tuple[str, bytes]], recording_id: str) -> list[int]:
    return [len(pcm) // 320 for rid, pcm in recorded if rid == recording_id]


def test_a_tap_comes_in_200_ms_chunks_and_a_removed_one_hands_out_its_last_frames() -> None:
    sim = Sim()
    three_party(sim)
    sim.runtime.set_tap("c1", "r1", ["a", "b"])
    sim.settle(0.3)
    drop_recorded(sim)
    sim.run(0.46)  # 23 ticks
    assert chunk_frames(sim.runtime.pop_recorded(), "r1") == [10, 10]
    sim.runtime.remove_tap("r1")  # the 3 ticks of the unfinished block are not lost
    assert chunk_frames(sim.runtime.pop_recorded(), "r1") == [3]


def test_a_flush_splits_the_chunk_where_it_was_asked() -> None:
    sim = Sim()
    three_party(sim)
    sim.runtime.set_tap("c1", "r1", ["b"])
    sim.settle(0.3)
    drop_recorded(sim)
    sim.run(0.08)
    sim.runtime.flush_tap("r1")  # e.g. a pause: what came before it is handed out now
    assert chunk_frames(sim.runtime.pop_recorded(), "r1") == [4]
    sim.run(0.2)
    assert chunk_frames(sim.runtime.pop_recorded(), "r1") == [6]


def test_no_tick_is_lost_or_doubled_while_taps_and_routes_change_mid_block() -> None:
    sim = Sim()
    three_party(sim)
    sim.runtime.set_tap("c1", "r1", ["a", "b"])
    sim.settle(0.3)
    drop_recorded(sim)
    ticks = sim.runtime.tick_stats.ticks
    sim.run(0.14)
    sim.runtime.set_tap("c1", "r2", ["b"])  # a participant track joins mid-block
    sim.run(0.06)
    hold = LegAudio("c", (), Music.CUSTOMER_HOLD)
    sim.runtime.set_routes("c1", [LegAudio("a", (), None), LegAudio("b", ("a",), None), hold], {})
    sim.runtime.set_tap("c1", "r1", ["b"])  # the main room moves
    sim.run(0.1)
    sim.join("w", sim.peer(900, G722))  # a wideband leg: the conference is mixed at 16 kHz now
    routes = [
        LegAudio("a", ("b", "w"), None),
        LegAudio("b", ("a", "w"), None),
        LegAudio("w", ("a", "b"), None),
    ]
    sim.runtime.set_routes("c1", routes, {})
    sim.runtime.set_tap("c1", "r1", ["a", "b", "w"])
    sim.run(0.12)
    sim.runtime.remove_tap("r2")
    sim.run(0.06)
    recorded = sim.runtime.pop_recorded()
    sim.runtime.flush_taps()
    recorded += sim.runtime.pop_recorded()
    ran = sim.runtime.tick_stats.ticks - ticks
    assert sum(chunk_frames(recorded, "r1")) == ran
    assert sum(chunk_frames(recorded, "r2")) == 3 + 5 + 6  # tapped from its set_tap to its remove_tap


@pytest.mark.parametrize("wide", [False, True], ids=["g711", "with a g722 leg"])
def test_ticks_skipped_by_a_stalled_thread_are_silence_in_the_recording(wide: bool) -> None:
    sim = Sim()
    three_party(sim, wide=wide)
    sim.runtime.set_tap("c1", "r1", ["a", "b"])
    sim.settle(0.5)
    drop_recorded(sim)
    sim.run(0.4)  # 20 ticks of both voices
    skipped_before = sim.runtime.tick_stats.skipped
    sim.now = round(sim.now + 0.5, 6)  # the thread stalls for half a second: 25 ticks are skipped
    sim.run(0.4)
    skipped = sim.runtime.tick_stats.skipped - skipped_before
    assert skipped >= 20
    pcm = frames_of(sim, "r1")
    ticks = len(pcm) // 160
    assert ticks == 20 + skipped + 20  # every tick of the wall clock is in the file, once
    gap = pcm[20 * 160 : (20 + skipped) * 160]
    assert rms(gap) == 0  # the stall is silence, where it happened
    assert level_at(pcm[: 20 * 160], 700) > 0.2 and level_at(pcm[(21 + skipped) * 160 :], 1300) > 0.2
