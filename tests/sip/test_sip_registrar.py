"""Registrar (RFC 3261 10.3) without the network: binding rules, expiry, NAT targets."""

from __future__ import annotations

import pytest

from bridgeline.sip.events import Registered, RegistrationLimits, Unregistered
from bridgeline.sip.headers import parse_name_address, parse_via
from bridgeline.sip.message import Request, make_request
from bridgeline.sip.registrar import Registrar, reachable_target
from bridgeline.sip.syntax import SipParseError
from bridgeline.sip.uri import SipURI, parse_sip_uri, parse_uri

SOURCE = ("198.51.100.7", 5062)


def register(
    *contacts: str, expires: int | None = None, cseq: int = 1, call_id: str = "c1", user: str = "1001"
) -> Request:
    headers = [("Contact", c) for c in contacts]
    if expires is not None:
        headers.append(("Expires", str(expires)))
    return make_request(
        "REGISTER",
        parse_uri("sip:bridge.example"),
        via=parse_via("SIP/2.0/UDP 198.51.100.7:5062;branch=z9hG4bKr1"),
        from_addr=parse_name_address(f"<sip:{user}@bridge.example>;tag=f"),
        to_addr=parse_name_address(f"<sip:{user}@bridge.example>"),
        call_id=call_id,
        cseq=cseq,
        headers=headers,
    )


def test_bind_refresh_query_and_remove() -> None:
    reg = Registrar()
    contact = parse_sip_uri("sip:1001@198.51.100.7:5062")
    result = reg.register("1001", register("<sip:1001@198.51.100.7:5062>"), SOURCE, 0.0)
    assert result.status == 200 and result.events == [Registered("1001", contact, contact, 3600)]
    assert result.headers == [("Contact", "<sip:1001@198.51.100.7:5062>;expires=3600")]
    query = reg.register("1001", register(), SOURCE, 100.0)  # no Contact: just list the bindings
    assert query.headers == [("Contact", "<sip:1001@198.51.100.7:5062>;expires=3500")] and not query.events
    refreshed = reg.register(
        "1001", register("<sip:1001@198.51.100.7:5062>", expires=600, cseq=2), SOURCE, 200.0
    )
    assert refreshed.headers == [("Contact", "<sip:1001@198.51.100.7:5062>;expires=600")]
    assert reg.next_expiry() == 800.0
    removed = reg.register("1001", register("<sip:1001@198.51.100.7:5062>", expires=0, cseq=3), SOURCE, 300.0)
    assert removed.events == [Unregistered("1001", contact, "removed")] and len(reg) == 0


def test_out_of_order_register_from_the_same_call_id_is_refused() -> None:
    reg = Registrar()
    assert reg.register("1001", register("<sip:1001@h>", cseq=5), SOURCE, 0.0).status == 200
    assert reg.register("1001", register("<sip:1001@h>", cseq=5), SOURCE, 1.0).status == 500
    assert reg.register("1001", register("<sip:1001@h>", cseq=2, call_id="other"), SOURCE, 1.0).status == 200


def test_limits() -> None:
    reg = Registrar(RegistrationLimits(default=100, minimum=20, maximum=300, max_bindings=2))
    assert reg.register("1001", register("<sip:a@h>", expires=10), SOURCE, 0.0).status == 423
    assert (
        reg.register("1001", register("<sip:a@h>;expires=5000"), SOURCE, 0.0).headers[0][1].endswith("=300")
    )
    assert reg.register("1001", register("<sip:b@h>"), SOURCE, 0.0).status == 200
    assert reg.register("1001", register("<sip:c@h>"), SOURCE, 0.0).status == 403  # a third binding
    assert (
        reg.register("1001", register("<sip:c@h>", "<sip:a@h>;expires=0", cseq=2), SOURCE, 0.0).status == 200
    )
    assert reg.register("mallory", register("<sip:m@h>", user="1001"), SOURCE, 0.0).status == 403
    with pytest.raises(SipParseError):
        reg.register("1001", register("<sip:d@h>;expires=soon"), SOURCE, 0.0)


def test_wildcard_and_expiry_events() -> None:
    reg = Registrar()
    reg.register("1001", register("<sip:a@h>", "<sip:b@h>", expires=60), SOURCE, 0.0)
    reg.register("alice", register("<sip:x@h>", expires=120, user="alice"), SOURCE, 0.0)
    assert reg.register("1001", register("*", expires=5), SOURCE, 1.0).status == 400
    assert reg.expire(59.0) == []
    assert {e.contact.user for e in reg.expire(60.0)} == {"a", "b"}
    assert reg.lookup("1001", 61.0) is None and reg.lookup("alice", 61.0) == SipURI(
        "198.51.100.7", "x", port=5062
    )
    gone = reg.register("alice", register("*", expires=0, user="alice"), SOURCE, 70.0)
    assert gone.status == 200 and gone.events == [Unregistered("alice", SipURI("h", "x"), "removed")]
    assert len(reg) == 0


def test_lookup_prefers_the_freshest_binding_and_ignores_expired_ones() -> None:
    reg = Registrar()
    reg.register("1001", register("<sip:1001@198.51.100.7:5062>", expires=100), SOURCE, 0.0)
    reg.register(
        "1001", register("<sip:1001@198.51.100.7:5070>", expires=100, cseq=2), ("198.51.100.7", 5070), 10.0
    )
    assert reg.lookup("1001", 50.0) == SipURI("198.51.100.7", "1001", port=5070)
    assert reg.lookup("1001", 105.0) == SipURI("198.51.100.7", "1001", port=5070)
    assert reg.lookup("1001", 111.0) is None


@pytest.mark.parametrize(
    ("contact", "source", "expected"),
    [
        ("sip:1001@198.51.100.7:5062", ("198.51.100.7", 5062), "sip:1001@198.51.100.7:5062"),
        ("sip:1001@198.51.100.7", ("198.51.100.7", 5060), "sip:1001@198.51.100.7"),
        ("sip:1001@10.0.0.5;ob", ("198.51.100.7", 40000), "sip:1001@198.51.100.7:40000;ob"),
        ("sip:1001@[fd00::5]:5060", ("2001:db8::7", 5060), "sip:1001@[2001:db8::7]:5060"),
    ],
)
def test_reachable_target(contact: str, source: tuple[str, int], expected: str) -> None:
    assert str(reachable_target(parse_sip_uri(contact), source)) == expected
