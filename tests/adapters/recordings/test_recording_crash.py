"""A killed process leaves playable recordings; a disk that refuses more fails one recording, not all.

Both run a real child process (recording_child.py): SIGKILL for the crash, and RLIMIT_FSIZE for the
full disk, where the kernel itself refuses the write (EFBIG) at the limit, mid-recording.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
from recordkit import decode, peak_hz

from bridgeline.adapters.recordings import RecordingFormat, finalize_unfinished, find_unfinished, part_path

CHILD = Path(__file__).with_name("recording_child.py")


def _child(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(CHILD.parent)}
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(process: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    try:
        deadline = time.monotonic() + 30
        while not ready():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the child wrote too little within 30 s"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL


def _wav_header_data_bytes(path: Path) -> int:
    with path.open("rb") as file:
        head = file.read(44)
    return struct.unpack("<I", head[40:44])[0] if len(head) == 44 else 0


def test_kill_9_leaves_a_wav_playable_up_to_the_crash(tmp_path: Path) -> None:
    part = part_path(tmp_path / "crash.wav")
    process = _child(str(tmp_path), "wav")
    # the header said at least 1.5 s before the kill: repair must find at least that much, intact
    _kill_when(process, lambda: part.exists() and _wav_header_data_bytes(part) >= 24000)
    assert find_unfinished(tmp_path) == [part]
    info = finalize_unfinished(part)
    assert info.path == tmp_path / "crash.wav" and not part.exists()
    assert info.format is RecordingFormat.WAV and info.duration_ms >= 1500
    with wave.open(str(info.path)) as reader:
        assert reader.getnframes() * 1000 // 8000 == info.duration_ms
        samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
    assert info.size_bytes == info.path.stat().st_size == 44 + 2 * len(samples)
    assert abs(peak_hz(samples[:8000], 8000) - 440) < 2
    assert find_unfinished(tmp_path) == []


def test_kill_9_leaves_an_mp3_whose_frames_decode(tmp_path: Path) -> None:
    part = part_path(tmp_path / "crash.mp3")
    process = _child(str(tmp_path), "mp3")
    _kill_when(process, lambda: part.exists() and part.stat().st_size >= 8000)  # 2 s at 32 kbit/s
    info = finalize_unfinished(part)
    assert info.path == tmp_path / "crash.mp3" and info.format is RecordingFormat.MP3
    assert (info.sample_rate, info.channels) == (8000, 1) and info.duration_ms >= 1900
    samples = decode(info.path.read_bytes())
    assert abs(len(samples) * 1000 // 8000 - info.duration_ms) <= 72  # one frame of 576 samples
    assert abs(peak_hz(samples[800:8800], 8000) - 440) < 10


def test_a_disk_that_refuses_mid_recording_fails_that_recording_only(tmp_path: Path) -> None:
    limit = 64 * 1024  # the 10 s recording needs 160 kB; the 1 s one 16 kB
    process = _child(str(tmp_path), "wav", str(limit))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    results = {r["id"]: r for r in (json.loads(line) for line in out.splitlines() if line.startswith("{"))}
    assert results["small"] == {"id": "small", "error": None, "duration_ms": 1000}
    assert results["big"]["duration_ms"] is None
    assert str(results["big"]["error"]).startswith("disk full: File too large")
    # what fitted is kept, playable, at the recording's path
    with wave.open(str(tmp_path / "big.wav")) as reader:
        kept = reader.getnframes()
    assert 0 < kept * 2 + 44 <= limit
    assert find_unfinished(tmp_path) == []
