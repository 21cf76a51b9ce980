"""Pure helpers behind call legs: failure mapping and RFC 3264 re-offer answers."""

from __future__ import annotations

import pytest

from bridgeline.sip.call_leg import answer_new_offer, failure_reason, fresh_offer, local_codecs
from bridgeline.sip.events import FailReason
from bridgeline.sip.offer_answer import PCMA, PCMU, TELEPHONE_EVENT, NegotiationError, make_offer
from bridgeline.sip.sdp import Direction, parse_sdp


@pytest.mark.parametrize(
    ("status", "cancelled", "reason"),
    [
        (486, False, FailReason.BUSY),
        (600, False, FailReason.BUSY),
        (603, False, FailReason.REJECTED),
        (408, False, FailReason.NO_ANSWER),
        (480, False, FailReason.NO_ANSWER),
        (487, False, FailReason.NO_ANSWER),
        (487, True, FailReason.CANCELLED),
        (486, True, FailReason.CANCELLED),
        (404, False, FailReason.FAILED),
        (503, False, FailReason.FAILED),
    ],
)
def test_failure_reason(status: int, cancelled: bool, reason: FailReason) -> None:
    assert failure_reason(status, cancelled=cancelled) is reason


def test_local_codecs_come_from_the_first_active_audio_stream() -> None:
    sdp = make_offer("192.0.2.10", 30000, 1, 1)
    assert local_codecs(sdp) == [PCMU, PCMA, TELEPHONE_EVENT]
    sdp.media[0].port = 0
    assert local_codecs(sdp) == []


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        (Direction.SENDONLY, Direction.RECVONLY),
        (Direction.RECVONLY, Direction.SENDONLY),
        (Direction.INACTIVE, Direction.INACTIVE),
        (Direction.SENDRECV, Direction.SENDRECV),
    ],
)
def test_answer_new_offer_mirrors_direction_and_bumps_version(
    offered: Direction, answered: Direction
) -> None:
    local = make_offer("192.0.2.10", 30000, 42, 7)
    offer = make_offer("198.51.100.7", 4000, 1, 2, [PCMA, TELEPHONE_EVENT], direction=offered)
    answer, media = answer_new_offer(local, offer, local_codecs(local))
    assert answer.origin.session_id == 42 and answer.origin.version == 8
    assert answer.media[0].direction is answered and answer.media[0].port == 30000
    assert media.direction is answered and media.codec.encoding == "PCMA" and media.remote_port == 4000


def test_old_style_hold_address_means_we_must_not_send() -> None:
    local = make_offer("192.0.2.10", 30000, 42, 7)
    offer = parse_sdp(
        str(make_offer("198.51.100.7", 4000, 1, 2)).replace("IN IP4 198.51.100.7\r\nt", "IN IP4 0.0.0.0\r\nt")
    )
    _, media = answer_new_offer(local, offer, local_codecs(local))
    assert not media.direction.sends


def test_unacceptable_offer_and_fresh_offer() -> None:
    local = make_offer("192.0.2.10", 30000, 42, 7)
    g729 = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n"
    )
    with pytest.raises(NegotiationError):
        answer_new_offer(local, g729, local_codecs(local))
    with pytest.raises(NegotiationError):
        answer_new_offer(local, g729, [])
    offer = fresh_offer(local, [PCMU])
    assert offer.origin.version == 8 and offer.media[0].formats == ["0"]
    assert offer.media[0].direction is Direction.SENDRECV
