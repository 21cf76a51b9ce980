"""SDES (RFC 4568 a=crypto) in offer/answer: parsing hostile crypto lines, what each SRTP policy
offers and accepts, reading answers, and re-offers on an encrypted call."""

from __future__ import annotations

import base64
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgeline.sip.call_leg import answer_new_offer, fresh_offer, local_codecs
from bridgeline.sip.offer_answer import NegotiationError, answer_offer, make_offer, read_answer
from bridgeline.sip.sdes import (
    OFF,
    Crypto,
    CryptoSuite,
    SrtpConfig,
    SrtpParams,
    SrtpPolicy,
    crypto_lines,
    fresh_config,
    parse_crypto,
)
from bridgeline.sip.sdp import SessionDescription, parse_sdp

_rng = random.Random(11)
KEY = bytes(range(30))
B64 = base64.b64encode(KEY).decode()
SUITE80, SUITE32 = CryptoSuite.AES_CM_128_HMAC_SHA1_80, CryptoSuite.AES_CM_128_HMAC_SHA1_32
GCM128, GCM256 = CryptoSuite.AEAD_AES_128_GCM, CryptoSuite.AEAD_AES_256_GCM
GCM128_KEY, GCM256_KEY = bytes(range(28)), bytes(range(44))


def config(policy: SrtpPolicy) -> SrtpConfig:
    return fresh_config(policy, _rng.randbytes)


def offer_text(proto: str = "RTP/AVP", *crypto: str) -> bytes:
    lines = [
        "v=0",
        "o=peer 1 1 IN IP4 192.0.2.1",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        f"m=audio 4000 {proto} 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        *(f"a=crypto:{c}" for c in crypto),
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


# ----------------------------------------------------------------------------- a=crypto lines
def test_a_crypto_line_round_trips() -> None:
    crypto = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|2^20")
    assert crypto == Crypto(1, SUITE80, KEY, "2^20")
    assert str(crypto) == f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|2^20"
    assert parse_crypto(str(Crypto(7, SUITE32, KEY))) == Crypto(7, SUITE32, KEY)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1",
        f"x AES_CM_128_HMAC_SHA1_80 inline:{B64}",
        f"1234567890 AES_CM_128_HMAC_SHA1_80 inline:{B64}",  # tag longer than 9 digits
        f"1 AES_256_CM_HMAC_SHA1_80 inline:{B64}",  # a suite we do not offer
        f"1 F8_128_HMAC_SHA1_80 inline:{B64}",
        f"1 AES_CM_128_HMAC_SHA1_80 uri:{B64}",
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|2^20|1:4",  # an MKI
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|1:4",
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}|2^x",
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64};inline:{B64}",  # several keys
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64} UNENCRYPTED_SRTP",  # session parameters
        "1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(29)).decode(),  # short key
        "1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(46)).decode(),  # AES-256 length
        "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64",
        "1 AES_CM_128_HMAC_SHA1_80 inline:",
    ],
)
def test_crypto_lines_we_cannot_use_are_skipped(value: str) -> None:
    assert parse_crypto(value) is None


@given(st.text(max_size=200))
@settings(max_examples=300)
def test_fuzzed_crypto_lines_never_raise(value: str) -> None:
    parse_crypto(value)
    crypto_lines([value, value])


def test_a_repeated_tag_is_kept_once() -> None:
    lines = crypto_lines(
        [f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}", f"1 AES_CM_128_HMAC_SHA1_32 inline:{B64}"]
    )
    assert [c.suite for c in lines] == [SUITE80]


def test_keys_never_show_in_a_repr() -> None:
    assert B64 not in repr(SrtpParams(SUITE80, KEY, KEY)) and str(KEY) not in repr(
        SrtpParams(SUITE80, KEY, KEY)
    )
    assert str(KEY) not in repr(SrtpConfig(SrtpPolicy.REQUIRED, (KEY,), (SUITE80,)))
    assert config(SrtpPolicy.OFF) is OFF


