"""RecordingWriters: WAV and MP3 files written on the writer thread, failures reported once, never raised."""

from __future__ import annotations

import threading
import wave
from pathlib import Path

import numpy as np
import pytest
from recordkit import Finished, decode, frames, peak_hz, tone

from bridgeline.adapters.recordings import (
    QUEUE_FULL,
    TOO_LONG,
    RecordingFormat,
    RecordingWriters,
    WriterSettings,
    find_unfinished,
    part_path,
)


def record(
    writers: RecordingWriters, rid: str, path: Path, fmt: RecordingFormat, pcm: bytes, **kw: int
) -> None:
    rate, channels = kw.get("rate", 8000), kw.get("channels", 1)
    writers.open(rid, path, fmt, rate, channels)
    for frame in frames(pcm, rate, channels):
        writers.write(rid, frame)
    writers.close(rid)


def test_a_wav_recording_holds_every_sample_written(tmp_path: Path) -> None:
    finished = Finished()
    writers = RecordingWriters(finished, WriterSettings(header_interval_s=0.5))
    pcm = tone(440, 3.0)
    path = tmp_path / "acct" / "rec1.wav"
    record(writers, "rec1", path, RecordingFormat.WAV, pcm)
    info, error = finished.wait("rec1")
    writers.stop()
    assert error is None and info is not None
    assert (info.path, info.format, info.duration_ms) == (path, RecordingFormat.WAV, 3000)
    assert (info.sample_rate, info.channels, info.size_bytes) == (8000, 1, 44 + len(pcm))
    assert path.stat().st_size == info.size_bytes and not part_path(path).exists()
    with wave.open(str(path)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (8000, 1, 2)
        assert reader.readframes(reader.getnframes()) == pcm
    assert finished.threads == {"recording-writer"}


def test_a_stereo_wideband_wav_keeps_its_layout(tmp_path: Path) -> None:
    finished = Finished()
    writers = RecordingWriters(finished)
    pcm = tone(1000, 1.0, rate=16000, channels=2)
    record(writers, "st", tmp_path / "st.wav", RecordingFormat.WAV, pcm, rate=16000, channels=2)
    info, _ = finished.wait("st")
    writers.stop()
    assert info is not None and (info.sample_rate, info.channels, info.duration_ms) == (16000, 2, 1000)
    with wave.open(str(info.path)) as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getnframes()) == (16000, 2, 16000)


def test_an_mp3_recording_decodes_to_the_tone_that_was_recorded(tmp_path: Path) -> None:
    finished = Finished()
    writers = RecordingWriters(finished, WriterSettings(mp3_bitrate_kbps=32))
    record(writers, "m1", tmp_path / "m1.mp3", RecordingFormat.MP3, tone(440, 2.0))
    info, error = finished.wait("m1")
    writers.stop()
    assert error is None and info is not None
    assert (info.format, info.duration_ms, info.sample_rate, info.channels) == (
        RecordingFormat.MP3,
        2000,
        8000,
        1,
    )
    data = info.path.read_bytes()
    assert len(data) == info.size_bytes
    # 32 kbit/s for 2 s is 8000 bytes of frames, give or take LAME's padding frames
    assert 7000 < len(data) < 10000
    samples = decode(data)
    assert len(samples) >= 2 * 8000
    assert abs(peak_hz(samples[800:15200], 8000) - 440) < 10


def held_writer(tmp_path: Path, queue_frames: int) -> tuple[RecordingWriters, Finished, threading.Event]:
    """Writers whose thread is held inside another recording's on_finished until `release` is set, so
    nothing is taken from the queue meanwhile; "victim" is open, for the test to fill."""
    release = threading.Event()
    finished = Finished()

    def on_finished(rid: str, info: object, error: str | None) -> None:
        finished(rid, info, error)  # type: ignore[arg-type]
        if rid == "blocker":
            release.wait(20)

    writers = RecordingWriters(on_finished, WriterSettings(queue_frames=queue_frames))
    writers.open("blocker", tmp_path / "blocker.wav", RecordingFormat.WAV, 8000, 1)
    writers.open("victim", tmp_path / "victim.wav", RecordingFormat.WAV, 8000, 1)
    writers.close("blocker")
    finished.wait("blocker")
    return writers, finished, release


