"""media/srtp.py's C call into libsrtp (`_srtp_call.c`): it must give byte for byte what pylibsrtp's
own API gives, refuse each bad packet with the right reason, one packet at a time, and never crash
on input of the wrong kind or size; `protect_all`, a tick's packets in one call, must give what the
single-packet path gives, in order, leaving out and counting what libsrtp refuses."""

from __future__ import annotations

import contextlib
import random
import sys
import threading

import pylibsrtp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgeline.media import srtp
from bridgeline.media._srtp_call import BUFFER_SIZE, Processor
from bridgeline.media.srtp import MAX_PACKET, Refusal, SrtpContext, SrtpKeys, SrtpRefused, key_length

SUITE = "AES_CM_128_HMAC_SHA1_80"
# Each suite's pylibsrtp profile and the bytes its tag adds to an RTP packet.
SUITES = {
    "AES_CM_128_HMAC_SHA1_80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 10),
    "AES_CM_128_HMAC_SHA1_32": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 4),
    "AEAD_AES_128_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16),
    "AEAD_AES_256_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 16),
}
each_suite = pytest.mark.parametrize("suite", list(SUITES))
_rng = random.Random(11)


def rtp(seq: int, ssrc: int = 0x1234, payload: bytes = bytes(160)) -> bytes:
    return (
        bytes([0x80, 0])
        + seq.to_bytes(2, "big")
        + (seq * 160).to_bytes(4, "big")
        + ssrc.to_bytes(4, "big")
        + payload
    )


def pair(suite: str = SUITE) -> tuple[SrtpContext, SrtpContext]:
    """Our context and the peer's (the mirror image of our keys)."""
    length = key_length(suite)
    ours = SrtpKeys(suite, _rng.randbytes(length), _rng.randbytes(length))
    return SrtpContext(ours), SrtpContext(SrtpKeys(suite, ours.remote_key, ours.local_key))


def reference(key: bytes, ssrc_type: int, suite: str = SUITE) -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=SUITES[suite][0]))


@each_suite
def test_protect_and_unprotect_match_pylibsrtp_byte_for_byte(suite: str) -> None:
    ours, _ = pair(suite)
    sender = reference(ours.keys.local_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, suite)
    receiver = reference(ours.keys.local_key, pylibsrtp.Policy.SSRC_ANY_INBOUND, suite)
    peer_sender = reference(ours.keys.remote_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, suite)
    assert len(ours.protect(rtp(99))) == 12 + 160 + SUITES[suite][1]
    for seq in range(5):
        packet = rtp(seq, payload=_rng.randbytes(160))
        protected = ours.protect(packet)
        assert protected == sender.protect(packet)
        assert receiver.unprotect(protected) == packet
        from_peer = peer_sender.protect(packet)
        assert ours.unprotect(from_peer) == packet
    rtcp = bytes([0x81, 201, 0, 1]) + (0x77).to_bytes(4, "big")
    assert ours.unprotect_rtcp(peer_sender.protect_rtcp(rtcp)) == rtcp


@each_suite
def test_each_bad_packet_is_refused_with_its_reason_and_good_ones_still_pass(suite: str) -> None:
    ours, peer = pair(suite)
    first, second = peer.protect(rtp(1)), peer.protect(rtp(2))
    tampered = bytearray(second)
    tampered[-1] ^= 1
    refusals = []
    for data in (bytes(tampered), first, first, b"\x80\x00", second, second):
        try:
            ours.unprotect(data)
            refusals.append(None)
        except SrtpRefused as refused:
            refusals.append(refused.refusal)
    # The tampered packet did not consume the genuine one's index: it still authenticates once.
    assert refusals == [Refusal.AUTH, None, Refusal.REPLAY, Refusal.MALFORMED, None, Refusal.REPLAY]


