"""The sip carrier's dial path: the INVITE leaves within dial(), and a dial without RTP ports fails
the leg cleanly (a LegFailed signal, no exception into the service)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from media_peer import port_range

from bridgeline.adapters.carrier_sip import SipCarrier
from bridgeline.adapters.sip_config import RtpSettings, SipSettings, TrunkSettings
from bridgeline.app.ports import LegRequest
from bridgeline.core.commands import LegFailed, LegSignal
from bridgeline.core.model import LeaveReason, Role


@pytest.fixture
def trunk() -> Iterator[socket.socket]:
    """Stands in for the trunk's proxy: a socket nobody reads until the test does."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        yield sock


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _free_rtp_pair() -> int:
    """An even port whose odd neighbour is free too, checked by binding both (other processes, e.g. a
    benchmark, may hold ports anywhere in the test range)."""
    for _ in range(100):
        low, _ = port_range(2)
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
        ):
            try:
                a.bind(("127.0.0.1", low))
                b.bind(("127.0.0.1", low + 1))
            except OSError:
                continue
        return low
    raise RuntimeError("no free RTP port pair found")


@pytest.fixture
async def carrier(trunk: socket.socket) -> AsyncIterator[tuple[SipCarrier, list[tuple[str, LegSignal]]]]:
    low = _free_rtp_pair()
    settings = SipSettings(
        listen=f"127.0.0.1:{_free_udp_port()}",
        rtp=RtpSettings(ports=f"{low}-{low + 1}"),  # room for exactly one leg
        trunk=TrunkSettings(proxy=f"127.0.0.1:{trunk.getsockname()[1]}", domain="trunk.test"),
    )
    sip = SipCarrier(settings)
    signals: list[tuple[str, LegSignal]] = []
    sip.bind(lambda conference_id, signal: signals.append((conference_id, signal)))
    await sip.start()
    try:
        yield sip, signals
    finally:
        await sip.stop()


def _request(leg_id: str) -> LegRequest:
    return LegRequest("conf-1", leg_id, "+14155550123", Role.CUSTOMER, None, 30.0)


async def test_invite_is_on_the_wire_when_dial_returns(
    carrier: tuple[SipCarrier, list[tuple[str, LegSignal]]], trunk: socket.socket
) -> None:
    sip, signals = carrier
    sip.dial(_request("leg-1"))
    data = trunk.recv(65535)  # non-blocking: raises if nothing was sent yet
    assert data.startswith(b"INVITE sip:+14155550123@trunk.test")
    assert sip.media.stats["free_ports"] == 0 and b"m=audio " in data
    assert signals == []


async def test_dial_without_free_rtp_ports_fails_the_leg(
    carrier: tuple[SipCarrier, list[tuple[str, LegSignal]]], trunk: socket.socket
) -> None:
    sip, signals = carrier
    sip.dial(_request("leg-1"))
    sip.dial(_request("leg-2"))  # the range held one pair, now taken
    assert signals == [("conf-1", LegFailed("leg-2", LeaveReason.FAILED))]
    assert trunk.recv(65535).startswith(b"INVITE ")  # leg-1's
    with pytest.raises(BlockingIOError):
        trunk.recv(65535)  # and no INVITE for leg-2