def test_a_full_queue_fails_that_recording_only_and_reports_it_once(tmp_path: Path) -> None:
    writers, finished, release = held_writer(tmp_path, queue_frames=3)
    for frame in frames(tone(300, 0.2)):  # 10 frames: 3 fit
        writers.write("victim", frame)
    writers.close("victim")
    release.set()
    info, error = finished.wait("victim")
    writers.stop()
    assert (info, error) == (None, QUEUE_FULL)
    assert finished.count("victim") == 1
    assert (tmp_path / "victim.wav").exists()  # what was taken before the failure is kept, playable
    with wave.open(str(tmp_path / "victim.wav")) as reader:
        assert reader.getnframes() <= 3 * 160


@pytest.mark.parametrize("fmt", [RecordingFormat.WAV, RecordingFormat.MP3])
def test_chunks_of_several_frames_make_the_same_file_as_frame_by_frame_writes(
    tmp_path: Path, fmt: RecordingFormat
) -> None:
    # The media runtime hands a chunk of up to 10 frames per recording; chunk sizes vary at a flush.
    finished = Finished()
    writers = RecordingWriters(finished, WriterSettings(header_interval_s=0.5))
    pcm = tone(700, 2.0)
    one_by_one = frames(pcm)
    record(writers, "frames", tmp_path / f"frames.{fmt.value}", fmt, pcm)
    writers.open("chunks", tmp_path / f"chunks.{fmt.value}", fmt, 8000, 1)
    sizes, at = [10, 3, 10, 1, 7, 10, 10, 49], 0
    for size in sizes:
        writers.write("chunks", b"".join(one_by_one[at : at + size]))
        at += size
    assert at == len(one_by_one)
    writers.close("chunks")
    by_frame, by_chunk = finished.wait("frames"), finished.wait("chunks")
    writers.stop()
    assert by_frame[1] is None and by_chunk[1] is None
    assert by_frame[0] is not None and by_chunk[0] is not None
    assert by_chunk[0].duration_ms == by_frame[0].duration_ms == 2000
    if fmt is RecordingFormat.WAV:  # byte for byte (the encoder's frames may group differently)
        assert by_chunk[0].path.read_bytes() == by_frame[0].path.read_bytes()
    else:
        assert abs(peak_hz(decode(by_chunk[0].path.read_bytes())[800:15200], 8000) - 700) < 10


def test_the_queue_limit_counts_audio_not_writes(tmp_path: Path) -> None:
    # queue_frames is 20 ms frames of audio waiting: chunks of 10 frames fill it as fast as frames do.
    writers, finished, release = held_writer(tmp_path, queue_frames=25)
    chunk = b"".join(frames(tone(300, 0.2)))  # 10 frames
    for _ in range(4):  # 30 frames fit under 25 (the third chunk starts at 20), the fourth does not
        writers.write("victim", chunk)
    writers.close("victim")
    release.set()
    info, error = finished.wait("victim")
    writers.stop()
    assert (info, error) == (None, QUEUE_FULL)
    with wave.open(str(tmp_path / "victim.wav")) as reader:
        assert reader.getnframes() == 3 * 10 * 160  # the chunks taken before the failure


def test_a_failed_open_is_reported_not_raised_and_others_go_on(tmp_path: Path) -> None:
    finished = Finished()
    writers = RecordingWriters(finished)
    (tmp_path / "a-file").write_bytes(b"x")
    writers.open("bad", tmp_path / "a-file" / "bad.wav", RecordingFormat.WAV, 8000, 1)  # parent is a file
    writers.write("bad", tone(400, 0.02))
    record(writers, "good", tmp_path / "good.wav", RecordingFormat.WAV, tone(400, 0.5))
    writers.close("bad")
    bad, bad_error = finished.wait("bad")
    good, good_error = finished.wait("good")
    writers.stop()
    assert bad is None and bad_error is not None and bad_error.startswith("write failed: ")
    assert str(tmp_path) not in bad_error  # reasons reach callbacks: no server paths
    assert good_error is None and good is not None and good.duration_ms == 500
    assert finished.count("bad") == 1


