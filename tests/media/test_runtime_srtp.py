"""SRTP legs in the media runtime on a virtual clock: audio flows both ways encrypted, and forged,
corrupted, replayed or garbage packets are dropped, counted and reported once per interval, and
never latch the leg or move its latch (the open-network protections of media/leg.py still hold).
Every test runs twice: datagrams handed over one by one (`receive`), and as read rounds
(`receive_all`, which unprotects a round's SRTP in one call), as the SIP carrier does."""

from __future__ import annotations

import gc
import random

import numpy as np
import pylibsrtp
import pytest
from media_sim import G722, PCMU, Sim, SimPeer, dominant_freq, level_at, spectrum

from bridgeline.core.effects import LegAudio
from bridgeline.media import g711, srtp
from bridgeline.media import runtime as runtime_module
from bridgeline.media._srtp_call import Processor
from bridgeline.media.leg_types import LatchPolicy, SrtpDropped
from bridgeline.media.srtp import SrtpContext, SrtpKeys, SrtpRefused, key_length

TWO_WAY = [LegAudio("a", ("b",), None), LegAudio("b", ("a",), None)]
RTCP_RR = bytes([0x81, 201, 0x00, 0x01]) + (0x1234).to_bytes(4, "big")
_rng = random.Random(7)


@pytest.fixture(autouse=True, params=["one by one", "in rounds"])
def handed_over(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Sim, "rounds", request.param == "in rounds")


def keys(suite: str = "AES_CM_128_HMAC_SHA1_80") -> SrtpKeys:
    return SrtpKeys(suite, _rng.randbytes(key_length(suite)), _rng.randbytes(key_length(suite)))


def srtp_call(sim: Sim, suite: str = "AES_CM_128_HMAC_SHA1_80") -> tuple[SimPeer, SimPeer, SrtpKeys]:
    """Leg a speaks SRTP with its peer (440 Hz), leg b plain RTP (880 Hz); they hear each other."""
    a, b = sim.peer(440), sim.peer(880)
    leg_keys = keys(suite)
    sim.join("a", a, srtp=leg_keys)
    sim.join("b", b)
    sim.runtime.set_routes("c1", TWO_WAY, {})
    return a, b, leg_keys


def share_at(pcm: np.ndarray, freq: float, width_hz: float = 20.0) -> float:
    """The share of the signal's energy within width_hz of freq."""
    freqs, mags = spectrum(pcm)
    power = mags**2
    return float(power[np.abs(freqs - freq) <= width_hz].sum() / power[1:].sum())


def forged(peer: SimPeer, wrong_key: bytes | None = None) -> bytes:
    """The peer's next audio packet, protected with a key that is not the peer's."""
    packet = peer.next_audio_packet().serialize()
    assert peer.srtp is not None
    suite = peer.srtp.keys.suite
    length = key_length(suite)
    return SrtpContext(SrtpKeys(suite, wrong_key or _rng.randbytes(length), bytes(length))).protect(packet)


@pytest.mark.parametrize(
    ("suite", "tag"),
    [
        ("AES_CM_128_HMAC_SHA1_80", 10),
        ("AES_CM_128_HMAC_SHA1_32", 4),
        ("AEAD_AES_128_GCM", 16),
        ("AEAD_AES_256_GCM", 16),
    ],
)
def test_audio_flows_both_ways_and_the_wire_does_not_carry_g711(suite: str, tag: int) -> None:
    sim = Sim()
    a, b, _ = srtp_call(sim, suite)
    mark = sim.settle()
    sim.run(0.6)
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
    assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)
    assert {len(d) for d in a.wire} == {12 + 160 + tag}
    on_wire = np.concatenate([g711.decode(PCMU, d[12 : 12 + 160]) for d in a.wire[-30:]])
    assert share_at(on_wire, 880) < 0.05  # noise: the tone's energy is not in the encrypted payload
    heard = np.concatenate([g711.decode(PCMU, p.payload) for p in a.packets[-30:]])
    assert share_at(heard, 880) > 0.8  # what the phone decrypted is the tone
    assert sim.runtime.counters.srtp_auth_failed == 0 and sim.runtime.counters.srtp_replayed == 0


