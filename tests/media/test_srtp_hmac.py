"""Our HMAC-SHA1 for the AES_CM suites (`_srtp_hmac.c`) against libsrtp's own (OpenSSL's EVP_MAC):
the same bytes on the wire, both ways, for SRTP and SRTCP, across a rollover of the sequence number
(the ROC is hashed after the packet), and a bad tag still refused. libsrtp itself checked ours
against its test vector and two of RFC 2202's before it took it (`use_hmac` returns which is in
use; a failed check leaves libsrtp's)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import pylibsrtp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgeline.media.srtp import (
    HmacSha1,
    Refusal,
    SrtpContext,
    SrtpKeys,
    SrtpRefused,
    hmac_in_use,
    use_hmac,
)

AES_CM = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}


def rtp(seq: int, ssrc: int, payload: bytes) -> bytes:
    stamp = (seq * 160 & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes([0x80, 0]) + (seq & 0xFFFF).to_bytes(2, "big") + stamp + ssrc.to_bytes(4, "big") + payload


def sender_report(ssrc: int) -> bytes:
    return bytes([0x80, 200, 0, 6]) + ssrc.to_bytes(4, "big") + bytes(20)


class LibsrtpPeer:
    """A peer whose sessions use libsrtp's own HMAC-SHA1 (made while it is the one in use)."""

    def __init__(self, suite: str, its_key: bytes, our_key: bytes) -> None:
        def session(key: bytes, ssrc_type: int) -> pylibsrtp.Session:
            policy = pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=AES_CM[suite])
            return pylibsrtp.Session(policy)

        with hmac_of(HmacSha1.LIBSRTP):
            self.sender = session(its_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
            self.receiver = session(our_key, pylibsrtp.Policy.SSRC_ANY_INBOUND)
            self.mirror = session(our_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)  # what we should send


@contextmanager
def hmac_of(kind: HmacSha1) -> Iterator[None]:
    """Sessions made inside use `kind`; ours again after."""
    assert use_hmac(kind) is kind
    try:
        yield
    finally:
        assert use_hmac(HmacSha1.COMPACT) is HmacSha1.COMPACT


def test_ours_is_the_one_in_use_so_every_srtp_test_runs_it() -> None:
    assert hmac_in_use() is HmacSha1.COMPACT


def contexts(suite: str, seed: int) -> tuple[SrtpContext, LibsrtpPeer]:
    """Our context (the HMAC in use now) and its peer (libsrtp's HMAC), keys from `seed`."""
    rng = random.Random(seed)
    ours, theirs = rng.randbytes(30), rng.randbytes(30)
    return SrtpContext(SrtpKeys(suite, ours, theirs)), LibsrtpPeer(suite, theirs, ours)


@pytest.mark.parametrize("suite", list(AES_CM))
@given(
    seed=st.integers(0, 2**32),
    first_seq=st.sampled_from([0, 1000, 65530]),
    sizes=st.lists(st.integers(0, 1200), min_size=1, max_size=12),
)
@settings(max_examples=40, deadline=None)
def test_ours_and_libsrtps_agree_byte_for_byte_both_ways(
    suite: str, seed: int, first_seq: int, sizes: list[int]
) -> None:
    ours, peer = contexts(suite, seed)
    payloads = random.Random(seed)
    for i, size in enumerate(sizes):
        packet = rtp(first_seq + i, 0x5EED, payloads.randbytes(size))
        protected = ours.protect(packet)
        assert protected == peer.mirror.protect(packet)
        assert peer.receiver.unprotect(protected) == packet
        from_peer = peer.sender.protect(packet)
        assert ours.unprotect(from_peer) == packet
    report = sender_report(0x5EED)
    assert ours.unprotect_rtcp(peer.sender.protect_rtcp(report)) == report


@pytest.mark.parametrize("suite", list(AES_CM))
def test_a_packet_whose_tag_or_body_was_touched_is_refused_as_auth(suite: str) -> None:
    ours, peer = contexts(suite, 7)
    good = peer.sender.protect(rtp(1, 0x77, bytes(160)))
    for position in (12, len(good) - 1):  # a payload byte, a tag byte
        bad = bytearray(good)
        bad[position] ^= 0x01
        with pytest.raises(SrtpRefused) as refused:
            ours.unprotect(bytes(bad))
        assert refused.value.refusal is Refusal.AUTH
    assert ours.unprotect(good) == rtp(1, 0x77, bytes(160))


def test_sessions_keep_the_hmac_they_were_made_with_when_it_changes() -> None:
    compact, peer = contexts("AES_CM_128_HMAC_SHA1_80", 3)
    packet = rtp(5, 0x99, b"x" * 160)
    with hmac_of(HmacSha1.LIBSRTP):
        assert peer.receiver.unprotect(compact.protect(packet)) == packet
        libsrtps, its_peer = contexts("AES_CM_128_HMAC_SHA1_80", 4)
    assert its_peer.receiver.unprotect(libsrtps.protect(packet)) == packet
    assert compact.unprotect(peer.sender.protect(packet)) == packet
