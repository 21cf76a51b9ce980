"""repair_wav / repair_mp3 / finalize_unfinished on files cut at every kind of place."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest
from recordkit import decode, tone

from bridgeline.adapters.recordings import NotARecording, finalize_unfinished, repair_mp3, repair_wav
from bridgeline.adapters.recordings.mp3 import new_encoder, scan
from bridgeline.adapters.recordings.wav import header


def _mp3(seconds: float, bitrate: int = 32) -> bytes:
    encoder = new_encoder(8000, 1, bitrate)
    pcm = tone(440, seconds)
    return encoder.encode(pcm) + encoder.flush()


def test_a_wav_with_zero_sizes_and_a_torn_sample_is_repaired(tmp_path: Path) -> None:
    pcm = tone(440, 0.5, channels=2)
    path = tmp_path / "r.wav"
    path.write_bytes(header(8000, 2, 0) + pcm + b"\x07\x00\x01")  # sizes as at open, 3 bytes of a frame
    info = repair_wav(path)
    assert (info.duration_ms, info.channels, info.size_bytes) == (500, 2, 44 + len(pcm))
    with wave.open(str(path)) as reader:
        assert reader.readframes(reader.getnframes()) == pcm


def test_a_wav_with_only_its_header_is_an_empty_recording(tmp_path: Path) -> None:
    path = tmp_path / "e.wav"
    path.write_bytes(header(16000, 1, 0))
    info = repair_wav(path)
    assert (info.duration_ms, info.size_bytes, info.sample_rate) == (0, 44, 16000)
    with wave.open(str(path)) as reader:
        assert reader.getnframes() == 0


@pytest.mark.parametrize(
    "content", [b"", b"RIFF", b"ID3" + bytes(50), header(8000, 1, 0).replace(b"WAVE", b"AVI ")], ids=repr
)
def test_what_is_not_a_wav_recording_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.wav"
    path.write_bytes(content)
    with pytest.raises(NotARecording):
        repair_wav(path)
    assert path.read_bytes() == content


def test_an_mp3_cut_inside_a_frame_loses_only_that_frame(tmp_path: Path) -> None:
    whole = _mp3(2.0)
    complete = scan(whole)
    assert complete.end == len(whole) and complete.samples_per_frame == 576
    cut = whole[: len(whole) - 37]
    path = tmp_path / "c.mp3"
    path.write_bytes(cut)
    info = repair_mp3(path)
    assert info.size_bytes == path.stat().st_size < len(cut)
    assert scan(path.read_bytes()).frames == complete.frames - 1
    assert info.duration_ms == (complete.frames - 1) * 576 * 1000 // 8000
    assert len(decode(path.read_bytes())) > 0


@pytest.mark.parametrize("bitrate", [8, 32, 64])
def test_the_frame_scan_reads_every_bitrate_lame_writes_at_8_khz(bitrate: int) -> None:
    data = _mp3(1.0, bitrate)
    found = scan(data)
    assert found.end == len(data) and (found.sample_rate, found.channels) == (8000, 1)
    assert found.frames * 576 >= 8000


def test_an_empty_mp3_is_an_empty_recording_and_garbage_is_refused(tmp_path: Path) -> None:
    empty, garbage = tmp_path / "e.mp3", tmp_path / "g.mp3"
    empty.write_bytes(b"")
    garbage.write_bytes(b"\x00" * 500)
    assert repair_mp3(empty).duration_ms == 0
    with pytest.raises(NotARecording):
        repair_mp3(garbage)


def test_finalize_refuses_what_is_not_an_unfinished_recording(tmp_path: Path) -> None:
    for name in ("done.wav", "notes.txt.part"):
        (tmp_path / name).write_bytes(header(8000, 1, 0))
        with pytest.raises(NotARecording):
            finalize_unfinished(tmp_path / name)