def test_forged_replayed_and_garbage_packets_are_dropped_counted_and_reported_once() -> None:
    sim = Sim()
    a, b, _ = srtp_call(sim)
    sim.run(0.3)
    genuine = a.audio_packet()
    sim.send("a", genuine, a.address)
    mark = sim.now
    hostile: list[bytes] = []
    for _ in range(10):
        tampered = bytearray(a.audio_packet())
        tampered[-1] ^= 0x01  # a bad authentication tag
        hostile.append(bytes(tampered))
        body = bytearray(a.audio_packet())
        body[20] ^= 0xFF  # a flipped payload bit
        hostile.append(bytes(body))
        hostile.append(forged(a))  # another key
        hostile.append(a.next_audio_packet().serialize())  # plain RTP on an SRTP leg
        hostile.append(_rng.randbytes(_rng.randrange(0, 300)))  # garbage
        hostile.append(b"\x80\x00\x00")  # too short
        hostile.append(genuine[:12] + bytes(1600))  # too long for libsrtp's buffer
        hostile.append(genuine)  # a replay
    for data in hostile:
        sim.send("a", data, a.address)
    sim.send("a", RTCP_RR, a.address, kind="rtcp")  # plain RTCP where SRTCP is due
    sim.run(0.6)
    c = sim.runtime.counters
    assert c.srtp_replayed == 10
    assert c.srtp_auth_failed == 71
    assert c.relatched == 0 and c.rtcp_in == 0
    reports = [e for e in sim.events if isinstance(e, SrtpDropped)]
    assert len(reports) == 1 and reports[0].leg_id == "a" and reports[0].source == a.address
    heard_by_b = b.pcm_since(mark)
    assert dominant_freq(heard_by_b) == pytest.approx(440, abs=4)  # the call goes on untouched
    assert level_at(heard_by_b, 440) > 0.9


def test_drops_are_reported_again_after_the_interval() -> None:
    sim = Sim(LatchPolicy(refused_log_interval_s=0.2))
    a, _, _ = srtp_call(sim)
    for _ in range(30):
        sim.send("a", forged(a), a.address)
        sim.step()
    reports = [e for e in sim.events if isinstance(e, SrtpDropped)]
    assert 2 <= len(reports) <= 4 and sum(r.dropped_since_last for r in reports) <= 30


def test_a_forged_packet_from_the_sdp_address_does_not_move_the_latch() -> None:
    """Behind NAT the peer latched from another address than its SDP's. A packet from the SDP
    address re-latches at once in plain RTP; forged or replayed SRTP from there must not."""
    sim = Sim()
    a, b = sim.peer(440), sim.peer(880)
    leg_keys = keys()
    sim.join("a", a, srtp=leg_keys, talk=False)
    sim.join("b", b)
    sim.runtime.set_routes("c1", TWO_WAY, {})
    nat = ("127.0.0.1", a.address[1] + 1000)
    sim.peers[nat] = a
    sim.start_talking(a, "a", source=nat)  # learned within the window
    sim.run(0.3)
    captured = [a.audio_packet() for _ in range(5)]
    for data in captured:
        sim.send("a", data, nat)
    mark = sim.now
    for data in captured:
        sim.send("a", data, a.address)  # replays, from the SDP address
    for _ in range(20):
        sim.send("a", forged(a), a.address)  # forgeries with the peer's SSRC, from the SDP address
        sim.step()
    c = sim.runtime.counters
    assert c.relatched == 0
    assert c.srtp_replayed == 5 and c.srtp_auth_failed == 20
    sent_to_nat = [p for at, p in a.received if at >= mark]
    assert len(sent_to_nat) == 20  # our audio still goes to the latched NAT address


