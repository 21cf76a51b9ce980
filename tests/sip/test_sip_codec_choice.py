"""G.722 in offer/answer (RFC 3264, RFC 3551 4.5.2: `G722/8000`, static 9) and the codec list that
the `rtp.codecs` setting names (tests/media_engine/test_carrier_dial.py: the setting itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridgeline.sip.message import parse_message
from bridgeline.sip.offer_answer import (
    G722,
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    answer_offer,
    codecs_by_name,
    make_offer,
    read_answer,
)
from bridgeline.sip.sdp import parse_sdp

DATA = Path(__file__).parent / "data"
BARESIP_OFFER = parse_message((DATA / "invite_baresip.sip").read_bytes().replace(b"\n", b"\r\n")).body


def test_a_g722_first_offer_gets_g722_with_telephone_event_at_8000() -> None:
    answer, params = answer_offer(
        parse_sdp(BARESIP_OFFER), "192.0.2.10", 40000, 77, 1, codecs_by_name(["PCMU", "PCMA", "G722"])
    )
    assert params.codec == G722 and params.codec.payload_type == 9
    assert params.telephone_event is not None and params.telephone_event.clock_rate == 8000
    text = str(answer)
    assert "m=audio 40000 RTP/AVP 9 101\r\n" in text
    assert "a=rtpmap:9 G722/8000\r\n" in text


def test_without_g722_in_the_setting_the_same_offer_gets_g711() -> None:
    _, params = answer_offer(
        parse_sdp(BARESIP_OFFER), "192.0.2.10", 40000, 77, 1, codecs_by_name(["PCMA", "PCMU"])
    )
    assert params.codec in (PCMU, PCMA)


def test_our_offer_lists_the_setting_order_then_telephone_event() -> None:
    offer = make_offer("192.0.2.10", 40000, 5, 1, codecs_by_name(["g722", "pcmu"]))
    text = str(offer)
    assert "m=audio 40000 RTP/AVP 9 0 101\r\n" in text
    assert "a=rtpmap:9 G722/8000\r\n" in text
    answer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
        "m=audio 5000 RTP/AVP 9 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    params = read_answer(offer, answer)  # a static 9 without rtpmap is G.722 too
    assert params.codec.payload_type == 9 and params.codec.encoding == "G722"
    assert params.telephone_event is not None and params.telephone_event.payload_type == 101


def test_codecs_by_name_refuses_unknown_repeated_and_empty() -> None:
    assert codecs_by_name(["PCMU"]) == (PCMU, TELEPHONE_EVENT)
    for bad in (["SPEEX"], ["PCMU", "pcmu"], []):
        with pytest.raises(ValueError):
            codecs_by_name(bad)


def _offer(formats: str, attributes: str) -> bytes:
    return (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n"
        f"m=audio 30000 RTP/AVP {formats}\r\n{attributes}"
    ).encode()


@pytest.mark.parametrize(("encoding", "static"), [("PCMA", 8), ("G722", 9), ("PCMU", 0)])
def test_a_codec_under_a_dynamic_type_keeps_the_offerers_number_and_its_static_identity(
    encoding: str, static: int
) -> None:
    offer = _offer("97 101", f"a=rtpmap:97 {encoding}/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
    answer, params = answer_offer(
        parse_sdp(offer), "192.0.2.10", 40000, 77, 1, codecs_by_name(["PCMU", "PCMA", "G722"])
    )
    assert params.codec.payload_type == 97  # on the wire, as the offerer numbered it
    assert params.codec.static_payload_type == static  # what the media runtime knows it by
    assert f"a=rtpmap:97 {encoding}/8000\r\n" in str(answer)


@pytest.mark.parametrize(("ptime", "sent"), [(25, 20), (15, 20), (1000, 20), (30, 30), (10, 10)])
def test_a_ptime_we_cannot_send_is_answered_and_sent_at_20_ms(ptime: int, sent: int) -> None:
    offer = _offer("8", f"a=rtpmap:8 PCMA/8000\r\na=ptime:{ptime}\r\n")
    answer, params = answer_offer(parse_sdp(offer), "192.0.2.10", 40000, 77, 1)
    assert params.ptime == sent
    assert f"a=ptime:{sent}\r\n" in str(answer)
    ours = make_offer("192.0.2.10", 40000, 77, 1)
    theirs = _offer("0", f"a=rtpmap:0 PCMU/8000\r\na=ptime:{ptime}\r\n")
    assert read_answer(ours, parse_sdp(theirs)).ptime == sent