@pytest.mark.parametrize(
    ("keys", "suites"),
    [
        ((), tuple(CryptoSuite)),
        ((b"short",), (SUITE80,)),
        ((KEY,), (GCM128,)),  # an AES_CM key is 2 bytes too long for AEAD_AES_128_GCM
        ((GCM128_KEY,), (GCM256,)),
        ((KEY, KEY), (SUITE80,)),  # one key per suite
        ((), ()),
    ],
)
def test_a_config_needs_one_key_of_the_right_length_per_suite(
    keys: tuple[bytes, ...], suites: tuple[CryptoSuite, ...]
) -> None:
    with pytest.raises(ValueError):
        SrtpConfig(SrtpPolicy.OFFERED, keys, suites)


def test_fresh_keys_have_each_suites_length() -> None:
    ours = config(SrtpPolicy.REQUIRED)
    assert [len(ours.key_for(s)) for s in CryptoSuite] == [28, 44, 30, 30]
    assert len(set(ours.keys)) == 4  # a key of its own per suite


def test_gcm_crypto_lines_take_their_own_key_lengths() -> None:
    for suite, key in ((GCM128, GCM128_KEY), (GCM256, GCM256_KEY)):
        line = Crypto(2, suite, key)
        assert parse_crypto(str(line)) == line
        assert parse_crypto(f"2 {suite.value} inline:{B64}") is None  # an AES_CM length


# ----------------------------------------------------------------------------- our offers
@pytest.mark.parametrize(
    ("policy", "proto", "lines"),
    [
        (SrtpPolicy.REQUIRED, "RTP/SAVP", 4),
        (SrtpPolicy.OFFERED, "RTP/AVP", 4),
        (SrtpPolicy.OFF, "RTP/AVP", 0),
    ],
)
def test_the_offer_follows_the_policy(policy: SrtpPolicy, proto: str, lines: int) -> None:
    ours = config(policy)
    offer = parse_sdp(bytes(make_offer("192.0.2.10", 30000, 1, 1, srtp=ours)))
    media = offer.media[0]
    assert media.proto == proto
    crypto = crypto_lines(media.attribute_values("crypto"))
    # RFC 7714's GCM suites first: libsrtp does them with less than half the CPU (benchmarks 4b).
    assert [(c.tag, c.suite) for c in crypto] == [(1, GCM128), (2, GCM256), (3, SUITE80), (4, SUITE32)][
        :lines
    ]
    assert [c.key for c in crypto] == list(ours.keys)[:lines]


def answered(offer: bytes, srtp: SrtpConfig) -> tuple[str, list[Crypto], SrtpParams | None]:
    answer, params = answer_offer(parse_sdp(offer), "192.0.2.10", 30000, 1, 1, srtp=srtp)
    media = parse_sdp(bytes(answer)).media[0]
    return media.proto, crypto_lines(media.attribute_values("crypto")), params.srtp


# ----------------------------------------------------------------------------- answering
@pytest.mark.parametrize("policy", [SrtpPolicy.REQUIRED, SrtpPolicy.OFFERED])
@pytest.mark.parametrize("proto", ["RTP/SAVP", "RTP/AVP"])
def test_an_offer_with_keys_is_answered_with_its_tag_suite_and_a_key_of_ours(
    policy: SrtpPolicy, proto: str
) -> None:
    ours = config(policy)
    offer = offer_text(
        proto, f"3 AES_CM_128_HMAC_SHA1_32 inline:{B64}", f"4 AES_CM_128_HMAC_SHA1_80 inline:{B64}"
    )
    answer_proto, lines, params = answered(offer, ours)
    assert answer_proto == proto
    assert lines == [Crypto(3, SUITE32, ours.key_for(SUITE32))]  # the offerer's first choice, our key
    assert params == SrtpParams(SUITE32, ours.key_for(SUITE32), KEY)