def test_forgeries_in_the_learning_window_latch_nothing() -> None:
    sim = Sim()
    a, b = sim.peer(440), sim.peer(880)
    sim.join("a", a, srtp=keys(), talk=False)
    sim.join("b", b)
    sim.runtime.set_routes("c1", TWO_WAY, {})
    attacker = sim.peer(1500)
    for _ in range(10):
        sim.send("a", forged(a), attacker.address)
        sim.step()
    assert not attacker.received  # plain RTP from it would have latched the leg
    nat = ("127.0.0.1", a.address[1] + 1000)
    sim.peers[nat] = a
    sim.start_talking(a, "a", source=nat)
    mark = sim.settle()
    sim.run(0.4)
    assert not attacker.received
    assert dominant_freq(a.pcm_since(mark)) == pytest.approx(880, abs=4)
    assert sim.runtime.counters.relatched == 0


def test_srtcp_is_checked_and_counted() -> None:
    sim = Sim()
    a, _, leg_keys = srtp_call(sim)
    sim.run(0.1)
    policy = pylibsrtp.Policy(key=leg_keys.remote_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    peer_rtcp = pylibsrtp.Session(policy)  # the peer's SRTCP sender
    sim.send("a", peer_rtcp.protect_rtcp(RTCP_RR), a.address, kind="rtcp")
    sim.send("a", peer_rtcp.protect_rtcp(RTCP_RR), a.address, kind="rtp")  # multiplexed (RFC 5761)
    bad = bytearray(peer_rtcp.protect_rtcp(RTCP_RR))
    bad[-1] ^= 1
    sim.send("a", bytes(bad), a.address, kind="rtcp")
    sim.flush()
    c = sim.runtime.counters
    assert c.rtcp_in == 2 and c.srtp_auth_failed == 1


def test_a_reoffer_with_a_new_peer_key_is_followed() -> None:
    sim = Sim()
    a, b, leg_keys = srtp_call(sim)
    sim.run(0.2)
    renewed = SrtpKeys(leg_keys.suite, leg_keys.local_key, _rng.randbytes(30))
    sim.runtime.update_leg("a", now=sim.now, srtp=renewed)
    a.srtp = SrtpContext(SrtpKeys(renewed.suite, renewed.remote_key, renewed.local_key))
    mark = sim.settle()
    sim.run(0.4)
    assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)
    assert sim.runtime.counters.srtp_auth_failed == 0


def test_unusable_keys_are_refused_at_connect() -> None:
    sim = Sim()
    peer = sim.peer(440)
    sim.runtime.open_leg("x")
    for bad in (
        SrtpKeys("AES_256_CM_HMAC_SHA1_80", bytes(30), bytes(30)),
        SrtpKeys(keys().suite, b"k", b"k"),
        SrtpKeys("AEAD_AES_128_GCM", bytes(30), bytes(30)),  # an AES_CM key length
        SrtpKeys("AEAD_AES_256_GCM", bytes(28), bytes(28)),
    ):
        with pytest.raises(ValueError):
            sim.runtime.connect_leg(
                "x",
                remote=peer.address,
                payload_type=PCMU,
                telephone_event_pt=None,
                send=True,
                now=sim.now,
                srtp=bad,
            )
    with pytest.raises(SrtpRefused):
        SrtpContext(keys()).unprotect(b"")


def test_a_context_dropped_by_its_owner_still_protects() -> None:
    # The methods are closures over libsrtp's context: they must keep it alive on their own.
    protect = SrtpContext(keys()).protect
    gc.collect()
    assert len(protect(bytes([0x80, 0, 0, 1]) + bytes(168))) == 182


def test_a_g722_leg_over_srtp_hears_a_g711_leg() -> None:
    sim = Sim()
    wide, narrow = sim.peer(1000, G722), sim.peer(440, PCMU)
    sim.join("w", wide, srtp=keys())
    sim.join("n", narrow)
    sim.runtime.set_routes("c1", [LegAudio("w", ("n",), None), LegAudio("n", ("w",), None)], {})
    mark = sim.settle(0.5)
    sim.run(0.5)
    assert {len(d) for d in wide.wire} == {12 + 160 + 10} and {p.payload_type for p in wide.packets} == {G722}
    assert dominant_freq(wide.pcm_since(mark), wide.rate) == pytest.approx(440, abs=4)
    assert dominant_freq(narrow.pcm_since(mark)) == pytest.approx(1000, abs=4)
    assert sim.runtime.counters.srtp_auth_failed == 0


