"""RTP over UDP for the media engine: the port pool and its sockets.

Each leg owns an even RTP port and the odd port above it. We never send RTCP; the RTCP socket exists
so that peers' reports land somewhere harmless (no ICMP port-unreachable, no stray traffic on a port
that a later leg may get) and are counted. What the datagrams mean (latching, jitter, DTMF) is the
pure `media/leg.py`'s business; the sockets are plain non-blocking sockets that the media thread
(`media_thread.py`) drains.
"""

from __future__ import annotations

import socket
from collections import deque


class MediaPortsExhausted(RuntimeError):
    """No free RTP/RTCP port pair is left in the configured range."""


_HOLD_ADDRESSES = frozenset({"0.0.0.0", "::"})  # an SDP's "send nothing": the leg never sends to it


def family_of(host: str) -> socket.AddressFamily:
    """The RTP sockets' family for `rtp.host`: IPv6 for an IPv6 literal, else IPv4."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def peer_address(family: socket.AddressFamily, host: str, port: int) -> tuple[str, int]:
    """A peer's SDP address as our sockets' recvfrom spells it (`::1` for `0:0::1`, lower case), so
    that the leg's latching, which compares strings, knows the peer's packets. ValueError for an
    address of the other family (the offer/answer check refuses those first: this is the last
    line); a host name is left as it is, for sendto to look up."""
    if host in _HOLD_ADDRESSES:
        return host, port
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, host)), port
    except OSError:
        pass
    other = socket.AF_INET if family == socket.AF_INET6 else socket.AF_INET6
    try:
        socket.inet_pton(other, host)
    except OSError:
        return host, port
    ours, theirs = ("IPv6", "IPv4") if family == socket.AF_INET6 else ("IPv4", "IPv6")
    raise ValueError(f"the media address {host} is {theirs} and the RTP sockets are {ours}")


def _bind(host: str, port: int) -> socket.socket:
    family = family_of(host)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            # One family per server (docs/sip.md "IPv6"): `::` must not take IPv4 too, whatever the
            # system's bindv6only says, or IPv4 peers would arrive as ::ffff:a.b.c.d sources.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class PortPool:
    """Even RTP ports in [port_min, port_max] whose odd neighbour is in range too.

    Released ports go to the back of the queue, so a port is reused as late as possible and stray
    packets for a finished call are unlikely to reach the next one. Ports that another process holds
    are skipped (and retried later), not treated as fatal.
    """

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        if not 0 < port_min <= port_max <= 65535:
            raise ValueError(f"bad RTP port range {port_min}-{port_max}")
        self.host = host
        self.family = family_of(host)
        first = port_min + (port_min & 1)
        self._free: deque[int] = deque(range(first, port_max, 2))  # range end excludes an even port_max
        self.capacity = len(self._free)
        if not self.capacity:
            raise ValueError(f"RTP port range {port_min}-{port_max} holds no even/odd port pair")

    @property
    def free(self) -> int:
        return len(self._free)

    def bind_pair(self) -> tuple[int, socket.socket, socket.socket]:
        for _ in range(len(self._free)):
            port = self._free.popleft()
            try:
                rtp = _bind(self.host, port)
            except OSError:
                self._free.append(port)
                continue
            try:
                rtcp = _bind(self.host, port + 1)
            except OSError:
                rtp.close()
                self._free.append(port)
                continue
            return port, rtp, rtcp
        raise MediaPortsExhausted(f"no free RTP port pair on {self.host} ({self.capacity} in the range)")

    def release(self, port: int) -> None:
        self._free.append(port)
