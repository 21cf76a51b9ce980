"""Property tests: parse_message on hostile input raises SipParseError or returns a usable message."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sipfuzz import mutated

from bridgeline.sip.message import Message, SipParseError, parse_message

DATA = Path(__file__).parent / "data"
SEEDS = [p.read_bytes().replace(b"\n", b"\r\n") for p in sorted(DATA.glob("*.sip"))]
# Bytes that are structurally meaningful to the parsers, so mutations hit interesting paths.


VIEWS = (
    "call_id",
    "cseq",
    "vias",
    "top_via",
    "from_addr",
    "to_addr",
    "contacts",
    "contact_is_wildcard",
    "routes",
    "record_routes",
    "max_forwards",
    "content_type",
)


def use_message(msg: Message) -> None:
    """Touch every typed view; each may only fail with SipParseError."""
    for view in VIEWS:
        with contextlib.suppress(SipParseError):
            getattr(msg, view)


def check(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError:
        return
    use_message(msg)
    # Serialising normalises (unfolding, Content-Length); after that it must be a fixed point.
    again = parse_message(bytes(msg))
    assert again.cseq == msg.cseq and again.body == msg.body
    assert parse_message(bytes(again)) == again


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    check(data)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(SEEDS))
def test_mutated_messages(data: bytes) -> None:
    check(data)


HEADER_TEXT = st.text(alphabet=st.sampled_from(list(' \t:;,<>"@[]?=&/\\abcsipSIP/2.0UDP12345z9hG4bK.')))


MANDATORY = ["Via", "From", "To", "Contact", "Route", "CSeq", "Call-ID", "Max-Forwards"]


@settings(max_examples=800)
@given(st.sampled_from(MANDATORY), HEADER_TEXT)
def test_replaced_header_values(name: str, value: str) -> None:
    seed = SEEDS[0]
    head, sep, body = seed.partition(b"\r\n\r\n")
    lines = [
        line if not line.lower().startswith(name.lower().encode() + b":") else f"{name}: {value}".encode()
        for line in head.split(b"\r\n")
    ]
    check(b"\r\n".join(lines) + sep + body)
