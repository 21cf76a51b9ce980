"""RTP/RTCP parsing: round trips over every header field, and malformed input only raises RtpParseError."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridgeline.media.rtp import (
    RtcpHeader,
    RtpPacket,
    RtpParseError,
    is_rtcp,
    parse_rtcp,
    seq_diff,
    seq_newer,
    ts_diff,
    ts_newer,
)

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=u16,
    timestamp=u32,
    ssrc=u32,
    payload=st.binary(max_size=300),
    marker=st.booleans(),
    csrcs=st.lists(u32, max_size=15).map(tuple),
    padding=st.integers(0, 255),
    extension=st.none() | st.tuples(u16, st.binary(max_size=64).map(lambda b: b[: len(b) - len(b) % 4])),
)


@given(packets)
def test_round_trip(packet: RtpPacket) -> None:
    wire = bytes(packet)
    assert wire == packet.serialize()
    assert RtpPacket.parse(wire) == packet
    assert RtpPacket.parse(memoryview(wire)) == packet


@given(st.binary(max_size=120))
def test_random_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpParseError:
        return
    assert bytes(packet) == data or packet.padding  # padding bytes other than the count are not kept


@given(st.integers(0x80, 0xBF), st.binary(max_size=120))
def test_random_version2_bytes_parse_or_raise_parse_error(first: int, rest: bytes) -> None:
    try:
        packet = RtpPacket.parse(bytes((first,)) + rest)
    except RtpParseError:
        return
    assert len(packet.payload) + packet.padding + 12 + 4 * len(packet.csrcs) <= len(rest) + 1


@given(packets, st.data())
def test_truncated_packets_raise_parse_error(packet: RtpPacket, data: st.DataObject) -> None:
    wire = bytes(packet)
    cut = data.draw(st.integers(0, len(wire) - 1))
    header = 12 + 4 * len(packet.csrcs) + (4 + len(packet.extension[1]) if packet.extension else 0)
    if cut < header or (packet.padding and cut < header + 1):
        with pytest.raises(RtpParseError):
            RtpPacket.parse(wire[:cut])
    else:  # cut inside the payload: still a packet, unless the padding count no longer fits
        try:
            assert RtpPacket.parse(wire[:cut]).ssrc == packet.ssrc
        except RtpParseError as exc:
            assert "padding" in str(exc)


def test_known_packet_layout() -> None:
    wire = bytes.fromhex("80e0 0102 00000003 deadbeef") + b"\xff" * 4
    p = RtpPacket.parse(wire)
    assert (p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc) == (96, True, 0x0102, 3, 0xDEADBEEF)
    assert p.payload == b"\xff" * 4 and p.csrcs == () and p.extension is None


def test_extension_is_skipped_and_padding_stripped() -> None:
    header = struct.pack("!BBHII", 0xB1, 0, 7, 160, 42)  # V=2, P, X, CC=1
    wire = header + struct.pack("!I", 99) + struct.pack("!HH", 0xBEDE, 1) + b"abcd" + b"PAY" + b"\0\0\x03"
    p = RtpPacket.parse(wire)
    assert p.csrcs == (99,) and p.extension == (0xBEDE, b"abcd")
    assert p.payload == b"PAY" and p.padding == 3
    assert bytes(p) == wire


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (b"", "too short"),
        (b"\x80\x00" + bytes(9), "too short"),
        (b"\x40\x00" + bytes(10), "version"),
        (b"\xc0\x00" + bytes(10), "version"),
        (b"\x82\x00" + bytes(10) + bytes(4), "CSRC"),
        (b"\x90\x00" + bytes(10) + b"\x00\x00", "extension"),
        (b"\x90\x00" + bytes(10) + b"\x00\x00\x00\x02" + bytes(4), "extension"),
        (b"\xa0\x00" + bytes(10) + b"ab\x00", "padding"),
        (b"\xa0\x00" + bytes(10) + b"ab\x04", "padding"),
        (b"\xa0\x00" + bytes(10), "padding"),
    ],
)
def test_malformed(wire: bytes, why: str) -> None:
    with pytest.raises(RtpParseError, match=why):
        RtpPacket.parse(wire)


def test_parse_error_is_a_value_error() -> None:
    assert issubclass(RtpParseError, ValueError)


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(payload_type=128, sequence=0, timestamp=0, ssrc=0),
        RtpPacket(payload_type=0, sequence=65536, timestamp=0, ssrc=0),
        RtpPacket(payload_type=0, sequence=0, timestamp=-1, ssrc=0),
        RtpPacket(payload_type=0, sequence=0, timestamp=0, ssrc=0, csrcs=tuple(range(16))),
        RtpPacket(payload_type=0, sequence=0, timestamp=0, ssrc=0, padding=256),
        RtpPacket(payload_type=0, sequence=0, timestamp=0, ssrc=0, extension=(1, b"abc")),
    ],
)
def test_serialize_rejects_out_of_range_fields(packet: RtpPacket) -> None:
    with pytest.raises(ValueError):
        packet.serialize()


def test_sequence_and_timestamp_wrap() -> None:
    assert seq_diff(0, 65535) == 1 and seq_diff(65535, 0) == -1 and seq_diff(5, 3) == 2
    assert seq_newer(2, 65530) and not seq_newer(65530, 2) and not seq_newer(7, 7)
    assert ts_diff(80, 0xFFFF_FFB0) == 160 and ts_diff(0xFFFF_FFB0, 80) == -160
    assert ts_newer(0, 0xFFFF_FFFF) and not ts_newer(0xFFFF_FFFF, 0)


@given(u16, st.integers(-32768, 32767))
def test_seq_diff_inverts_addition(base: int, delta: int) -> None:
    assert seq_diff((base + delta) & 0xFFFF, base) == delta


@given(u32, st.integers(-(2**31), 2**31 - 1))
def test_ts_diff_inverts_addition(base: int, delta: int) -> None:
    assert ts_diff((base + delta) & 0xFFFF_FFFF, base) == delta


def test_rtcp_classification() -> None:
    receiver_report = struct.pack("!BBHI", 0x81, 201, 7, 1234) + bytes(24)
    bye = struct.pack("!BBHI", 0x81, 203, 1, 1234)
    assert is_rtcp(receiver_report) and is_rtcp(bye)
    assert not is_rtcp(bytes(RtpPacket(payload_type=0, sequence=1, timestamp=2, ssrc=3)))
    assert not is_rtcp(bytes(RtpPacket(payload_type=8, sequence=1, timestamp=2, ssrc=3, marker=True)))
    assert not is_rtcp(b"\x80") and not is_rtcp(b"\x00\xc9")
    headers = list(parse_rtcp(receiver_report + bye))
    assert headers == [
        RtcpHeader(packet_type=201, count=1, size=32, padding=False),
        RtcpHeader(packet_type=203, count=1, size=8, padding=False),
    ]


@pytest.mark.parametrize(
    "wire", [b"\x81\xc9", b"\x41\xc9\x00\x00", b"\x81\xc9\x00\x02" + bytes(4), b"\x81\xcb\x00\x00\x81"]
)
def test_rtcp_malformed(wire: bytes) -> None:
    with pytest.raises(RtpParseError):
        list(parse_rtcp(wire))


@given(st.binary(max_size=64))
def test_rtcp_random_bytes(data: bytes) -> None:
    try:
        headers = list(parse_rtcp(data))
    except RtpParseError:
        return
    assert sum(h.size for h in headers) == len(data)
