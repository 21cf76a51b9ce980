"""The capture reader on hand-made libpcap files: UDP over IPv4 and IPv6 on the link types dumpcap
writes for `lo` and others, IPv6 extension headers walked, fragments and junk skipped unharmed."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from pcapkit import read_pcap

UDP_PAYLOAD = b"\x80\x00hello"


def udp(sport: int, dport: int, payload: bytes = UDP_PAYLOAD) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(body: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(body),
        0,
        0,
        64,
        17,
        0,
        bytes([127, 0, 0, 1]),
        bytes([127, 0, 0, 2]),
    )
    return header + body


def ipv6(next_header: int, body: bytes, src: str = "::1", dst: str = "2001:db8::7") -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, len(body), next_header, 64)
        + socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + body
    )


def extension(next_header: int, length_units: int = 0) -> bytes:
    """A hop-by-hop / routing / destination options header: (length_units + 1) * 8 bytes."""
    return bytes([next_header, length_units]) + bytes(6 + 8 * length_units)


def pcap(linktype: int, frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for n, frame in enumerate(frames):
        out += struct.pack("<IIII", 1000 + n, 0, len(frame), len(frame)) + frame
    return out


def ethernet(kind: bytes, packet: bytes) -> bytes:
    return bytes(12) + kind + packet


def test_udp_over_ipv4_and_ipv6_with_extension_headers(tmp_path: Path) -> None:
    frames = [
        ethernet(b"\x08\x00", ipv4(udp(5000, 6000))),
        ethernet(b"\x86\xdd", ipv6(17, udp(5002, 6002))),
        ethernet(
            b"\x86\xdd", ipv6(0, extension(60, 1) + extension(17) + udp(5004, 6004))
        ),  # hop-by-hop, dest opts
        ethernet(
            b"\x86\xdd", ipv6(51, bytes([17, 1]) + bytes(10) + udp(5006, 6006))
        ),  # AH: (1 + 2) * 4 bytes
        ethernet(b"\x86\xdd", ipv6(44, bytes([17, 0]) + bytes(6) + udp(5008, 6008))),  # a fragment: skipped
        ethernet(b"\x86\xdd", ipv6(0, bytes([0, 0]) * 200)),  # an endless chain of hop-by-hop headers
        ethernet(b"\x86\xdd", ipv6(0, bytes([17, 200]))),  # a header longer than the packet
        ethernet(b"\x86\xdd", ipv6(58, bytes(8))),  # ICMPv6
        ethernet(b"\x86\xdd", b"\x60"),  # cut short
        ethernet(b"\x08\x06", bytes(28)),  # ARP
    ]
    path = tmp_path / "lo.pcap"
    path.write_bytes(pcap(1, frames))
    found = [(d.src, d.sport, d.dst, d.dport, d.payload) for d in read_pcap(path)]
    assert found == [
        ("127.0.0.1", 5000, "127.0.0.2", 6000, UDP_PAYLOAD),
        ("::1", 5002, "2001:db8::7", 6002, UDP_PAYLOAD),
        ("::1", 5004, "2001:db8::7", 6004, UDP_PAYLOAD),
        ("::1", 5006, "2001:db8::7", 6006, UDP_PAYLOAD),
    ]


def test_other_link_types_carry_ipv6_too(tmp_path: Path) -> None:
    packet = ipv6(17, udp(7000, 7002))
    for linktype, frame in (
        (113, bytes(14) + b"\x86\xdd" + packet),  # Linux cooked v1
        (276, b"\x86\xdd" + bytes(18) + packet),  # Linux cooked v2
        (0, (10).to_bytes(4, "little") + packet),  # null: Linux's AF_INET6
        (0, (30).to_bytes(4, "big") + packet),  # null: macOS's, written big-endian
        (101, packet),  # raw IP
        (229, packet),  # raw IPv6
    ):
        path = tmp_path / f"{linktype}.pcap"
        path.write_bytes(pcap(linktype, [frame]))
        assert [(d.src, d.sport, d.dport) for d in read_pcap(path)] == [("::1", 7000, 7002)], linktype
