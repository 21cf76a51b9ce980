"""Which REFERs may become transfers: how a Refer-To reads as a member address, and the allow-list."""

from __future__ import annotations

import pytest

from bridgeline.sip.refer_policy import LegKind, ReferPolicy, ReferTarget, TargetKind, read_target
from bridgeline.sip.uri import SipURI, parse_uri

LOCAL = frozenset({"bridge.example", "192.0.2.10"})
ACCOUNTS = frozenset({"alice", "1001"})


def target(uri: str) -> ReferTarget:
    parsed = parse_uri(uri)
    assert isinstance(parsed, SipURI)
    return read_target(parsed, local_hosts=LOCAL, accounts=ACCOUNTS, trunk_domain="trunk.example")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sip:alice@bridge.example", ReferTarget("alice", TargetKind.ENDPOINT)),
        ("sip:1001@192.0.2.10:5060", ReferTarget("1001", TargetKind.ENDPOINT)),  # usernames win over numbers
        ("sip:+14155550123@bridge.example", ReferTarget("+14155550123", TargetKind.NUMBER)),
        ("sip:14155550123@192.0.2.10;user=phone", ReferTarget("14155550123", TargetKind.NUMBER)),
        ("sip:+14155550123@TRUNK.example", ReferTarget("+14155550123", TargetKind.NUMBER)),
        (
            "sip:bob@bridge.example",
            ReferTarget("sip:bob@bridge.example", TargetKind.URI, "bridge.example:5060"),
        ),
        (
            "sip:+14155550123@pbx.example:5070",
            ReferTarget("sip:+14155550123@pbx.example:5070", TargetKind.URI, "pbx.example:5070"),
        ),
        ("sip:a%20b@pbx.example", ReferTarget("sip:a%20b@pbx.example", TargetKind.URI, "pbx.example:5060")),
    ],
)
def test_refer_to_reads_as_the_address_the_api_would_dial(uri: str, expected: ReferTarget) -> None:
    assert target(uri) == expected


def policy(*allowed: str, transferors: tuple[str, ...] = ("endpoints",), enabled: bool = True) -> ReferPolicy:
    return ReferPolicy.from_entries(enabled=enabled, allowed=allowed, transferors=transferors)


def test_the_default_allows_our_endpoints_only() -> None:
    default = ReferPolicy()
    assert default.refusal(LegKind.ENDPOINT, target("sip:alice@bridge.example")) is None
    assert (
        default.refusal(LegKind.ENDPOINT, target("sip:+19005550123@bridge.example"))
        == "Transfer target not allowed"
    )
    assert default.refusal(LegKind.ENDPOINT, target("sip:bob@pbx.example")) == "Transfer target not allowed"
    assert default.refusal(LegKind.TRUNK, target("sip:alice@bridge.example")) == "This call may not transfer"
    assert default.refusal(LegKind.URI, target("sip:alice@bridge.example")) == "This call may not transfer"


def test_numbers_by_prefix_and_hosts_with_or_without_port() -> None:
    p = policy("+1415", "pbx.example", "10.0.0.7:5070", transferors=("endpoints", "uris"))
    assert p.refusal(LegKind.URI, target("sip:+14155550123@bridge.example")) is None
    assert p.refusal(LegKind.URI, target("sip:+19005550123@bridge.example")) == "Transfer target not allowed"
    assert p.refusal(LegKind.URI, target("sip:14155550123@bridge.example")) == "Transfer target not allowed"
    assert p.refusal(LegKind.URI, target("sip:bob@pbx.example:5099")) is None
    assert p.refusal(LegKind.URI, target("sip:bob@10.0.0.7:5070")) is None
    assert p.refusal(LegKind.URI, target("sip:bob@10.0.0.7")) == "Transfer target not allowed"
    assert p.refusal(LegKind.URI, target("sip:alice@bridge.example")) == "Transfer target not allowed"
    assert policy("+").refusal(LegKind.ENDPOINT, target("sip:+19005550123@bridge.example")) is None
    disabled = policy("endpoints", enabled=False)
    assert (
        disabled.refusal(LegKind.ENDPOINT, target("sip:alice@bridge.example"))
        == "Transfers by REFER are disabled"
    )


@pytest.mark.parametrize("entry", ["sip:bob@host", "pbx.example:99999", "+14a", ""])
def test_unreadable_allow_list_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        policy(entry)
