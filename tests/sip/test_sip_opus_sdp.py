"""Opus in offer/answer (RFC 7587 7: `opus/48000/2` under a dynamic number, fmtp each side's own),
its telephone-event at 48 kHz, and the packet times an Opus leg sends."""

from __future__ import annotations

import pytest

from bridgeline.sip.offer_answer import (
    OPUS,
    PCMU,
    TELEPHONE_EVENT,
    TELEPHONE_EVENT_48K,
    answer_offer,
    codecs_by_name,
    make_offer,
    read_answer,
)
from bridgeline.sip.sdp import parse_sdp

WITH_OPUS = codecs_by_name(["PCMU", "PCMA", "G722", "OPUS"])


def _offer(formats: str, attributes: str) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n"
        f"m=audio 30000 RTP/AVP {formats}\r\n{attributes}"
    ).encode()


# What softphones and WebRTC gateways offer: Opus first, then G.711, DTMF at both clocks.
OPUS_FIRST = _offer(
    "96 0 8 110 101",
    "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1;maxaveragebitrate=20000\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:110 telephone-event/48000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n",
)


def test_an_opus_first_offer_gets_opus_under_its_number_with_our_fmtp_in_the_answer() -> None:
    answer, params = answer_offer(parse_sdp(OPUS_FIRST), "192.0.2.10", 40000, 77, 1, WITH_OPUS)
    assert params.codec.encoding == "opus" and params.codec.payload_type == 96
    assert params.codec.static_payload_type == 256  # the media runtime's key for Opus
    assert params.codec.fmtp == "useinbandfec=1;maxaveragebitrate=20000"  # the peer's, for our encoder
    assert params.telephone_event is not None
    assert (params.telephone_event.payload_type, params.telephone_event.clock_rate) == (110, 48000)
    text = str(answer)
    assert "m=audio 40000 RTP/AVP 96 110\r\n" in text
    assert "a=rtpmap:96 opus/48000/2\r\n" in text
    assert f"a=fmtp:96 {OPUS.fmtp}\r\n" in text  # ours, not an echo of theirs
    assert "maxplaybackrate=16000" in text and "stereo=0" in text and "useinbandfec=1" in text


def test_without_opus_in_the_setting_the_same_offer_gets_g711() -> None:
    _, params = answer_offer(parse_sdp(OPUS_FIRST), "192.0.2.10", 40000, 77, 1)
    assert params.codec == PCMU
    assert params.telephone_event is not None and params.telephone_event.clock_rate == 8000


def test_opus_without_fmtp_or_48khz_events_gets_no_fmtp_and_no_dtmf() -> None:
    """No fmtp from the peer: RFC 7587 defaults (no FEC asked), not our own parameters; DTMF at
    8 kHz beside a 48 kHz codec would mix two clocks in one stream, so it is not negotiated."""
    offer = _offer("111 101", "a=rtpmap:111 OPUS/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n")
    answer, params = answer_offer(parse_sdp(offer), "192.0.2.10", 40000, 77, 1, WITH_OPUS)
    assert params.codec.is_opus and params.codec.fmtp is None
    assert params.telephone_event is None
    assert "m=audio 40000 RTP/AVP 111\r\n" in str(answer)


def test_opus_is_matched_only_as_opus_48000_2() -> None:
    offer = _offer("111 0", "a=rtpmap:111 opus/48000\r\na=rtpmap:0 PCMU/8000\r\n")  # (no channels)
    _, params = answer_offer(parse_sdp(offer), "192.0.2.10", 40000, 77, 1, WITH_OPUS)
    assert params.codec == PCMU


def test_our_offer_lists_opus_in_the_setting_order_with_fmtp_and_both_event_clocks() -> None:
    offer = make_offer("192.0.2.10", 40000, 5, 1, codecs_by_name(["opus", "pcmu"]))
    text = str(offer)
    assert "m=audio 40000 RTP/AVP 111 0 101 102\r\n" in text
    assert "a=rtpmap:111 opus/48000/2\r\n" in text
    assert f"a=fmtp:111 {OPUS.fmtp}\r\n" in text
    assert "a=rtpmap:102 telephone-event/48000\r\n" in text
    answer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
        "m=audio 5000 RTP/AVP 109 98\r\na=rtpmap:109 opus/48000/2\r\na=fmtp:109 stereo=1\r\n"
        "a=rtpmap:98 telephone-event/48000\r\na=ptime:40\r\n"
    )
    params = read_answer(offer, answer)  # the answerer renumbered both: matched by name
    assert params.codec.is_opus and params.codec.payload_type == 109 and params.codec.fmtp == "stereo=1"
    assert params.telephone_event is not None and params.telephone_event.payload_type == 98
    assert params.ptime == 40


def test_the_default_codec_list_has_no_opus_and_opus_brings_its_event_clock() -> None:
    assert codecs_by_name(["PCMU"]) == (PCMU, TELEPHONE_EVENT)
    assert codecs_by_name(["OPUS"]) == (OPUS, TELEPHONE_EVENT, TELEPHONE_EVENT_48K)


@pytest.mark.parametrize(("ptime", "sent"), [(10, 10), (30, 20), (40, 40), (50, 20), (60, 60), (120, 120)])
def test_opus_is_answered_and_sent_in_whole_opus_frame_times(ptime: int, sent: int) -> None:
    offer = _offer("111", f"a=rtpmap:111 opus/48000/2\r\na=ptime:{ptime}\r\n")
    answer, params = answer_offer(parse_sdp(offer), "192.0.2.10", 40000, 77, 1, WITH_OPUS)
    assert params.ptime == sent
    assert f"a=ptime:{sent}\r\n" in str(answer)