def test_a_packet_libsrtp_will_not_protect_is_counted_and_not_sent_and_the_other_legs_still_send() -> None:
    sim = Sim()
    a, b = sim.peer(440), sim.peer(880)
    sim.join("a", a, srtp=keys("AEAD_AES_128_GCM"))
    sim.join("b", b, srtp=keys())
    sim.runtime.set_routes("c1", TWO_WAY, {})
    sim.run(0.2)
    context = sim.runtime._legs["a"].srtp
    assert context is not None
    working = context.protect
    # A processor whose buffer takes no packet: each one is refused before libsrtp sees it.
    context.protect = Processor(srtp._PROTECT, 1, object(), srtp._refused, 0)
    sent_to_a, mark = len(a.received), sim.now
    sim.run(0.2)
    assert len(a.received) == sent_to_a and sim.runtime.counters.srtp_protect_failed == 10
    assert b.count_since(mark) == 10  # the tick's other SRTP packets were protected and sent
    context.protect = working
    sim.run(0.1)
    sequences = [p.sequence for p in a.packets]
    assert sequences[sent_to_a] - sequences[sent_to_a - 1] == 11  # the refused ones left a gap
    assert sim.runtime.counters.srtp_auth_failed == 0


def test_the_map_of_legs_whose_rtp_a_round_checks_follows_connect_rekey_and_close() -> None:
    """`receive_all` unprotects with what this map holds, so it must always be each connected SRTP
    leg's current context: never a key the leg has left, never a leg that is not SRTP any more."""
    sim = Sim()
    runtime, peer = sim.runtime, sim.peer(440)

    def connect(srtp: SrtpKeys | None) -> None:
        remote = peer.address
        runtime.connect_leg(
            "a", remote=remote, payload_type=PCMU, telephone_event_pt=None, send=True, now=sim.now, srtp=srtp
        )

    def current() -> Processor | None:
        context = runtime._legs["a"].srtp
        return None if context is None else context.unprotect

    runtime.open_leg("a")
    assert runtime._inbound == {}  # opened, not connected
    first = keys()
    connect(first)
    assert runtime._inbound == {"a": current()}
    before = current()
    runtime.update_leg("a", now=sim.now, srtp=SrtpKeys(first.suite, first.local_key, _rng.randbytes(30)))
    assert runtime._inbound == {"a": current()} and current() is not before
    with pytest.raises(ValueError):
        connect(SrtpKeys(first.suite, b"short", b"short"))  # refused: the leg keeps no stale entry
    assert runtime._inbound.get("a") in (None, current())
    connect(None)
    assert runtime._inbound == {}
    connect(keys("AEAD_AES_128_GCM"))
    assert runtime._inbound == {"a": current()}
    runtime.close_leg("a")
    assert runtime._inbound == {}


def test_a_read_round_is_unprotected_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Sim, "rounds", True)
    calls: list[list[bytes | int | None]] = []

    def spy(arrived: list[runtime_module.Arrived], inbound: srtp.Inbound) -> list[bytes | int | None]:
        calls.append(srtp.unprotect_all(arrived, inbound))
        return calls[-1]

    monkeypatch.setattr(runtime_module, "unprotect_all", spy)
    sim = Sim()
    _, b, _ = srtp_call(sim)
    mark = sim.settle()
    sim.run(0.2)
    # Each tick's round: a's SRTP came back unprotected from the batch, b's plain RTP as it was.
    assert len(calls) == 25 and all([type(checked) for checked in c] == [bytes, type(None)] for c in calls)
    assert dominant_freq(b.pcm_since(mark)) == pytest.approx(440, abs=4)
