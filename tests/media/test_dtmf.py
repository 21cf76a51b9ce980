"""RFC 4733 telephone-event payloads, the packet train for one digit, and digit de-duplication."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridgeline.media.dtmf import (
    DtmfReceiver,
    TelephoneEvent,
    digit_to_event,
    dtmf_packets,
    event_to_digit,
)
from bridgeline.media.rtp import RtpPacket, RtpParseError


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 0xFFFF))
def test_payload_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    ev = TelephoneEvent(event, end=end, volume=volume, duration=duration)
    assert len(bytes(ev)) == 4
    assert TelephoneEvent.parse(bytes(ev)) == ev


def test_known_payload() -> None:
    # Digit 5, end bit, volume 10 (-10 dBm0), 800 samples; the reserved bit is ignored on input.
    assert bytes(TelephoneEvent(5, end=True, volume=10, duration=800)) == bytes.fromhex("058a0320")
    assert TelephoneEvent.parse(bytes.fromhex("05ca0320")) == TelephoneEvent(5, True, 10, 800)


def test_bad_payloads() -> None:
    with pytest.raises(RtpParseError):
        TelephoneEvent.parse(b"\x01\x02\x03")
    with pytest.raises(ValueError):
        TelephoneEvent(1, volume=64).serialize()


def test_digit_codes() -> None:
    assert [digit_to_event(d) for d in "09*#aD"] == [0, 9, 10, 11, 12, 15]
    assert event_to_digit(11) == "#" and event_to_digit(16) is None
    for bad in ("", "E", "12"):
        with pytest.raises(ValueError):
            digit_to_event(bad)


def test_packet_train_for_one_digit() -> None:
    train = dtmf_packets("7", ssrc=9, sequence=65534, timestamp=12345, duration_ms=100)
    offsets = [t for t, _ in train]
    packets = [p for _, p in train]
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert offsets == [0, 20, 40, 60, 80, 100, 120]  # 5 updates, the end packet twice more
    assert [p.sequence for p in packets] == [65534, 65535, 0, 1, 2, 3, 4]
    assert {p.timestamp for p in packets} == {12345} and {p.ssrc for p in packets} == {9}
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {7} and {p.payload_type for p in packets} == {101}


def test_odd_duration_and_bad_arguments() -> None:
    train = dtmf_packets("#", ssrc=1, sequence=0, timestamp=0, duration_ms=50, end_repeats=1)
    assert [TelephoneEvent.parse(p.payload).duration for _, p in train] == [160, 320, 400]
    with pytest.raises(ValueError):
        dtmf_packets("1", ssrc=1, sequence=0, timestamp=0, duration_ms=9000)


def test_receiver_reports_each_digit_once() -> None:
    rx = DtmfReceiver()
    digits = []
    trains = [dtmf_packets(d, ssrc=3, sequence=10 * i, timestamp=4000 * i) for i, d in enumerate("12#")]
    stream = [p for train in trains for _, p in train]
    stream.insert(9, stream[6])  # a late repeat of the first digit's end packet
    for p in stream:
        digit = rx.push(p)
        if digit is not None:
            digits.append(digit)
    assert digits == ["1", "2", "#"]


def test_receiver_ignores_other_payloads() -> None:
    rx = DtmfReceiver()
    assert (
        rx.push(RtpPacket(payload_type=0, sequence=1, timestamp=0, ssrc=1, payload=b"\x05\x80\x00\xa0"))
        is None
    )
    assert rx.push(RtpPacket(payload_type=101, sequence=1, timestamp=0, ssrc=1, payload=b"\x05")) is None
    # Only the end packets arrived: the digit is still reported.
    _, end = dtmf_packets("9", ssrc=1, sequence=5, timestamp=800)[-1]
    assert rx.push(end) == "9"