def test_a_callback_that_raises_does_not_stop_the_writer(tmp_path: Path) -> None:
    seen: list[str] = []

    def on_finished(rid: str, info: object, error: object) -> None:
        seen.append(rid)
        raise RuntimeError("a faulty callback")

    writers = RecordingWriters(on_finished)
    record(writers, "one", tmp_path / "one.wav", RecordingFormat.WAV, tone(400, 0.1))
    record(writers, "two", tmp_path / "two.mp3", RecordingFormat.MP3, tone(400, 0.1))
    writers.stop()
    assert seen == ["one", "two"]


def test_stop_finishes_every_open_recording(tmp_path: Path) -> None:
    finished = Finished()
    writers = RecordingWriters(finished)
    for rid, fmt in (("w", RecordingFormat.WAV), ("m", RecordingFormat.MP3)):
        writers.open(rid, tmp_path / f"{rid}.{fmt.value}", fmt, 8000, 1)
        for frame in frames(tone(500, 1.0)):
            writers.write(rid, frame)
    writers.stop()
    assert sorted(c[0] for c in finished.calls) == ["m", "w"]
    assert all(info is not None and info.duration_ms == 1000 for _, info, _ in finished.calls)
    assert find_unfinished(tmp_path) == []
    with pytest.raises(RuntimeError):
        writers.open("late", tmp_path / "late.wav", RecordingFormat.WAV, 8000, 1)


def test_writes_to_unknown_or_closed_recordings_are_ignored(tmp_path: Path) -> None:
    finished = Finished()
    writers = RecordingWriters(finished)
    writers.write("nobody", b"\x00\x00")
    record(writers, "r", tmp_path / "r.wav", RecordingFormat.WAV, tone(400, 0.1))
    writers.write("r", tone(400, 0.1))
    writers.close("r")
    writers.stop()
    assert finished.count("r") == 1 and finished.calls[0][1] is not None
    assert finished.calls[0][1].duration_ms == 100


def test_a_torn_sample_in_a_write_is_dropped_not_shifted(tmp_path: Path) -> None:
    finished = Finished()
    writers = RecordingWriters(finished)
    writers.open("t", tmp_path / "t.wav", RecordingFormat.WAV, 8000, 1)
    writers.write("t", b"\x01\x00\x02")  # one sample and a half
    writers.write("t", b"\x03\x00")
    writers.stop()
    info, _ = finished.wait("t")
    assert info is not None
    with wave.open(str(info.path)) as reader:
        assert np.frombuffer(reader.readframes(10), "<i2").tolist() == [1, 3]


@pytest.mark.parametrize(
    ("rate", "channels"), [(7999, 1), (48001, 1), (8000, 0), (8000, 3)], ids=["low", "high", "mono0", "three"]
)
def test_open_refuses_formats_it_cannot_write(tmp_path: Path, rate: int, channels: int) -> None:
    writers = RecordingWriters(Finished())
    with pytest.raises(ValueError, match="sample_rate"):
        writers.open("x", tmp_path / "x.wav", RecordingFormat.WAV, rate, channels)
    writers.stop()


def test_an_id_in_use_is_refused(tmp_path: Path) -> None:
    writers = RecordingWriters(Finished())
    writers.open("dup", tmp_path / "dup.wav", RecordingFormat.WAV, 8000, 1)
    with pytest.raises(ValueError, match="already open"):
        writers.open("dup", tmp_path / "dup2.wav", RecordingFormat.WAV, 8000, 1)
    writers.stop()