@pytest.mark.parametrize(("suite", "key"), [(GCM128, GCM128_KEY), (GCM256, GCM256_KEY)])
def test_a_gcm_offer_is_answered_with_a_gcm_key_of_ours(suite: CryptoSuite, key: bytes) -> None:
    ours = config(SrtpPolicy.REQUIRED)
    their_line = f"7 {suite.value} inline:{base64.b64encode(key).decode()}"
    offer = offer_text("RTP/SAVP", their_line, f"8 AES_CM_128_HMAC_SHA1_80 inline:{B64}")
    _, lines, params = answered(offer, ours)
    assert lines == [Crypto(7, suite, ours.key_for(suite))]
    assert params == SrtpParams(suite, ours.key_for(suite), key)
    assert len(params.local_key) == suite.key_length


def test_the_offerers_order_wins_over_ours() -> None:
    offer = offer_text(
        "RTP/SAVP",
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}",
        f"2 AEAD_AES_128_GCM inline:{base64.b64encode(GCM128_KEY).decode()}",
    )
    _, lines, _ = answered(offer, config(SrtpPolicy.REQUIRED))
    assert [(c.tag, c.suite) for c in lines] == [(1, SUITE80)]


def test_unknown_suites_are_passed_over_for_one_we_support() -> None:
    offer = offer_text(
        "RTP/SAVP",
        f"1 AEAD_AES_256_GCM inline:{B64}",  # a key of AES_CM's length: not a GCM-256 one
        f"2 AES_CM_128_HMAC_SHA1_80 inline:{B64}|2^20|1:32",
        f"3 AES_CM_128_HMAC_SHA1_80 inline:{B64}",
    )
    _, lines, params = answered(offer, config(SrtpPolicy.REQUIRED))
    assert [c.tag for c in lines] == [3] and params is not None


@pytest.mark.parametrize(
    ("offer", "policy", "reason"),
    [
        (
            offer_text("RTP/SAVP", f"1 AES_256_CM_HMAC_SHA1_80 inline:{B64}"),
            SrtpPolicy.REQUIRED,
            "suite we support",
        ),
        (offer_text("RTP/SAVP"), SrtpPolicy.OFFERED, "suite we support"),
        (offer_text("RTP/AVP"), SrtpPolicy.REQUIRED, "SRTP is required"),
        (offer_text("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}"), SrtpPolicy.OFF, "SRTP is off"),
    ],
)
def test_offers_we_cannot_meet_are_refused_with_a_reason(
    offer: bytes, policy: SrtpPolicy, reason: str
) -> None:
    with pytest.raises(NegotiationError, match=reason) as caught:
        answered(offer, config(policy))
    assert caught.value.status == 488


@pytest.mark.parametrize("policy", [SrtpPolicy.OFFERED, SrtpPolicy.OFF])
def test_a_plain_offer_gets_a_plain_answer_unless_srtp_is_required(policy: SrtpPolicy) -> None:
    assert answered(offer_text("RTP/AVP"), config(policy)) == ("RTP/AVP", [], None)


def test_off_ignores_crypto_in_a_plain_offer() -> None:
    offer = offer_text("RTP/AVP", f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}")
    assert answered(offer, OFF) == ("RTP/AVP", [], None)


def test_a_secure_stream_is_taken_after_a_declined_one() -> None:
    text = (
        offer_text("RTP/AVP")
        + b"m=audio 4002 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"
        + B64.encode()
        + b"\r\n"
    )
    answer, params = answer_offer(
        parse_sdp(text), "192.0.2.10", 30000, 1, 1, srtp=config(SrtpPolicy.REQUIRED)
    )
    assert [m.port for m in answer.media] == [0, 30000]
    assert params.remote_port == 4002 and params.srtp is not None


# ----------------------------------------------------------------------------- reading answers
def answer_to(proto: str, *crypto: str) -> bytes:
    return offer_text(proto, *crypto).replace(b"m=audio 4000", b"m=audio 4010")


def test_an_answer_with_one_of_our_tags_gives_both_keys() -> None:
    ours = config(SrtpPolicy.REQUIRED)
    offer = make_offer("192.0.2.10", 30000, 1, 1, srtp=ours)
    media = read_answer(offer, parse_sdp(answer_to("RTP/SAVP", f"4 AES_CM_128_HMAC_SHA1_32 inline:{B64}")))
    assert media.srtp == SrtpParams(SUITE32, ours.key_for(SUITE32), KEY)
    gcm = f"1 AEAD_AES_128_GCM inline:{base64.b64encode(GCM128_KEY).decode()}"
    media = read_answer(offer, parse_sdp(answer_to("RTP/SAVP", gcm)))
    assert media.srtp == SrtpParams(GCM128, ours.key_for(GCM128), GCM128_KEY)


