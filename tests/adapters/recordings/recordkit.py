"""Helpers for the recording tests: tones as PCM, finished-recording collectors, decoding."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import miniaudio
import numpy as np

from bridgeline.adapters.recordings import RecordingFileInfo

FRAME_MS = 20
S3_KEY, S3_SECRET = "bridgeline-test", "bridgeline-test-secret"  # the moto server's credentials


def tone(freq_hz: float, seconds: float, rate: int = 8000, channels: int = 1) -> bytes:
    """A sine tone as int16 little-endian interleaved PCM."""
    t = np.arange(int(seconds * rate)) / rate
    mono = (np.sin(2 * np.pi * freq_hz * t) * 8000).astype("<i2")
    return np.repeat(mono, channels).tobytes()


def frames(pcm: bytes, rate: int = 8000, channels: int = 1) -> list[bytes]:
    """PCM cut into 20 ms frames, as the media tick hands them over."""
    size = rate * FRAME_MS // 1000 * 2 * channels
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum[1:]) + 1) * rate / len(samples)


def decode(data: bytes, rate: int = 8000) -> np.ndarray:
    """Mono int16 samples of an MP3 or WAV byte string (miniaudio, as the server decodes music)."""
    sound = miniaudio.decode(
        data, output_format=miniaudio.SampleFormat.SIGNED16, nchannels=1, sample_rate=rate
    )
    return np.frombuffer(sound.samples, dtype=np.int16)


@dataclass
class Finished:
    """on_finished's calls, gathered; `wait` blocks the test (not the writer) until one arrives."""

    calls: list[tuple[str, RecordingFileInfo | None, str | None]] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    _event: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, recording_id: str, info: RecordingFileInfo | None, error: str | None) -> None:
        with self._event:
            self.calls.append((recording_id, info, error))
            self.threads.add(threading.current_thread().name)
            self._event.notify_all()

    def wait(self, recording_id: str, timeout: float = 20.0) -> tuple[RecordingFileInfo | None, str | None]:
        with self._event:
            self._event.wait_for(lambda: any(c[0] == recording_id for c in self.calls), timeout)
        for rid, info, error in self.calls:
            if rid == recording_id:
                return info, error
        raise AssertionError(f"no on_finished for {recording_id} within {timeout} s")

    def count(self, recording_id: str) -> int:
        return sum(1 for c in self.calls if c[0] == recording_id)
