"""The sip carrier's dial path: the INVITE leaves within dial(), and a dial without RTP ports fails
the leg cleanly (a LegFailed signal, no exception into the service); an inbound INVITE without RTP
ports is an overload (503 with Retry-After); the carrier's counters."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from media_peer import port_range
from pydantic import ValidationError

from bridgeline.adapters.carriers.sip.carrier import SipCarrier
from bridgeline.adapters.carriers.sip.media_engine import LatchPolicy
from bridgeline.adapters.carriers.sip.settings import RtpSettings, SipSettings, TrunkSettings
from bridgeline.app.ports import LegRequest
from bridgeline.core.commands import LegFailed, LegSignal
from bridgeline.core.model import LeaveReason, Role
from bridgeline.media import opus


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
        rtp=RtpSettings(ports=f"{low}-{low + 1}", overload_retry_after_s=7),  # room for exactly one leg
        # keepalive_s=0: the stand-in answers no OPTIONS, and each test reads what reaches it
        trunk=TrunkSettings(proxy=f"127.0.0.1:{trunk.getsockname()[1]}", domain="trunk.test", keepalive_s=0),
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
    stats = sip.stats()
    assert stats["rtp_ports_exhausted"] == 1
    assert stats["rtp_ports_in_use"] == stats["rtp_ports_capacity"] == 1


def _inbound_invite(target: tuple[str, int], source: int) -> bytes:
    sdp = (
        b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    host, port = target
    head = (
        f"INVITE sip:+14155559999@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{source};rport;branch=z9hG4bKfull1\r\n"
        "From: <sip:+14155550000@127.0.0.1>;tag=f1\r\n"
        f"To: <sip:+14155559999@{host}>\r\n"
        "Call-ID: full-1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:x@127.0.0.1:{source}>\r\nMax-Forwards: 70\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
    )
    return head.encode() + sdp


async def test_inbound_invite_without_free_rtp_ports_is_an_overload(
    carrier: tuple[SipCarrier, list[tuple[str, LegSignal]]], trunk: socket.socket
) -> None:
    """From the trunk's host (trusted): 503 with the configured Retry-After, not 488."""
    sip, _ = carrier
    sip.dial(_request("leg-1"))  # takes the only port pair
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as caller:
        caller.bind(("127.0.0.1", 0))
        caller.setblocking(False)
        caller.sendto(
            _inbound_invite(sip.settings.listen_address, caller.getsockname()[1]), sip.settings.listen_address
        )
        loop = asyncio.get_running_loop()
        final = b""
        async with asyncio.timeout(2):
            while not final:
                data = await loop.sock_recv(caller, 65535)
                if not data.startswith(b"SIP/2.0 1"):  # provisional answers first
                    final = data
    assert final.startswith(b"SIP/2.0 503 "), final
    assert b"\r\nRetry-After: 7\r\n" in final
    assert sip.stats()["rtp_ports_exhausted"] == 1


def test_latching_settings_reach_the_media_engine() -> None:
    rtp = RtpSettings(
        ports="20000-20001",
        learning_window_ms=1500,
        relatch_silence_ms=400,
        relatch_packets=3,
        refused_log_interval_s=2.5,
    )
    sip = SipCarrier(SipSettings(rtp=rtp))
    assert sip.media.latch == LatchPolicy(
        learning_window_s=1.5, relatch_silence_s=0.4, relatch_packets=3, refused_log_interval_s=2.5
    )


def test_rtp_codecs_setting_defaults_to_g711_first_and_is_validated() -> None:
    assert RtpSettings().codecs == ("PCMU", "PCMA", "G722")
    assert RtpSettings(codecs=("g722", "PCMA")).codecs == ("G722", "PCMA")
    for bad in (("G729",), (), ("PCMU", "PCMU")):
        with pytest.raises(ValidationError):
            RtpSettings(codecs=bad)


def test_opus_is_opt_in_and_refused_without_libopus(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "OPUS" not in RtpSettings().codecs
    assert RtpSettings(codecs=("opus", "PCMU")).codecs == ("OPUS", "PCMU")
    monkeypatch.setattr(opus, "AVAILABLE", False)  # a machine without Debian's libopus0
    with pytest.raises(ValidationError, match="libopus"):
        RtpSettings(codecs=("opus", "PCMU"))


async def test_the_invite_offers_the_codecs_setting_in_its_order(trunk: socket.socket) -> None:
    low = _free_rtp_pair()
    settings = SipSettings(
        listen=f"127.0.0.1:{_free_udp_port()}",
        rtp=RtpSettings(ports=f"{low}-{low + 1}", codecs=("G722", "PCMA")),
        trunk=TrunkSettings(proxy=f"127.0.0.1:{trunk.getsockname()[1]}", domain="trunk.test"),
    )
    sip = SipCarrier(settings)
    sip.bind(lambda conference_id, signal: None)
    await sip.start()
    try:
        sip.dial(_request("leg-1"))
        data = trunk.recv(65535)
    finally:
        await sip.stop()
    assert f"m=audio {low} RTP/AVP 9 8 101\r\n".encode() in data
    assert b"a=rtpmap:9 G722/8000\r\n" in data
