"""Packet capture for the SIP end-to-end suite: dumpcap on the loopback interface, and a reader of
its libpcap files that yields the UDP datagrams, over IPv4 or IPv6."""

from __future__ import annotations

import signal
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sipkit import ProcSet, wait_for


@dataclass(frozen=True, slots=True)
class Datagram:
    at: float  # capture time, seconds since the epoch (same clock as time.time())
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


class Capture:
    """dumpcap on the loopback interface, filtered on the given UDP (and TCP) ports, either direction.

    dumpcap is what tshark captures with; run by itself it is capturing in ~20 ms, where tshark first
    loads every dissector (~0.3 s), and every test starts a capture."""

    def __init__(
        self, procs: ProcSet, work: Path, name: str, ports: Iterable[int], tcp_ports: Iterable[int] = ()
    ) -> None:
        port_list = sorted(set(ports))
        assert port_list, "nothing to capture"
        self.path = work / f"{name}.pcap"
        expression = "(udp and (" + " or ".join(f"port {p}" for p in port_list) + "))"
        if tcp_ports:
            expression += " or (tcp and (" + " or ".join(f"port {p}" for p in sorted(set(tcp_ports))) + "))"
        argv = ["dumpcap", "-i", "lo", "-f", expression, "-w", str(self.path), "-P", "-q"]  # -P: libpcap
        self.proc = procs.start(f"dumpcap-{name}", argv, timeout_s=120)
        wait_for(
            lambda: "Capturing on" in self.proc.stderr() or not self.proc.running,
            20,
            "dumpcap to start capturing",
        )
        if not self.proc.running:
            raise AssertionError(f"dumpcap exited at start:\n{self.proc.tail()}")
        self._datagrams: list[Datagram] | None = None

    def stop(self) -> list[Datagram]:
        if self._datagrams is None:
            time.sleep(0.1)  # let the last packets reach the capture buffer
            self.proc.stop(signal.SIGINT, grace=10)
            self._datagrams = read_pcap(self.path)
        return self._datagrams


def read_pcap(path: Path) -> list[Datagram]:
    """UDP datagrams over IPv4 or IPv6 in a libpcap file (Ethernet, Linux cooked v1/v2, null or raw
    link types). IPv6 extension headers are walked; fragments and anything unreadable are skipped."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise AssertionError(f"{path}: not a libpcap file")
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    out: list[Datagram] = []
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, caplen, _ = record.unpack_from(data, offset)
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        if len(frame) < caplen:
            break  # the last record was cut short
        ip = _ip_packet(frame, linktype)
        found = None if ip is None else _udp4(ip) if ip[:1] and ip[0] >> 4 == 4 else _udp6(ip)
        if found is None:
            continue
        src, dst, udp = found
        if len(udp) < 8:
            continue
        sport, dport, length = struct.unpack_from("!HHH", udp)
        out.append(Datagram(sec + frac / (1e9 if nanos else 1e6), src, sport, dst, dport, udp[8:length]))
    return out


def _udp4(ip: bytes) -> tuple[str, str, bytes] | None:
    if len(ip) < 28 or ip[9] != 17:
        return None
    ihl = (ip[0] & 0x0F) * 4
    return socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), ip[ihl:]


# IPv6 extension headers that may come before UDP (RFC 8200 4.1), by next-header number: their
# length is (byte 1 + 1) * 8, except the Authentication Header's, (byte 1 + 2) * 4 (RFC 4302).
_HOP_BY_HOP, _ROUTING, _FRAGMENT, _AUTH, _DEST_OPTIONS, _UDP = 0, 43, 44, 51, 60, 17


def _udp6(ip: bytes) -> tuple[str, str, bytes] | None:
    if len(ip) < 48 or ip[0] >> 4 != 6:
        return None
    src, dst = socket.inet_ntop(socket.AF_INET6, ip[8:24]), socket.inet_ntop(socket.AF_INET6, ip[24:40])
    next_header, at = ip[6], 40
    for _ in range(16):  # a bounded walk: a looping or endless chain is not a UDP packet
        if next_header == _UDP:
            return src, dst, ip[at:]
        if next_header == _FRAGMENT or len(ip) < at + 2:
            return None  # a fragment's UDP header is in its first piece only: not reassembled here
        if next_header in (_HOP_BY_HOP, _ROUTING, _DEST_OPTIONS):
            next_header, at = ip[at], at + (ip[at + 1] + 1) * 8
        elif next_header == _AUTH:
            next_header, at = ip[at], at + (ip[at + 1] + 2) * 4
        else:
            return None  # ESP, ICMPv6, no next header...
    return None


_IPV4_TYPE, _IPV6_TYPE = b"\x08\x00", b"\x86\xdd"
_NULL_INET6 = {10, 24, 28, 30}  # a null/loopback header's AF_INET6 (Linux, BSDs, macOS)


def _ip_packet(frame: bytes, linktype: int) -> bytes | None:
    if linktype == 1:  # Ethernet
        return frame[14:] if frame[12:14] in (_IPV4_TYPE, _IPV6_TYPE) else None
    if linktype == 113:  # Linux cooked v1
        return frame[16:] if frame[14:16] in (_IPV4_TYPE, _IPV6_TYPE) else None
    if linktype == 276:  # Linux cooked v2
        return frame[20:] if frame[0:2] in (_IPV4_TYPE, _IPV6_TYPE) else None
    if linktype == 0 and len(frame) >= 4:  # BSD loopback: the family in host byte order
        family = int.from_bytes(frame[:4], "little")
        if family > 0xFFFF:  # written by a big-endian host
            family = int.from_bytes(frame[:4], "big")
        return frame[4:] if family == 2 or family in _NULL_INET6 else None
    if linktype in (12, 101, 228, 229):  # raw IP, raw IPv4, raw IPv6
        return frame
    return None


def sip_messages(datagrams: Iterable[Datagram], port: int) -> list[tuple[Datagram, str]]:
    """SIP messages to or from a port: (datagram, first line)."""
    found = []
    for d in datagrams:
        if port not in (d.sport, d.dport) or not d.payload[:3].isalpha():
            continue
        first = d.payload.split(b"\r\n", 1)[0].decode(errors="replace")
        if first.startswith("SIP/2.0 ") or first.endswith(" SIP/2.0"):
            found.append((d, first))
    return found