@each_suite
def test_a_packet_too_long_for_the_buffer_is_malformed_and_the_longest_that_fits_passes(suite: str) -> None:
    ours, peer = pair(suite)
    tag = SUITES[suite][1]
    assert len(ours.protect(rtp(1, payload=bytes(MAX_PACKET - 12)))) == MAX_PACKET + tag
    fits = rtp(2, payload=bytes(MAX_PACKET - 12 - tag))  # protected, exactly MAX_PACKET long
    assert peer.unprotect(ours.protect(fits)) == fits
    for data in (rtp(3, payload=bytes(MAX_PACKET - 11)), bytes(4000)):
        with pytest.raises(SrtpRefused) as refused:
            ours.protect(data)
        assert refused.value.refusal is Refusal.MALFORMED
        with pytest.raises(SrtpRefused):
            ours.unprotect(data)


def test_any_bytes_like_packet_is_taken_and_anything_else_is_a_type_error() -> None:
    ours, peer = pair()
    packet = rtp(3)
    protected = ours.protect(bytearray(packet))
    assert isinstance(protected, bytes) and peer.unprotect(memoryview(protected)) == packet
    for wrong in ("text", 42, None):
        with pytest.raises(TypeError):
            ours.protect(wrong)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ours.protect(packet, packet)  # type: ignore[call-arg]


def test_threads_calling_processors_at_once_each_get_their_own_packets() -> None:
    """Every processor shares one buffer, which is safe only while each call holds the GIL from
    start to end: threads switching as often as CPython allows must still get back what they sent."""
    failures: list[str] = []

    def talk(thread: int) -> None:
        ours, peer = pair()
        for seq in range(400):
            packet = rtp(seq, ssrc=thread + 1, payload=bytes([thread]) * (100 + thread))
            if peer.unprotect(ours.protect(packet)) != packet:
                failures.append(f"thread {thread}, packet {seq}")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=talk, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []


def test_a_processor_refuses_arguments_it_cannot_use() -> None:
    session = reference(bytes(30), pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    for function, context, max_packet in (
        (srtp._PROTECT, 0, 100),
        (0, 1, 100),
        (srtp._PROTECT, 1, BUFFER_SIZE + 1),
    ):
        with pytest.raises(ValueError):
            Processor(function, context, session, srtp._refused, max_packet)
    with pytest.raises(TypeError):
        Processor(srtp._PROTECT, 1, session, "not callable", 100)  # type: ignore[arg-type]


def test_an_error_raised_while_refusing_is_the_one_raised() -> None:
    def broken(status: int) -> SrtpRefused:
        raise LookupError(status)

    # Too long: refused before libsrtp would see the (bogus) session address.
    strict = Processor(srtp._UNPROTECT, 1, object(), broken, 100)
    with pytest.raises(LookupError):
        strict(bytes(101))


# ------------------------------------------------------------------ protect_all: a tick's batch
def twins(suite: str) -> tuple[SrtpContext, SrtpContext, SrtpContext]:
    """Two contexts with the same keys (one for the batch, one for the single-packet path) and the
    peer that checks what they send."""
    ours, peer = pair(suite)
    return ours, SrtpContext(ours.keys), peer


@each_suite
def test_a_batch_protects_as_the_single_packet_path_does_in_order(suite: str) -> None:
    legs = [twins(suite) for _ in range(4)]
    dest = ("127.0.0.1", 4000)
    for seq in range(3):
        packets = [rtp(seq, ssrc=0x100 + i, payload=_rng.randbytes(160)) for i in range(len(legs))]
        pending = [
            (f"l{i}", p, dest, batch.protect)
            for i, (p, (batch, _, _)) in enumerate(zip(packets, legs, strict=True))
        ]
        out: list[tuple[str, bytes, tuple[str, int]]] = [("plain", b"already there", dest)]
        assert srtp.protect_all(pending, out) == 0
        assert out[0] == ("plain", b"already there", dest)
        assert [(leg_id, d) for leg_id, _, d in out[1:]] == [(f"l{i}", dest) for i in range(len(legs))]
        for (_, protected, _), packet, (_, single, peer) in zip(out[1:], packets, legs, strict=True):
            assert protected == single.protect(packet)
            assert peer.unprotect(protected) == packet


def test_a_refused_packet_in_the_middle_of_a_batch_is_counted_and_left_out() -> None:
    (first, _, first_peer), (second, _, _), (third, _, third_peer) = (twins(SUITE) for _ in range(3))
    dest = ("127.0.0.1", 4000)
    pending = [
        ("a", rtp(1, ssrc=1), dest, first.protect),
        ("b", rtp(1, ssrc=2, payload=bytes(MAX_PACKET)), dest, second.protect),  # too long
        ("b", b"\x80\x00\x00", dest, second.protect),  # too short for an RTP header
        ("c", rtp(1, ssrc=3), dest, third.protect),
    ]
    out: list[tuple[str, bytes, tuple[str, int]]] = []
    assert srtp.protect_all(pending, out) == 2
    assert [leg_id for leg_id, _, _ in out] == ["a", "c"]
    assert first_peer.unprotect(out[0][1]) == rtp(1, ssrc=1)
    assert third_peer.unprotect(out[1][1]) == rtp(1, ssrc=3)


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 0xFFFF), st.integers(0, MAX_PACKET + 40)),
        max_size=12,
    )
)
@settings(max_examples=60, deadline=None)
def test_any_batch_gives_what_the_single_packet_path_gives(items: list[tuple[int, int, int]]) -> None:
    legs = [twins("AEAD_AES_128_GCM"), twins(SUITE), twins("AES_CM_128_HMAC_SHA1_32")]
    dest = ("::1", 5004, 0, 0)
    pending, expected = [], []
    for leg, seq, size in items:
        packet = rtp(seq, ssrc=leg + 1)[: min(size, 12)] + bytes(max(size - 12, 0))
        batch, single, _ = legs[leg]
        pending.append((str(leg), packet, dest, batch.protect))
        with contextlib.suppress(SrtpRefused):  # refused one at a time: left out of the batch's output
            expected.append((str(leg), single.protect(packet), dest))
    out: list[tuple[str, bytes, tuple[str, int, int, int]]] = []
    assert srtp.protect_all(pending, out) == len(items) - len(expected)
    assert out == expected


