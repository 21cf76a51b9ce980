"""Decoding with miniaudio: PCM and G.711 WAVs at any rate and channel count come out as 8 kHz mono,
the decoded length is capped, bad bytes are refused, and equal content is decoded once."""

from __future__ import annotations

import io
import struct
import threading
import wave

import numpy as np
import pytest
from media_peer import dominant_freq
from numpy.typing import NDArray

from bridgeline.adapters.carriers.sip import music_decode
from bridgeline.adapters.carriers.sip.music import LoopSource
from bridgeline.adapters.carriers.sip.music_decode import DecodedCache, decode_audio
from bridgeline.adapters.carriers.sip.music_fetch import MediaUnavailable
from bridgeline.media import g711
from bridgeline.media.player import FRAME_SAMPLES, ToneSource


def pcm_wav(samples: NDArray[np.int16], rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes() if width == 2 else samples.tobytes())
    return out.getvalue()


def g711_wav(codes: bytes, tag: int, rate: int = 8000) -> bytes:
    fmt = struct.pack("<HHIIHHH", tag, 1, rate, rate, 1, 8, 0)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"LIST" + struct.pack("<I", 3) + b"abc\0"  # odd-sized chunks get a pad byte
    chunks += b"data" + struct.pack("<I", len(codes)) + codes
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def tone(freq: float, frames: int) -> NDArray[np.int16]:
    source = ToneSource(freq, 0.3)
    return np.concatenate([source.next_frame() for _ in range(frames)])


def test_pcm_8khz_round_trips_exactly() -> None:
    samples = np.random.default_rng(1).integers(-32768, 32768, 1000, dtype=np.int16)
    decoded = decode_audio(pcm_wav(samples), max_seconds=10)
    assert decoded.dtype == np.int16 and (decoded == samples).all()
    with pytest.raises(ValueError):
        decoded[0] = 1  # shared between listeners: read-only


@pytest.mark.parametrize(
    ("tag", "encode", "decode"),
    [(7, g711.ulaw_encode, g711.ulaw_decode), (6, g711.alaw_encode, g711.alaw_decode)],
)
def test_g711_wav(tag: int, encode: object, decode: object) -> None:
    pcm = tone(600, 10)
    codes = encode(pcm)  # type: ignore[operator]
    decoded = decode_audio(g711_wav(codes, tag), max_seconds=10)
    expected = decode(codes).astype(np.int32)  # type: ignore[operator]
    assert decoded.size == expected.size and np.abs(decoded - expected).max() <= 8


def test_resampled_from_44k1_stereo_and_16khz() -> None:
    t = np.arange(44100) / 44100
    left = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    stereo = np.stack([left, left], axis=1).ravel()
    decoded = decode_audio(pcm_wav(stereo, rate=44100, channels=2), max_seconds=10)
    assert abs(decoded.size - 8000) <= 2 and dominant_freq(decoded) == pytest.approx(1000, abs=3)
    t16 = np.arange(16000) / 16000
    decoded = decode_audio(pcm_wav((6000 * np.sin(2 * np.pi * 300 * t16)).astype(np.int16), 16000), 10)
    assert abs(decoded.size - 8000) <= 2 and dominant_freq(decoded) == pytest.approx(300, abs=3)


def test_8bit_pcm() -> None:
    decoded = decode_audio(pcm_wav(np.array([128, 255, 0], dtype=np.uint8), width=1), max_seconds=1)
    assert decoded.tolist() == [0, 127 * 256, -128 * 256]


def test_decoded_length_is_capped() -> None:
    long = pcm_wav(tone(500, 50 * 30))  # 30 s
    assert decode_audio(long, max_seconds=2.5).size == 20000
    assert decode_audio(long, max_seconds=60).size == 30 * 8000


@pytest.mark.parametrize(
    "data",
    [b"", b"RIFF\0\0\0\0WAVX", b"RIFF\x04\0\0\0WAVE", b"root:x:0:0:root:/root:/bin/bash\n" * 40, bytes(4096)],
)
def test_bad_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(MediaUnavailable):
        decode_audio(data, max_seconds=10)


def test_the_cache_decodes_equal_content_once_and_stays_bounded() -> None:
    a, b = pcm_wav(tone(400, 50)), pcm_wav(tone(700, 50))  # 1 s each: 16,000 bytes decoded
    cache = DecodedCache(max_bytes=40_000)
    digest, first = cache.decode(a, 10)
    again_digest, again = cache.decode(bytes(a), 10)  # same content, another object
    assert again_digest == digest and again is first and cache.decodes == 1
    cache.decode(b, 10)
    cache.decode(pcm_wav(tone(900, 50)), 10)  # 48,000 bytes > 40,000: the least recently used goes
    assert cache.decodes == 3 and cache.size <= 40_000 and cache.get(digest) is None


def test_loop_source_loops_seamlessly_and_plays_once() -> None:
    samples = np.arange(-250, 250, dtype=np.int16)  # 500: not a multiple of the frame size
    looped = LoopSource(samples, loop=True)
    got = np.concatenate([looped.next_frame() for _ in range(25)])
    assert (got == np.resize(samples, got.size)).all() and not looped.finished
    once = LoopSource(samples, loop=False)
    got = np.concatenate([once.next_frame() for _ in range(4)])
    assert (got[:500] == samples).all() and not got[500:].any() and once.finished
    assert once.next_frame().shape == (FRAME_SAMPLES,)


def test_two_workers_given_the_same_content_at_once_decode_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[bytes] = []

    def slow_decode(data: bytes, max_seconds: float) -> NDArray[np.int16]:
        calls.append(data)
        started.set()
        release.wait(5)
        return np.zeros(160, dtype=np.int16)

    monkeypatch.setattr(music_decode, "decode_audio", slow_decode)
    cache = DecodedCache(max_bytes=1 << 20)
    results: list[tuple[str, NDArray[np.int16]]] = []
    first = threading.Thread(target=lambda: results.append(cache.decode(b"same bytes", 10)))
    second = threading.Thread(target=lambda: results.append(cache.decode(b"same bytes", 10)))
    first.start()
    assert started.wait(5)
    second.start()  # arrives while the first is still decoding
    second.join(0.2)
    release.set()
    first.join(5)
    second.join(5)
    assert len(calls) == 1 and cache.decodes == 1
    assert len(results) == 2 and results[0][0] == results[1][0] and results[0][1] is results[1][1]
