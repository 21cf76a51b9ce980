"""Decoding music and message bytes to 8 kHz mono int16 with miniaudio (WAV, MP3, FLAC; resampled
in-process), bounded in length, and a cache of decoded samples keyed by the bytes' sha256, so two
URLs or files with the same content are decoded once. Runs in the media worker threads.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import miniaudio
import numpy as np
from numpy.typing import NDArray

from bridgeline.adapters.carriers.sip.music_fetch import MediaUnavailable
from bridgeline.media.player import SAMPLE_RATE

_FRAMES_PER_READ = SAMPLE_RATE  # one second per chunk: the length cap is checked between chunks

Samples = NDArray[np.int16]


def decode_audio(data: bytes, max_seconds: float) -> Samples:
    """The audio as 8 kHz mono samples, cut off after max_seconds (a tiny MP3 can decode to hours:
    decoding stops at the cap instead of producing them). Read-only."""
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[Samples] = []
    total = 0
    try:
        stream = miniaudio.stream_memory(
            data, miniaudio.SampleFormat.SIGNED16, nchannels=1, sample_rate=SAMPLE_RATE,
            frames_to_read=_FRAMES_PER_READ,
        )  # fmt: skip
        for chunk in stream:
            samples = np.frombuffer(chunk, dtype=np.int16)
            chunks.append(samples[: limit - total])
            total += samples.size
            if total >= limit:
                stream.close()
                break
    except miniaudio.MiniaudioError:
        raise MediaUnavailable("not a WAV, MP3 or FLAC file this server can decode") from None
    if not chunks or total == 0:
        raise MediaUnavailable("the file holds no audio")
    out = np.concatenate(chunks)
    out.flags.writeable = False
    return out


class DecodedCache:
    """sha256 of the source bytes -> decoded samples, least recently used first out, bounded by the
    samples' total size. Thread-safe: workers fill it, the event loop reads it."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Samples] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._decoding: dict[str, threading.Lock] = {}  # digest -> held while it is being decoded
        self.decodes = 0  # how many times bytes were actually decoded (cache misses)

    @property
    def size(self) -> int:
        return self._size

    def get(self, digest: str) -> Samples | None:
        with self._lock:
            samples = self._entries.get(digest)
            if samples is not None:
                self._entries.move_to_end(digest)
            return samples

    def decode(self, data: bytes, max_seconds: float) -> tuple[str, Samples]:
        """(digest, samples) for these bytes: from the cache, else decoded now and kept. Two workers
        given the same content at once decode it once: the second waits for the first."""
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            decoding = self._decoding.setdefault(digest, threading.Lock())
        with decoding:
            try:
                cached = self.get(digest)
                if cached is not None:
                    return digest, cached
                samples = decode_audio(data, max_seconds)
                with self._lock:
                    self.decodes += 1
                    if digest not in self._entries:
                        self._entries[digest] = samples
                        self._size += samples.nbytes
                    while self._size > self.max_bytes and self._entries:  # one too big alone is not kept
                        _, evicted = self._entries.popitem(last=False)
                        self._size -= evicted.nbytes
            finally:
                with self._lock:  # stored (or failed) before forgotten: a later worker finds the entry
                    self._decoding.pop(digest, None)
        return digest, samples