def test_a_batch_of_the_wrong_shape_is_a_type_error() -> None:
    ours, _ = pair()
    dest = ("127.0.0.1", 4000)
    for pending, out in (
        ((("a", rtp(1), dest, ours.protect),), []),  # not a list
        ([("a", rtp(1), dest, ours.protect)], ()),
        ([("a", rtp(1), dest)], []),
        ([("a", bytearray(rtp(1)), dest, ours.protect)], []),
        ([("a", rtp(1), dest, lambda packet: packet)], []),
        (["a"], []),
    ):
        with pytest.raises(TypeError):
            srtp.protect_all(pending, out)  # type: ignore[arg-type]


# ------------------------------------------------------------------ unprotect_all: a read round's batch
SOURCE = ("127.0.0.1", 5004)


def single_path(context: SrtpContext, data: bytes) -> bytes | Refusal:
    """What the one-packet-at-a-time path makes of an SRTP leg's RTP: the packet, or why not."""
    try:
        return context.unprotect(data)
    except SrtpRefused as refused:
        return refused.refusal


def batch_path(checked: bytes | int | None) -> bytes | Refusal | None:
    return srtp.refusal(checked) if isinstance(checked, int) else checked


def srtcp(peer: SrtpContext) -> bytes:
    """An SRTCP receiver report from `peer`'s outbound session (pylibsrtp's, same key)."""
    sender = reference(peer.keys.local_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, peer.keys.suite)
    return sender.protect_rtcp(bytes([0x81, 201, 0, 1]) + (0x77).to_bytes(4, "big"))


