"""Framing SIP messages out of a TCP/TLS byte stream (RFC 3261 18.3): Content-Length is the only
boundary, so it is mandatory; limits bound what a connection can make us buffer."""

from __future__ import annotations

import pytest

from bridgeline.sip.message import parse_message
from bridgeline.sip.stream_framing import FramingErrorKind, FramingLimits, StreamFramer


def options(branch: str, body: bytes = b"", *, length: str | None = None, compact: bool = False) -> bytes:
    name = "l" if compact else "Content-Length"
    head = (
        "OPTIONS sip:bridgeline@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5090;branch=z9hG4bK{branch}\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bridgeline@127.0.0.1>\r\n"
        f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
    )
    if length != "omit":
        head += f"{name}: {len(body) if length is None else length}\r\n"
    return head.encode() + b"\r\n" + body


def test_messages_split_anywhere_come_out_whole_and_in_order() -> None:
    stream = options("a", b"hello") + options("b") + options("c", b"x" * 300, compact=True)
    for step in (1, 7, 64, len(stream)):
        framer = StreamFramer()
        out: list[bytes] = []
        for i in range(0, len(stream), step):
            out += framer.feed(stream[i : i + step])
        assert out == [options("a", b"hello"), options("b"), options("c", b"x" * 300, compact=True)]
        assert framer.error is None and framer.pending == 0
        assert parse_message(out[0]).body == b"hello"


def test_keepalive_pings_are_counted_and_pongs_skipped() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n\r\n") == []  # a ping, then the first half of another
    assert framer.feed(b"\r\n") == []
    assert framer.take_pings() == 2 and framer.take_pings() == 0
    assert framer.feed(b"\r\n" + options("a")) == [options("a")]  # a pong before a message


def test_a_message_started_but_not_finished_is_pending() -> None:
    framer = StreamFramer()
    data = options("a", b"0123456789")
    assert framer.feed(data[:-3]) == []
    assert framer.pending == len(data) - 3  # what a connection closed now loses (truncated)
    assert framer.feed(data[-3:]) == [data]


def test_a_content_length_larger_than_what_came_waits() -> None:
    framer = StreamFramer()
    assert framer.feed(options("a", b"short", length="500")) == []
    assert framer.error is None and framer.pending > 0  # the idle timeout closes such a connection


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (options("a", length="omit"), FramingErrorKind.MISSING_CONTENT_LENGTH),
        (options("a", length="ten"), FramingErrorKind.BAD_CONTENT_LENGTH),
        (options("a", length="-1"), FramingErrorKind.BAD_CONTENT_LENGTH),
        (options("a", length="99999999999999999999"), FramingErrorKind.BAD_CONTENT_LENGTH),
        (
            options("a").replace(b"\r\n\r\n", b"\r\nContent-Length: 3\r\n\r\n"),
            FramingErrorKind.BAD_CONTENT_LENGTH,
        ),
        (options("a", length="40000"), FramingErrorKind.BODY_TOO_LARGE),
        (b"garbage without an end " * 1000, FramingErrorKind.HEADER_TOO_LARGE),
    ],
    ids=["missing", "not-a-number", "negative", "huge", "conflicting", "body-too-large", "head-too-large"],
)
def test_unframeable_streams_fail_for_good(data: bytes, kind: FramingErrorKind) -> None:
    framer = StreamFramer(FramingLimits(max_header_bytes=16384, max_body_bytes=32768))
    good = options("ok")
    assert framer.feed(good + data) == [good]  # what came before the error is still delivered
    assert framer.error is not None and framer.error.kind is kind
    if kind is not FramingErrorKind.HEADER_TOO_LARGE:
        assert framer.error.head is not None and framer.error.head.startswith(b"OPTIONS ")
    assert framer.feed(options("later")) == []  # nothing is framed after an error
    assert framer.pending == 0


def test_the_header_limit_is_a_setting() -> None:
    framer = StreamFramer(FramingLimits(max_header_bytes=1024, max_body_bytes=100))
    big = options("a").replace(b"Max-Forwards", b"X-Pad: " + b"p" * 1100 + b"\r\nMax-Forwards")
    assert framer.feed(big) == []
    assert framer.error is not None and framer.error.kind is FramingErrorKind.HEADER_TOO_LARGE
    assert StreamFramer(FramingLimits(max_header_bytes=4096)).feed(big) == [big]
