"""The ASCII grammars of ids and addresses, and the escaping of SIP user parts for the wire."""

from __future__ import annotations

import re
import string
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bridgeline.core.address import AddressKind, InvalidAddress, classify
from bridgeline.core.identifiers import check_id, is_valid_id
from bridgeline.phlo.definition import PhloDefinition
from bridgeline.sip.uri import escape_user, parse_dial_uri

ID_CHARS = string.ascii_letters + string.digits + "._-"
# RFC 3261 25.1: user = 1*( unreserved / escaped / user-unreserved )
WIRE_USER = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")

valid_ids = st.text(alphabet=ID_CHARS, min_size=0, max_size=63).flatmap(
    lambda rest: st.sampled_from(string.ascii_letters + string.digits).map(lambda first: first + rest)
)


# --- ids ---------------------------------------------------------------------------------------------------


@given(valid_ids)
def test_ids_of_the_grammar_are_accepted(text: str) -> None:
    assert is_valid_id(text)
    assert check_id("phlo_id", text) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a/b",
        "a?b",
        "a#b",
        "a%2Fb",
        "a\x00b",
        "a\nb",
        "support\n",
        "a b",
        ".",
        "..",
        "-x",
        "_x",
        "é",
        "x" * 65,
    ],
)
def test_ids_outside_the_grammar_are_refused(text: str) -> None:
    assert not is_valid_id(text)
    with pytest.raises(ValueError, match="not a valid id"):
        check_id("phlo_id", text)


@given(st.text(min_size=1, max_size=70))
def test_an_accepted_id_is_plain_ascii_that_no_url_or_log_line_splits(text: str) -> None:
    if is_valid_id(text):
        assert text.isascii() and len(text) <= 64
        assert not set(text) & set("/?#%\x00\r\n ")
        assert text[0] not in "._-"


@pytest.mark.parametrize(
    ("field", "value"),
    [("phlo_id", "a/b"), ("phlo_id", "sup\x00port"), ("phlo_id", "a?b"), ("node_id", "n\nx")],
)
def test_phlo_definitions_refuse_ids_outside_the_grammar(field: str, value: str) -> None:
    raw: dict[str, object] = {"name": "p", "nodes": [{}]}
    if field == "phlo_id":
        raw["phlo_id"] = value
    else:
        raw["nodes"] = [{"node_id": value}]
    with pytest.raises(ValidationError, match="not a valid id"):
        PhloDefinition.model_validate(raw)


def test_generated_node_ids_fit_the_grammar() -> None:
    assert is_valid_id(PhloDefinition.model_validate({"name": "p", "nodes": [{}]}).nodes[0].node_id)


# --- addresses ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("+14155550100", AddressKind.PHONE_NUMBER),
        ("14155550100", AddressKind.PHONE_NUMBER),
        ("alice", AddressKind.ENDPOINT),
        ("sip:alice@example.com", AddressKind.SIP_URI),
        ("sip:+14155550100@10.0.0.1:5062;transport=udp", AddressKind.SIP_URI),
        ("sip:zo%C3%AB@example.com", AddressKind.SIP_URI),
        ("sip:a#b|c@[::1]:5060", AddressKind.SIP_URI),
        ("sip:example.com", AddressKind.SIP_URI),
    ],
)
def test_addresses_of_each_kind(address: str, kind: AddressKind) -> None:
    assert classify(address) is kind


@pytest.mark.parametrize(
    "address",
    [
        "+1415555010\u0660",  # an Arabic-Indic digit: `\d` matched it
        "+\u0661\u0664\u0661\u0665\u0665\u0665\u0660\u0661\u0660\u0660",
        "+14155550100\n",  # `$` matched before a final newline
        "alice\n",
        "sip:alice@example.com\n",
        "sip:al\x00ice@example.com",
        "sip:alice@example.com;x=\x00",
        "sip:zoë@example.com",  # non-ASCII must come percent-encoded
        "sip:alice@exämple.com",
        "sip:a b@example.com",
        "sip:a<b@example.com",
        "sip:alice@example.com;a=ü",
    ],
)
def test_addresses_outside_the_ascii_grammar_are_refused(address: str) -> None:
    with pytest.raises(InvalidAddress):
        classify(address)


@given(st.text(min_size=1, max_size=40))
def test_an_accepted_address_is_printable_ascii(text: str) -> None:
    try:
        classify(text)
    except InvalidAddress:
        return
    assert text.isascii() and text.isprintable() and " " not in text


@given(st.text(alphabet=st.characters(categories=["Nd"]), min_size=6, max_size=15))
def test_phone_numbers_are_ascii_digits_only(digits: str) -> None:
    if not digits.isascii():
        with pytest.raises(InvalidAddress):
            classify("+1" + digits)


# --- SIP user parts on the wire ----------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=40))
def test_escaped_user_parts_fit_the_rfc_3261_user_production_and_decode_back(user: str) -> None:
    wire = escape_user(user)
    assert WIRE_USER.fullmatch(wire), wire
    if "%" not in user:  # a '%' that already starts an escape is kept as written
        assert unquote(wire, errors="surrogatepass") == user


@given(st.from_regex(WIRE_USER, fullmatch=True))
def test_a_user_part_the_rfc_allows_is_sent_as_written(user: str) -> None:
    assert escape_user(user) == user


def test_what_the_user_production_does_not_allow_is_percent_encoded() -> None:
    assert escape_user("zoë") == "zo%C3%AB"
    assert escape_user("a#b|c[d]") == "a%23b%7Cc%5Bd%5D"
    assert escape_user("100%") == "100%25"
    assert escape_user("zo%C3%AB") == "zo%C3%AB"
    assert escape_user("+1;x?y/z") == "+1;x?y/z"


def test_a_dialed_sip_uri_goes_on_the_wire_escaped() -> None:
    uri = parse_dial_uri("sip:a#b|c@example.com;transport=udp")
    assert uri.user == "a%23b%7Cc" and uri.host == "example.com"
    assert str(uri) == "sip:a%23b%7Cc@example.com;transport=udp"
    assert str(parse_dial_uri("sip:example.com:5070")) == "sip:example.com:5070"
