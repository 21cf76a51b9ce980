"""The engine shell on IPv6 sockets (`rtp.host: ::1`): recvfrom gives 4-tuple sources, the SDP a
host however the peer spelt it; the peers must still latch by their SDP address, a source on another
port must still be refused, and an address of the other family must be refused at connect."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from media_peer import RtpPeer, dominant_freq, join, peers, port_range, until

from bridgeline.adapters.carriers.sip.media_engine import LatchPolicy, MediaEngine
from bridgeline.adapters.carriers.sip.music_fetch import MediaLimits
from bridgeline.adapters.carriers.sip.rtp_udp import PortPool
from bridgeline.adapters.carriers.sip.settings import RtpSettings, SipSettings
from bridgeline.core.effects import LegAudio, MusicSources
from bridgeline.media import g711

PCMU = g711.PCMU
TWO_WAY = [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None)]


@pytest.fixture
async def engine6(tmp_path: Path) -> AsyncIterator[MediaEngine]:
    """An IPv6 engine whose learning window is over before the peers speak: only the SDP rule
    latches (a learning window would hide a broken one)."""
    low, high = port_range(40)
    eng = MediaEngine(
        host="::1",
        port_min=low,
        port_max=high,
        latch=LatchPolicy(learning_window_s=0.0),
        media=MediaLimits(media_dir=tmp_path),
    )
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()
        assert eng.stats["open_sockets"] == 0 and eng.stats["free_ports"] == eng.port_capacity


async def test_ipv6_peers_latch_by_their_sdp_address_however_it_is_spelt(engine6: MediaEngine) -> None:
    async with peers((440, PCMU), (880, PCMU), host="::1") as (a, b):
        port_a = join(engine6, "a", a, sdp_host="0:0:0:0:0:0:0:1")  # RFC 4291's long form
        join(engine6, "b", b, sdp_host="::1")
        engine6.set_routes("c1", TWO_WAY, MusicSources())
        await a.listen(15)
        mark = await a.listen(25)
        assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
        assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)
        assert engine6.stats["rtp_refused_foreign_source"] == 0
        assert all(r.source[:2] == ("::1", port_a) for r in a.received)  # sent from the leg's IPv6 port

        intruder = await RtpPeer.open(1500, host="::1")  # the peers' host, another port
        try:
            for _ in range(20):
                intruder.send_packet(intruder.next_audio_packet(), ("::1", port_a))
            assert await until(lambda: engine6.stats["rtp_refused_foreign_source"] >= 20)
            mark = await a.listen(10)
            assert not intruder.received
            assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)
        finally:
            intruder.close()


async def test_an_ipv4_address_is_refused_by_an_ipv6_engine(engine6: MediaEngine) -> None:
    engine6.open_leg("a")
    with pytest.raises(ValueError, match=r"127\.0\.0\.1 is IPv4 and the RTP sockets are IPv6"):
        engine6.connect_leg(
            "a", remote=("127.0.0.1", 4000), payload_type=PCMU, telephone_event_pt=None, send=True
        )
    with pytest.raises(ValueError, match="IPv4 and the RTP sockets are IPv6"):
        engine6.update_leg("a", remote=("192.0.2.7", 4000))
    engine6.connect_leg("a", remote=("0.0.0.0", 4000), payload_type=PCMU, telephone_event_pt=None, send=True)
    engine6.close_leg("a")


def test_ipv6_rtp_sockets_take_no_ipv4() -> None:
    """`rtp.host: "::"` binds IPv6 only, whatever net.ipv6.bindv6only says: one family per server."""
    low, high = port_range(4)
    _, rtp, rtcp = PortPool("::", low, high).bind_pair()
    try:
        assert rtp.family == socket.AF_INET6
        assert rtp.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert rtcp.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        rtp.close()
        rtcp.close()


def test_rtp_follows_an_ipv6_listen_address_unless_told_otherwise() -> None:
    assert SipSettings(listen="[::1]:5060").rtp.host == "::1"
    assert SipSettings(listen="[::1]:5060", rtp={"ports": "30000-30099"}).rtp.host == "::1"
    assert SipSettings(listen="[::1]:5060", rtp=RtpSettings(ports="30000-30099")).rtp.host == "::1"
    assert SipSettings(listen="[::1]:5060", rtp={"host": "127.0.0.1"}).rtp.host == "127.0.0.1"
    assert SipSettings(listen="127.0.0.1:5060").rtp.host == "127.0.0.1"
    with pytest.raises(ValueError, match="different IP families"):
        RtpSettings(host="::1", public_host="198.51.100.7")
    assert RtpSettings(host="::1", public_host="2001:db8::7").sdp_host == "2001:db8::7"
