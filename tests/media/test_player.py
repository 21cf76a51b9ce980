"""Audio sources: tone frequency and phase continuity, WAV loading (PCM, G.711, resampled), looping."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from bridgeline.media import g711
from bridgeline.media.player import (
    FRAME_SAMPLES,
    SharedSource,
    SilenceSource,
    ToneSource,
    WavFormatError,
    WavPlayer,
    load_wav,
)


def peak_hz(x: NDArray[np.int16], rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spectrum))])


def frames_of(source: WavPlayer | ToneSource, n: int) -> NDArray[np.int16]:
    return np.concatenate([source.next_frame() for _ in range(n)])


def write_pcm_wav(path: Path, samples: NDArray[np.int16], rate: int = 8000, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def g711_wav(codes: bytes, tag: int, rate: int = 8000, extra_chunk: bool = True) -> bytes:
    fmt = struct.pack("<HHIIHHH", tag, 1, rate, rate, 1, 8, 0)  # 18-byte fmt with cbSize
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if extra_chunk:  # G.711 WAVs carry a 'fact' chunk; odd-sized chunks get a pad byte
        chunks += b"LIST" + struct.pack("<I", 3) + b"abc\0"
    chunks += b"data" + struct.pack("<I", len(codes)) + codes
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


@pytest.mark.parametrize("freq", [350.0, 440.0, 1000.0, 1633.0, 3000.0])
def test_tone_frequency(freq: float) -> None:
    x = frames_of(ToneSource(freq, 0.5), 50)  # one second: 1 Hz FFT bins
    assert abs(peak_hz(x) - freq) <= 2
    assert 0.45 * 32767 < np.abs(x).max() <= 0.5 * 32767 + 1


def test_tone_phase_is_continuous_across_frames() -> None:
    tone = ToneSource(440, 0.5)
    x = frames_of(tone, 500).astype(np.float64)  # 10 s, long enough for phase drift to show
    expected = 0.5 * 32767 * np.sin(2 * np.pi * 440 * np.arange(x.size) / 8000)
    assert np.abs(x - expected).max() <= 1.0


def test_dual_tone_has_both_components() -> None:
    x = frames_of(ToneSource((440.0, 480.0), 0.5), 50)
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64)))
    assert sorted(np.argsort(spectrum)[-2:].tolist()) == [440, 480]
    assert np.abs(x).max() <= 0.5 * 32767 + 1


def test_silence_and_bad_tone_arguments() -> None:
    frame = SilenceSource().next_frame()
    assert frame.shape == (FRAME_SAMPLES,) and not frame.any() and not SilenceSource().finished
    with pytest.raises(ValueError):
        ToneSource(440, 1.5)


def test_shared_source_advances_once_per_tick() -> None:
    shared = SharedSource(ToneSource(440))
    reference = ToneSource(440)
    for tick in range(5):
        first = shared.frame_at(tick)
        assert all(shared.frame_at(tick) is first for _ in range(3))  # many listeners, one frame
        assert (first == reference.next_frame()).all()
    assert not shared.finished


def test_pcm_wav_round_trip(tmp_path: Path) -> None:
    samples = np.random.default_rng(1).integers(-32768, 32768, 1000, dtype=np.int16)
    write_pcm_wav(tmp_path / "a.wav", samples)
    player = WavPlayer(tmp_path / "a.wav")
    assert (player.samples == samples).all() and player.duration_s == 1000 / 8000
    out = [player.next_frame() for _ in range(6)]
    states = [player.finished]
    out.append(player.next_frame())  # 1000 = 6 * 160 + 40: the 7th frame is padded
    states.append(player.finished)
    assert states == [False, True]
    got = np.concatenate(out)
    assert (got[:1000] == samples).all() and not got[1000:].any()
    assert not player.next_frame().any()  # finished players stay silent


def test_frames_are_read_only(tmp_path: Path) -> None:
    write_pcm_wav(tmp_path / "a.wav", np.ones(400, dtype=np.int16))
    player = WavPlayer(tmp_path / "a.wav")
    with pytest.raises(ValueError):
        player.next_frame()[0] = 5


def test_looping_is_seamless(tmp_path: Path) -> None:
    samples = np.arange(-250, 250, dtype=np.int16)  # 500 samples: not a multiple of the frame size
    write_pcm_wav(tmp_path / "loop.wav", samples)
    player = WavPlayer(tmp_path / "loop.wav", loop=True)
    got = frames_of(player, 25)
    assert (got == np.resize(samples, got.size)).all() and not player.finished
    player.rewind()
    assert (player.next_frame() == samples[:FRAME_SAMPLES]).all()


def test_loop_shorter_than_a_frame() -> None:
    tiny = np.array([1, 2, 3], dtype=np.int16)
    wav = g711_wav(g711.alaw_encode(tiny), 6, extra_chunk=False)
    player = WavPlayer(wav, loop=True)
    decoded = g711.alaw_decode(g711.alaw_encode(tiny))
    assert (frames_of(player, 3) == np.resize(decoded, 3 * FRAME_SAMPLES)).all()


@pytest.mark.parametrize(
    ("tag", "encode", "decode"),
    [(7, g711.ulaw_encode, g711.ulaw_decode), (6, g711.alaw_encode, g711.alaw_decode)],
)
def test_g711_wav(tmp_path: Path, tag: int, encode: object, decode: object) -> None:
    pcm = frames_of(ToneSource(600, 0.3), 10)
    codes = encode(pcm)  # type: ignore[operator]
    (tmp_path / "g711.wav").write_bytes(g711_wav(codes, tag))
    with pytest.raises(wave.Error), wave.open(str(tmp_path / "g711.wav")):
        pass  # the stdlib cannot read G.711 WAVs, which is why the player parses RIFF itself
    player = WavPlayer(tmp_path / "g711.wav")
    assert (player.samples == decode(codes)).all()  # type: ignore[operator]


def test_resampling_from_16khz_stereo(tmp_path: Path) -> None:
    t = np.arange(16000) / 16000
    left = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    right = (8000 * np.sin(2 * np.pi * 1000 * t + 0.2)).astype(np.int16)
    write_pcm_wav(tmp_path / "wide.wav", np.stack([left, right], axis=1).ravel(), rate=16000, channels=2)
    player = WavPlayer(tmp_path / "wide.wav")
    assert player.samples.size == 8000
    assert abs(peak_hz(player.samples) - 1000) <= 2
    assert 6000 < np.abs(player.samples).max() < 8000


def test_resampling_up_from_4khz() -> None:
    t = np.arange(4000) / 4000
    wav_bytes = _pcm_bytes((6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16), 4000)
    samples = load_wav(wav_bytes)
    assert samples.size == 8000 and abs(peak_hz(samples) - 300) <= 2


def test_8bit_pcm(tmp_path: Path) -> None:
    with wave.open(str(tmp_path / "u8.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(bytes([128, 255, 0]))
    assert load_wav((tmp_path / "u8.wav").read_bytes()).tolist() == [0, 127 * 256, -128 * 256]


def test_extensible_pcm_wav() -> None:
    samples = np.array([5, -5, 300], dtype=np.int16)
    guid_tail = bytes.fromhex("000000001000800000aa00389b71")
    fmt = (
        struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 16000, 2, 16, 22, 16, 4) + struct.pack("<H", 1) + guid_tail
    )
    body = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 6) + samples.tobytes()
    wav = b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body
    assert load_wav(wav).tolist() == [5, -5, 300]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"RIFF\0\0\0\0WAVX",
        b"RIFF\x04\0\0\0WAVE",
        g711_wav(b"\0", 0x55),  # MP3
        g711_wav(b"\0", 7)[:-13],  # data chunk missing
    ],
)
def test_bad_files(data: bytes) -> None:
    with pytest.raises(WavFormatError):
        load_wav(data)


def _pcm_bytes(samples: NDArray[np.int16], rate: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = (
        b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", samples.nbytes)
        + samples.tobytes()
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body