@pytest.mark.parametrize(
    "crypto",
    [(), (f"2 AES_CM_128_HMAC_SHA1_80 inline:{B64}",), (f"9 AES_CM_128_HMAC_SHA1_80 inline:{B64}",)],
)
def test_a_required_offer_fails_on_an_answer_without_a_matching_key(crypto: tuple[str, ...]) -> None:
    offer = make_offer("192.0.2.10", 30000, 1, 1, srtp=config(SrtpPolicy.REQUIRED))
    with pytest.raises(NegotiationError, match="SRTP is required"):
        read_answer(offer, parse_sdp(answer_to("RTP/SAVP", *crypto)))


def test_a_plain_answer_to_a_required_offer_fails() -> None:
    offer = make_offer("192.0.2.10", 30000, 1, 1, srtp=config(SrtpPolicy.REQUIRED))
    with pytest.raises(NegotiationError):
        read_answer(offer, parse_sdp(answer_to("RTP/AVP")))


def test_best_effort_falls_back_to_plain_but_not_to_a_key_it_cannot_match() -> None:
    ours = config(SrtpPolicy.OFFERED)
    offer = make_offer("192.0.2.10", 30000, 1, 1, srtp=ours)
    assert read_answer(offer, parse_sdp(answer_to("RTP/AVP"))).srtp is None
    keyed = read_answer(offer, parse_sdp(answer_to("RTP/AVP", f"3 AES_CM_128_HMAC_SHA1_80 inline:{B64}")))
    assert keyed.srtp == SrtpParams(SUITE80, ours.key_for(SUITE80), KEY)
    with pytest.raises(NegotiationError):
        read_answer(offer, parse_sdp(answer_to("RTP/AVP", f"3 AES_CM_128_HMAC_SHA1_32 inline:{B64}")))


# ----------------------------------------------------------------------------- re-offers
def encrypted_call() -> tuple[SessionDescription, SrtpParams]:
    ours = config(SrtpPolicy.REQUIRED)
    offer = offer_text("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_80 inline:{B64}")
    local, params = answer_offer(parse_sdp(offer), "192.0.2.10", 30000, 1, 1, srtp=ours)
    assert params.srtp is not None
    return local, params.srtp


def test_a_reoffer_on_an_encrypted_call_keeps_our_key_and_may_renew_theirs() -> None:
    local, current = encrypted_call()
    new_key = bytes(reversed(KEY))
    reoffer = offer_text("RTP/SAVP", f"5 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(new_key).decode()}")
    answer, media = answer_new_offer(local, parse_sdp(reoffer), local_codecs(local), current)
    assert media.srtp == SrtpParams(SUITE80, current.local_key, new_key)
    assert crypto_lines(answer.media[0].attribute_values("crypto")) == [Crypto(5, SUITE80, current.local_key)]


@pytest.mark.parametrize(
    "reoffer",
    [offer_text("RTP/AVP"), offer_text("RTP/SAVP", f"1 AES_CM_128_HMAC_SHA1_32 inline:{B64}")],
)
def test_a_reoffer_cannot_turn_srtp_off_or_change_the_suite(reoffer: bytes) -> None:
    local, current = encrypted_call()
    with pytest.raises(NegotiationError):
        answer_new_offer(local, parse_sdp(reoffer), local_codecs(local), current)


def test_our_offer_in_a_2xx_keeps_the_call_encrypted() -> None:
    local, current = encrypted_call()
    offer = fresh_offer(local, local_codecs(local), current)
    media = offer.media[0]
    assert media.proto == "RTP/SAVP"
    assert crypto_lines(media.attribute_values("crypto")) == [Crypto(1, SUITE80, current.local_key)]
