"""SDP model (RFC 4566) and audio offer/answer (RFC 3264)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridgeline.sip.message import parse_message
from bridgeline.sip.offer_answer import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Codec,
    NegotiationError,
    answer_offer,
    check_offer,
    make_offer,
    read_answer,
)
from bridgeline.sip.sdp import Direction, SdpParseError, parse_sdp

DATA = Path(__file__).parent / "data"
BARESIP_OFFER = parse_message((DATA / "invite_baresip.sip").read_bytes().replace(b"\n", b"\r\n")).body


def sdp(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


def offer_with(*media_lines: str, session: tuple[str, ...] = ("c=IN IP4 198.51.100.7",)) -> bytes:
    return sdp("v=0", "o=- 1 1 IN IP4 198.51.100.7", "s=-", *session, "t=0 0", *media_lines)


def test_parse_softphone_offer() -> None:
    desc = parse_sdp(BARESIP_OFFER)
    assert bytes(desc) == BARESIP_OFFER
    assert (desc.origin.session_id, desc.origin.version, desc.origin.address) == (
        1893517264,
        3456128791,
        "198.51.100.7",
    )
    (audio,) = desc.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        10042,
        "RTP/AVP",
        ["9", "0", "8", "101"],
    )
    assert str(audio.rtpmap("101")) == "telephone-event/8000"
    assert audio.fmtp("101") == "0-15"
    assert audio.bandwidths == ["AS:64"]
    assert desc.direction_for(audio) is Direction.SENDRECV and desc.ptime_for(audio) == 20


def test_round_trip_keeps_unmodelled_lines_in_rfc_order() -> None:
    text = sdp(
        "v=0",
        "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5",
        "s=SDP Seminar",
        "i=A Seminar on the session description protocol",
        "u=http://www.example.com/seminars/sdp.pdf",
        "e=j.doe@example.com (Jane Doe)",
        "c=IN IP4 224.2.17.12/127",
        "b=CT:128",
        "t=2873397496 2873404696",
        "r=7d 1h 0 25h",
        "a=recvonly",
        "m=audio 49170 RTP/AVP 0",
        "i=voice",
        "c=IN IP4 10.47.16.5",
        "b=AS:64",
        "k=prompt",
        "a=ptime:30",
        "m=video 51372/2 RTP/AVP 99",
        "a=rtpmap:99 h263-1998/90000",
    )
    desc = parse_sdp(text)
    assert bytes(desc) == text
    assert desc.direction is Direction.RECVONLY
    assert desc.media[1].port_count == 2
    assert desc.connection_for(desc.media[0]).address == "10.47.16.5"  # type: ignore[union-attr]
    assert desc.direction_for(desc.media[1]) is Direction.RECVONLY  # inherited from the session


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"o=- 1 1 IN IP4 1.2.3.4\r\n",
        b"v=1\r\n",
        b"v=0\r\ns=-\r\n",
        b"v=0\r\no=- 1 1 IN IP4\r\n",
        b"v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:300 PCMU/8000\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=ptime:0\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 1 RTP/AVP 0\r\na=ptime:fast\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nbogus\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nX=1\r\n",
        b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=\x01\r\n",
        b"v=0\r\no=- " + b"9" * 5000 + b" 1 IN IP4 1.2.3.4\r\n",
        b"v=0\r\n\xff\xfe",
    ],
)
def test_malformed_sdp(text: bytes) -> None:
    with pytest.raises(SdpParseError):
        check_offer(parse_sdp(text))  # a broken line under m=audio we could use refuses the offer


DECLINED_STREAMS = (
    b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
    b"m=video 5002 RTP/AVP 31\r\na=rtpmap:31 H261\r\nbogus\r\nc=IN\r\na=\x01\r\n"  # broken video
    b"m=audio 5004 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\na=ptime:fast\r\n"  # no common codec
    b"m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"m=audio 5006 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n"  # broken, but after the one we take
)
FIRST_AUDIO_BROKEN = DECLINED_STREAMS.replace(b"m=audio 5000 RTP/AVP 0 101\r\n", b"")


def test_broken_lines_in_streams_we_decline_do_not_refuse_the_call() -> None:
    offer = parse_sdp(DECLINED_STREAMS)
    assert [m.invalid is not None for m in offer.media] == [True, True, False, True]
    check_offer(offer)
    answer, params = answer_offer(offer, "192.0.2.10", 30000, 1, 1)
    assert [m.port for m in answer.media] == [0, 0, 30000, 0]
    assert params.remote_port == 5000 and params.codec.payload_type == 0
    with pytest.raises(SdpParseError):  # the stream we would use is the broken one: refused
        answer_offer(parse_sdp(FIRST_AUDIO_BROKEN), "192.0.2.10", 30000, 1, 1)


@given(st.binary(max_size=300) | st.text(alphabet="vosctma=:/ 0123456789\r\nIPNRTAV", max_size=300))
@settings(max_examples=500)
def test_fuzzed_sdp_raises_only_sdp_errors(data: bytes | str) -> None:
    try:
        desc = parse_sdp(data)
    except SdpParseError:
        return
    assert parse_sdp(bytes(desc)) == desc
    with contextlib.suppress(NegotiationError):
        answer_offer(desc, "192.0.2.10", 4000, 1, 1)


# --- offer/answer -------------------------------------------------------------------------------


def test_answer_softphone_offer_picks_first_supported_codec() -> None:
    answer, params = answer_offer(parse_sdp(BARESIP_OFFER), "192.0.2.10", 40000, 77, 1)
    # G722 is first but unsupported; PCMU is next. telephone-event keeps the offerer's 101 and fmtp.
    assert params.codec == PCMU
    assert params.telephone_event == Codec("telephone-event", 8000, 101, fmtp="0-15")
    assert (params.remote_address, params.remote_port) == ("198.51.100.7", 10042)
    assert params.direction is Direction.SENDRECV and (params.ptime, params.remote_ptime) == (20, 20)
    assert str(answer) == (
        "v=0\r\no=- 77 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )


def test_codec_choice_follows_offer_order_and_keeps_dynamic_numbers() -> None:
    offer = parse_sdp(
        offer_with("m=audio 5000 RTP/AVP 8 0 96", "a=rtpmap:96 Telephone-Event/8000", "a=fmtp:96 0-11")
    )
    _, params = answer_offer(offer, "192.0.2.10", 4000, 1, 1)
    assert params.codec == PCMA
    assert params.telephone_event is not None and params.telephone_event.payload_type == 96
    _, params = answer_offer(offer, "192.0.2.10", 4000, 1, 1, supported=[PCMU])
    assert params.codec == PCMU and params.telephone_event is None


def test_static_payload_types_without_rtpmap_and_renamed_static_types() -> None:
    offer = parse_sdp(offer_with("m=audio 5000 RTP/AVP 18 0"))
    assert answer_offer(offer, "192.0.2.10", 4000, 1, 1)[1].codec == PCMU
    # An rtpmap overrides the static meaning of a number.
    offer = parse_sdp(
        offer_with("m=audio 5000 RTP/AVP 0 97", "a=rtpmap:0 G729/8000", "a=rtpmap:97 pcma/8000")
    )
    assert answer_offer(offer, "192.0.2.10", 4000, 1, 1)[1].codec == Codec("PCMA", 8000, 97)


@pytest.mark.parametrize(
    "media_lines",
    [
        ("m=audio 5000 RTP/AVP 9 18", "a=rtpmap:9 G722/8000"),
        ("m=audio 5000 RTP/AVP 96", "a=rtpmap:96 opus/48000/2"),
        ("m=audio 5000 RTP/AVP 101", "a=rtpmap:101 telephone-event/8000"),  # DTMF alone is no codec
        ("m=audio 5000 RTP/SAVP 0",),
        ("m=audio 0 RTP/AVP 0",),
        ("m=video 5000 RTP/AVP 0",),
        ("m=audio 5000 RTP/AVP",),
    ],
)
def test_no_usable_audio_is_488(media_lines: tuple[str, ...]) -> None:
    with pytest.raises(NegotiationError) as info:
        answer_offer(parse_sdp(offer_with(*media_lines)), "192.0.2.10", 4000, 1, 1)
    assert info.value.status == 488


def test_unusable_m_lines_are_rejected_with_port_zero() -> None:
    offer = parse_sdp(
        offer_with(
            "m=video 6000 RTP/AVP 99",
            "a=rtpmap:99 H264/90000",
            "m=audio 5000 RTP/AVP 0",
            "m=audio 5002 RTP/AVP 8",
        )
    )
    answer, params = answer_offer(offer, "192.0.2.10", 4000, 1, 1)
    assert [(m.media, m.port, m.formats) for m in answer.media] == [
        ("video", 0, ["99"]),
        ("audio", 4000, ["0"]),
        ("audio", 0, ["8"]),
    ]
    assert params.index == 1 and params.remote_port == 5000
    assert read_answer(offer, answer).index == 1


DIRECTIONS = [
    # offer attribute, our wish, answer attribute (= our direction)
    ("sendrecv", Direction.SENDRECV, Direction.SENDRECV),
    ("sendonly", Direction.SENDRECV, Direction.RECVONLY),
    ("recvonly", Direction.SENDRECV, Direction.SENDONLY),
    ("inactive", Direction.SENDRECV, Direction.INACTIVE),
    ("sendrecv", Direction.SENDONLY, Direction.SENDONLY),  # we put the peer on hold
    ("sendonly", Direction.SENDONLY, Direction.INACTIVE),  # both hold
    ("recvonly", Direction.RECVONLY, Direction.INACTIVE),
]


@pytest.mark.parametrize(("offered", "wish", "expected"), DIRECTIONS)
def test_direction_mirroring(offered: str, wish: Direction, expected: Direction) -> None:
    offer = parse_sdp(offer_with("m=audio 5000 RTP/AVP 0", f"a={offered}"))
    answer, params = answer_offer(offer, "192.0.2.10", 4000, 1, 1, direction=wish)
    assert params.direction is expected
    assert answer.media[0].direction is expected
    # The offerer reading our answer sees the mirror image.
    assert read_answer(offer, answer).direction is expected.reversed()


def test_session_level_direction_applies_to_media() -> None:
    offer = parse_sdp(offer_with("m=audio 5000 RTP/AVP 0", session=("c=IN IP4 1.2.3.4", "a=sendonly")))
    assert answer_offer(offer, "192.0.2.10", 4000, 1, 1)[1].direction is Direction.RECVONLY


def test_old_style_hold_with_zero_address() -> None:
    offer = parse_sdp(offer_with("m=audio 5000 RTP/AVP 0", session=("c=IN IP4 0.0.0.0",)))
    answer, params = answer_offer(offer, "192.0.2.10", 4000, 1, 1)
    assert params.direction is Direction.RECVONLY and not params.direction.sends
    assert params.remote_address == "0.0.0.0"
    assert answer.media[0].direction is Direction.RECVONLY


def test_ptime_taken_from_offer_else_default() -> None:
    offer = parse_sdp(offer_with("m=audio 5000 RTP/AVP 0", "a=ptime:30"))
    answer, params = answer_offer(offer, "192.0.2.10", 4000, 1, 1)
    assert (params.ptime, params.remote_ptime) == (30, 30)
    assert answer.media[0].ptime == 30
    _, params = answer_offer(parse_sdp(offer_with("m=audio 5000 RTP/AVP 0")), "192.0.2.10", 4000, 1, 1)
    assert (params.ptime, params.remote_ptime) == (20, None)


def test_make_offer_and_both_sides_agree() -> None:
    offer = make_offer("192.0.2.10", 30000, 5, 1)
    assert str(offer) == (
        "v=0\r\no=- 5 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        "m=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    wire_offer = parse_sdp(bytes(offer))
    answer, theirs = answer_offer(wire_offer, "192.0.2.7", 40000, 9, 1, supported=[PCMA, TELEPHONE_EVENT])
    ours = read_answer(offer, parse_sdp(bytes(answer)))
    assert ours.codec == theirs.codec == PCMA
    assert ours.telephone_event == theirs.telephone_event == TELEPHONE_EVENT
    assert (ours.remote_address, ours.remote_port) == ("192.0.2.7", 40000)
    assert (theirs.remote_address, theirs.remote_port) == ("192.0.2.10", 30000)
    held = make_offer("192.0.2.10", 30000, 5, 2, direction=Direction.SENDONLY)
    assert read_answer(held, answer_offer(held, "192.0.2.20", 4000, 1, 1)[0]).direction is Direction.SENDONLY
    with pytest.raises(ValueError):
        make_offer("192.0.2.10", 30000, 5, 1, codecs=[PCMU, Codec("x", 8000, 0)])


def test_read_answer_renumbered_dynamic_type_and_hold_answer() -> None:
    offer = make_offer("192.0.2.10", 30000, 5, 1)
    answer = parse_sdp(
        offer_with("m=audio 6000 RTP/AVP 8 100", "a=rtpmap:100 telephone-event/8000", "a=ptime:40")
    )
    params = read_answer(offer, answer)
    assert params.codec == PCMA and params.telephone_event == Codec("telephone-event", 8000, 100)
    assert (params.ptime, params.remote_ptime) == (40, 40)
    hold = parse_sdp(offer_with("m=audio 6000 RTP/AVP 0", session=("c=IN IP4 0.0.0.0",)))
    assert read_answer(offer, hold).direction is Direction.RECVONLY


@pytest.mark.parametrize(
    "media_lines",
    [
        (),  # wrong m-line count
        ("m=audio 0 RTP/AVP 0",),  # rejected
        ("m=audio 6000 RTP/AVP 18",),  # a codec we never offered
        ("m=audio 6000 RTP/SAVP 0",),  # changed protocol
    ],
)
def test_read_answer_errors(media_lines: tuple[str, ...]) -> None:
    with pytest.raises(NegotiationError):
        read_answer(make_offer("192.0.2.10", 30000, 5, 1), parse_sdp(offer_with(*media_lines)))


def test_direction_algebra() -> None:
    for d in Direction:
        assert d.reversed().reversed() is d
        assert d & Direction.SENDRECV is d
        assert Direction.of(d.sends, d.receives) is d