@pytest.mark.parametrize(
    "kwargs", [{"queue_frames": 0}, {"header_interval_s": 0}, {"mp3_bitrate_kbps": 33}], ids=str
)
def test_writer_settings_are_checked(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WriterSettings(**kwargs)  # type: ignore[arg-type]


def test_a_wav_that_would_pass_the_riff_size_limit_fails_and_keeps_what_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real limit is 4 GiB (the RIFF size field is 32 bits): lowered so the test writes 1 kB, not 4 GB.
    monkeypatch.setattr("bridgeline.adapters.recordings.wav.MAX_DATA_BYTES", 1000)
    finished = Finished()
    writers = RecordingWriters(finished)
    record(writers, "long", tmp_path / "long.wav", RecordingFormat.WAV, tone(400, 0.2))  # 3,200 bytes
    info, error = finished.wait("long")
    writers.stop()
    assert (info, error) == (None, TOO_LONG)
    with wave.open(str(tmp_path / "long.wav")) as reader:
        assert reader.getnframes() * 2 <= 1000


def test_interleaved_recordings_fed_from_a_tick_thread_each_hold_their_own_tone(tmp_path: Path) -> None:
    finished = Finished()
    writers = RecordingWriters(finished)
    tones = {f"c{i}": 300.0 + 150 * i for i in range(20)}
    fmt_of = {rid: (RecordingFormat.MP3 if i % 2 else RecordingFormat.WAV) for i, rid in enumerate(tones)}
    for rid, fmt in fmt_of.items():
        writers.open(rid, tmp_path / f"{rid}.{fmt.value}", fmt, 8000, 1)
    feeds = {rid: frames(tone(hz, 1.0)) for rid, hz in tones.items()}

    def tick_thread() -> None:  # as the media thread: every recording's frame, then the next tick
        for n in range(50):
            for rid in tones:
                writers.write(rid, feeds[rid][n])

    feeder = threading.Thread(target=tick_thread)
    feeder.start()
    feeder.join()
    for rid in tones:
        writers.close(rid)
    writers.stop()
    for rid, hz in tones.items():
        info, error = finished.wait(rid)
        assert error is None and info is not None and info.duration_ms == 1000
        samples = decode(info.path.read_bytes())
        assert abs(peak_hz(samples[800:7200], 8000) - hz) < 10, rid


def buggy_and_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, seconds: float) -> Finished:
    """Fault injection: the writer thread's `method` raises for the recording "buggy", as a bug
    would; "buggy" and "fine" are recorded to WAV and both have finished when this returns."""
    real = getattr(RecordingWriters, method)

    def failing(self: RecordingWriters, rec: object, recording_id: str, *rest: object) -> bool:
        if recording_id == "buggy":
            raise RuntimeError("a bug")
        return bool(real(self, rec, recording_id, *rest))

    monkeypatch.setattr(RecordingWriters, method, failing)
    finished = Finished()
    writers = RecordingWriters(finished)
    pcm = tone(500, seconds)
    record(writers, "buggy", tmp_path / "buggy.wav", RecordingFormat.WAV, pcm)
    record(writers, "fine", tmp_path / "fine.wav", RecordingFormat.WAV, pcm)
    for recording_id in ("buggy", "fine"):
        finished.wait(recording_id)
    writers.stop()
    return finished


def test_a_bug_while_writing_one_recording_fails_it_and_the_thread_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished = buggy_and_fine(tmp_path, monkeypatch, "_append", 0.4)
    (_, error), (info, fine_error) = finished.wait("buggy"), finished.wait("fine")
    assert error == "write failed: internal error" and finished.count("buggy") == 1
    assert fine_error is None and info is not None and info.duration_ms == 400
    assert (tmp_path / "buggy.wav").exists()  # its header, playable (no audio reached it)


def test_a_bug_while_starting_a_recording_still_reports_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished = buggy_and_fine(tmp_path, monkeypatch, "_start", 0.2)
    (info, error), (_, fine_error) = finished.wait("buggy"), finished.wait("fine")
    assert (info, error) == (None, "write failed: internal error") and finished.count("buggy") == 1
    assert fine_error is None
