"""The Opus codec wrapper (media/opus.py) and the Opus jitter buffer on their own: the peer's fmtp
read safely, what it changes in what we send, and FEC used to repair a loss."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from bridgeline.media.opus import CODEC_ID, OpusParams, OpusStream
from bridgeline.media.opus_jitter import OpusJitterBuffer


def voice_like(frames: int, seed: int = 1) -> NDArray[np.int16]:
    """16 kHz test 'speech': a gliding pitch with 19 harmonics, syllable-rate level changes and a
    little noise (a steady tone is what loss concealment repairs best, and shows little of FEC)."""
    t = np.arange(320 * frames) / 16000
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    signal = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2
    signal = signal + 0.02 * np.random.default_rng(seed).standard_normal(signal.size)
    return (signal / np.abs(signal).max() * 12000).astype(np.int16)


@pytest.mark.parametrize(
    ("fmtp", "expected"),
    [
        (None, OpusParams()),
        ("useinbandfec=1", OpusParams(fec=True)),
        ("maxplaybackrate=8000; sprop-maxcapturerate=8000", OpusParams(max_playback_rate=8000)),
        ("MAXAVERAGEBITRATE=12000;useinbandfec=0", OpusParams(max_bitrate=12000)),
        ("maxaveragebitrate=1;maxplaybackrate=99999999", OpusParams(max_bitrate=6000)),
        ("maxaveragebitrate=-5;maxplaybackrate=x;useinbandfec", OpusParams()),
        ("stereo=1;;=;a=b=c;\x00", OpusParams()),
    ],
)
def test_the_peers_fmtp_is_read_and_bad_values_are_ignored(fmtp: str | None, expected: OpusParams) -> None:
    assert OpusParams.from_fmtp(fmtp) == expected


def test_maxaveragebitrate_and_maxplaybackrate_shape_what_we_send() -> None:
    pcm = voice_like(100)
    frames = [pcm[i : i + 320] for i in range(0, pcm.size, 320)]
    default, capped = OpusStream(), OpusStream(OpusParams.from_fmtp("maxaveragebitrate=8000"))
    assert sum(len(capped.encode(f)) for f in frames) < 0.5 * sum(len(default.encode(f)) for f in frames)
    narrow = OpusStream(OpusParams.from_fmtp("maxplaybackrate=8000"))
    packet = narrow.encode(frames[50])
    assert packet[0] >> 3 < 4  # TOC config 0-3: SILK narrowband (RFC 6716 3.1)
    assert OpusStream().encode(frames[50])[0] >> 3 >= 8  # wideband otherwise


def play(packets: list[bytes], lost: set[int], *, fec: bool = True) -> NDArray[np.int16]:
    """What a fresh jitter buffer plays of 20 ms packets, the `lost` ones never arriving."""
    buffer = OpusJitterBuffer(OpusStream(), fec=fec)
    out: list[NDArray[np.int16]] = []
    for i, packet in enumerate(packets):
        if i not in lost:
            buffer.push_payload(CODEC_ID, i, 960 * i, 7, packet, i * 0.02)
        frame = buffer.pop_payload()
        if frame is not None:
            out.append(np.asarray(frame))
    return np.concatenate(out)


def snr_db(reference: NDArray[np.int16], heard: NDArray[np.int16]) -> float:
    error = np.sum((heard.astype(np.float64) - reference) ** 2)
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / error))


def test_a_lost_packet_is_rebuilt_from_the_next_packets_fec() -> None:
    """With the next packet already buffered (the playout delay), a loss is decoded from that
    packet's in-band FEC, which comes closer to the lossless audio than concealment alone (the
    same packets, the FEC left unused)."""
    pcm = voice_like(250)
    encoder = OpusStream(OpusParams(fec=True))
    packets = [encoder.encode(pcm[i : i + 320]) for i in range(0, pcm.size, 320)]
    lost = set(range(7, 240, 9))
    reference = play(packets, set())
    with_fec, without = play(packets, lost), play(packets, lost, fec=False)
    assert reference.size == with_fec.size == without.size
    assert snr_db(reference, with_fec) > snr_db(reference, without) + 3


def test_a_packet_the_decoder_refuses_is_concealed() -> None:
    """A payload whose TOC byte reads well but whose body libopus rejects is played as concealment
    of its duration, not as silence and not as a crash."""
    pcm = voice_like(30)
    encoder = OpusStream()
    packets = [encoder.encode(pcm[i : i + 320]) for i in range(0, pcm.size, 320)]
    packets[12] = bytes([8 << 3 | 1, 0, 0, 0])  # two equal 10 ms frames in an odd number of bytes
    buffer = OpusJitterBuffer(OpusStream())
    for i, packet in enumerate(packets):
        buffer.push_payload(CODEC_ID, i, 960 * i, 7, packet, i * 0.02)
        buffer.pop_payload()
    assert buffer.stats.concealed == 1
    assert buffer.stats.played == len(packets) - 3  # (two ticks of prefill)


def test_a_flood_of_tiny_packets_parks_at_most_max_packets() -> None:
    """2.5 ms packets at distinct timestamps inside the playout window: the buffer keeps 64 (the
    bound), drops and counts the rest, and still plays what it kept."""
    encoder = OpusStream()
    buffer = OpusJitterBuffer(OpusStream(), max_packets=64)
    frame = voice_like(1)[:40]  # 2.5 ms at 16 kHz: libopus's shortest frame
    kept = sum(buffer.push_payload(CODEC_ID, i, 120 * i, 7, encoder.encode(frame), 0.0) for i in range(80))
    assert kept == 64 and buffer.stats.dropped == 16
    played = [buffer.pop_payload() for _ in range(4)]
    assert [p is None for p in played] == [True, True, False, False]  # prefill, then audio