def test_a_round_with_a_forged_a_replayed_and_srtcp_packets_among_good_ones() -> None:
    (a, a_single, a_peer), (b, b_single, b_peer) = twins(SUITE), twins("AEAD_AES_128_GCM")
    good = [a_peer.protect(rtp(seq, ssrc=1)) for seq in range(3)]
    forged = bytearray(b_peer.protect(rtp(7, ssrc=2)))
    forged[-1] ^= 1
    b_good = b_peer.protect(rtp(8, ssrc=2))
    arrived = [
        ("a", "rtp", good[0], SOURCE),
        ("b", "rtp", bytes(forged), SOURCE),  # a bad tag between good packets
        ("a", "rtp", good[1], SOURCE),
        ("a", "rtp", good[0], SOURCE),  # a replay
        ("a", "rtp", srtcp(a_peer), SOURCE),  # SRTCP multiplexed on the RTP port: the caller's
        ("a", "rtcp", srtcp(a_peer), SOURCE),  # the RTCP port: the caller's
        ("plain", "rtp", rtp(1), SOURCE),  # a leg without SRTP
        ("gone", "rtp", good[2], SOURCE),  # a leg not in the map (closed)
        ("b", "rtp", b_good, SOURCE),
        ("a", "rtp", b"\x80", SOURCE),  # too short
        ("a", "rtp", good[2], SOURCE),
    ]
    checked = srtp.unprotect_all(arrived, {"a": a.unprotect, "b": b.unprotect})
    assert [batch_path(c) for c in checked] == [
        rtp(0, ssrc=1),
        Refusal.AUTH,
        rtp(1, ssrc=1),
        Refusal.REPLAY,
        None,
        None,
        None,
        None,
        rtp(8, ssrc=2),
        Refusal.MALFORMED,
        rtp(2, ssrc=1),
    ]
    # The same packets one at a time, on contexts with the same keys, give the same.
    for leg_id, data, expected in (("a", good[0], rtp(0, ssrc=1)), ("b", bytes(forged), Refusal.AUTH)):
        assert single_path(a_single if leg_id == "a" else b_single, data) == expected
    assert single_path(b_single, b_good) == rtp(8, ssrc=2)
    # The forged packet used up nothing: the genuine packets after it still authenticate.
    assert a.unprotect(a_peer.protect(rtp(3, ssrc=1))) == rtp(3, ssrc=1)


def test_an_empty_map_or_round_checks_nothing() -> None:
    ours, peer = pair()
    assert srtp.unprotect_all([], {"a": ours.unprotect}) == []
    packet = peer.protect(rtp(1))
    assert srtp.unprotect_all([("a", "rtp", packet, SOURCE)], {}) == [None]
    assert ours.unprotect(packet) == rtp(1)  # the packet's index was not consumed


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3), st.integers(0, 40), st.sampled_from(("good", "tampered", "short", "long"))
        ),
        max_size=16,
    )
)
@settings(max_examples=60, deadline=None)
def test_any_round_gives_what_the_single_packet_path_gives(items: list[tuple[int, int, str]]) -> None:
    legs = [twins("AEAD_AES_128_GCM"), twins(SUITE), twins("AES_CM_128_HMAC_SHA1_32")]
    inbound = {str(i): batch.unprotect for i, (batch, _, _) in enumerate(legs)}
    arrived, expected = [], []
    sent: dict[tuple[int, int], bytes] = {}  # what each peer protected: a repeat is a replay
    for leg, seq, shape in items:
        if leg == 3:  # no SRTP on this leg: left to the caller
            arrived.append(("3", "rtp", rtp(seq), SOURCE))
            expected.append(None)
            continue
        _, single, peer = legs[leg]
        if (leg, seq % 8) not in sent:
            sent[leg, seq % 8] = peer.protect(rtp(seq % 8, ssrc=leg + 1))
        data = sent[leg, seq % 8]
        if shape == "tampered":
            data = data[:-1] + bytes([data[-1] ^ 1])
        elif shape == "short":
            data = data[:3]
        elif shape == "long":
            data = data + bytes(MAX_PACKET)
        arrived.append((str(leg), "rtp", data, SOURCE))
        expected.append(single_path(single, data))
    assert [batch_path(c) for c in srtp.unprotect_all(arrived, inbound)] == expected


def test_a_round_of_the_wrong_shape_is_a_type_error() -> None:
    ours, peer = pair()
    packet = peer.protect(rtp(1))
    for arrived, inbound in (
        ((("a", "rtp", packet, SOURCE),), {"a": ours.unprotect}),  # not a list
        ([("a", "rtp", packet, SOURCE)], [("a", ours.unprotect)]),  # not a dict
        ([("a", "rtp", packet)], {"a": ours.unprotect}),
        (["a"], {"a": ours.unprotect}),
        ([("a", "rtp", packet, SOURCE)], {"a": lambda data: data}),
    ):
        with pytest.raises(TypeError):
            srtp.unprotect_all(arrived, inbound)  # type: ignore[arg-type]
