"""RFC 3327 Path through a trusted proxy (Kamailio in front of the nodes), and dialling a binding
another node stored: the registrar keeps Path only from the proxies it trusts, and calls to such a
binding go to the proxy with the Path as their Route set."""

from __future__ import annotations

import random

import pytest

from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import EndpointConfig, LegFailed, Registered, RegistrationLimits
from bridgeline.sip.headers import parse_name_address, parse_via
from bridgeline.sip.message import Request, make_request, make_response, parse_message
from bridgeline.sip.offer_answer import make_offer
from bridgeline.sip.registrar import Binding, Registrar
from bridgeline.sip.syntax import SipParseError
from bridgeline.sip.transaction import Transport
from bridgeline.sip.uri import SipURI, parse_sip_uri, parse_uri

PROXY = ("127.0.0.1", 5060)  # Kamailio
PHONE = ("127.0.0.1", 40000)  # where the phone really is
PATH = "<sip:127.0.0.1:5060;lr;received=sip:127.0.0.1:40000>"
TRUSTING = RegistrationLimits(path_proxies=frozenset({PROXY}))


def register(
    *, path: tuple[str, ...] = (PATH,), supported: str | None = None, user: str = "alice"
) -> Request:
    headers = [("Contact", "<sip:alice@10.0.0.5:5062>"), *(("Path", p) for p in path)]
    if supported is not None:
        headers.append(("Supported", supported))
    return make_request(
        "REGISTER",
        parse_uri("sip:bridge.example"),
        via=parse_via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKk1"),
        from_addr=parse_name_address(f"<sip:{user}@bridge.example>;tag=f"),
        to_addr=parse_name_address(f"<sip:{user}@bridge.example>"),
        call_id="c1",
        cseq=1,
        headers=headers,
    )


def test_a_trusted_proxy_s_path_is_kept_and_the_contact_is_not_repointed() -> None:
    reg = Registrar(TRUSTING)
    result = reg.register("alice", register(supported="path"), PROXY, 0.0)
    contact = parse_sip_uri("sip:alice@10.0.0.5:5062")
    path = (parse_name_address(PATH),)
    assert result.status == 200
    assert result.events == [Registered("alice", contact, contact, 3600, path, Transport.UDP)]
    assert ("Path", PATH) in result.headers  # RFC 3327 5.3: echoed to a UA that supports it
    binding = reg.lookup_binding("alice", 1.0)
    assert binding is not None and binding.path == path and binding.target == contact


def test_path_is_not_echoed_to_a_phone_that_does_not_support_it() -> None:
    result = Registrar(TRUSTING).register("alice", register(), PROXY, 0.0)
    assert result.status == 200 and not any(name == "Path" for name, _ in result.headers)
    assert result.events[0].path == (parse_name_address(PATH),)  # type: ignore[union-attr]


def test_proxies_trusted_by_host_alone_match_any_port() -> None:
    reg = Registrar(RegistrationLimits(path_proxies=frozenset({("127.0.0.1", None)})))
    reg.register("alice", register(), ("127.0.0.1", 6000), 0.0)
    binding = reg.lookup_binding("alice", 1.0)
    assert binding is not None and len(binding.path) == 1


@pytest.mark.parametrize("source", [PHONE, ("127.0.0.2", 5060)])
def test_path_from_anyone_else_is_ignored(source: tuple[str, int]) -> None:
    """A phone registering directly may not name where its calls go: its Path is dropped and its
    contact re-pointed at its source, as without Path."""
    reg = Registrar(TRUSTING)
    result = reg.register("alice", register(), source, 0.0)
    assert result.status == 200 and not any(name == "Path" for name, _ in result.headers)
    binding = reg.lookup_binding("alice", 1.0)
    assert binding is not None and binding.path == ()
    assert (binding.target.host, binding.target.port) == source


def test_too_long_or_non_sip_path_is_a_bad_request() -> None:
    limited = Registrar(RegistrationLimits(path_proxies=frozenset({PROXY}), max_path=2))
    three = ("<sip:127.0.0.1:5060;lr>", "<sip:10.0.0.1;lr>", "<sip:10.0.0.2;lr>")
    with pytest.raises(SipParseError, match="more than 2 Path"):
        limited.register("alice", register(path=three), PROXY, 0.0)
    assert limited.register("alice", register(path=three[:2]), PROXY, 0.0).status == 200
    with pytest.raises(SipParseError, match="not a SIP URI"):
        Registrar(TRUSTING).register("alice", register(path=("<tel:+14155550100>",)), PROXY, 0.0)


# --- dialling: a local binding with a Path, and a stored one ----------------------------------


def endpoint(limits: RegistrationLimits = TRUSTING) -> SipEndpoint:
    config = EndpointConfig(
        ("127.0.0.1", 5070), "bridge.example", accounts={"alice": "a", "bob": "b"}, registration=limits
    )
    return SipEndpoint(config, random.Random(1))


def invite_sent(ep: SipEndpoint) -> tuple[Request, tuple[str, int]]:
    sent = [(parse_message(data), to) for data, to in ep.datagrams_to_send()]
    invites = [(m, to) for m, to in sent if isinstance(m, Request) and m.method == "INVITE"]
    assert len(invites) == 1, sent
    return invites[0]  # type: ignore[return-value]


def dial(ep: SipEndpoint, target: str, stored: Binding | None = None) -> None:
    offer = make_offer("127.0.0.1", 30000, session_id=1, version=1)
    ep.dial("leg1", target, caller_id=None, offer_sdp=offer, now=10.0, stored=stored)


def stored_binding(path: tuple[str, ...] = (PATH,), target: str = "sip:alice@10.0.0.5:5062") -> Binding:
    uri = parse_sip_uri(target)
    return Binding(uri, uri, "c1", 1, 1e9, 0.0, None, tuple(parse_name_address(p) for p in path))


def test_a_stored_binding_with_a_path_is_called_through_the_proxy() -> None:
    ep = endpoint()
    dial(ep, "alice", stored_binding())
    invite, to = invite_sent(ep)
    assert to == PROXY  # the first Path hop
    assert invite.uri == parse_sip_uri("sip:alice@10.0.0.5:5062")  # the contact, as registered
    assert invite.headers.get_all("Route") == [PATH]
    assert invite.to_addr.uri == SipURI("bridge.example", user="alice")


def test_a_stored_binding_without_path_is_called_at_its_target() -> None:
    ep = endpoint()
    dial(ep, "alice", stored_binding(path=(), target="sip:alice@127.0.0.1:40000"))
    invite, to = invite_sent(ep)
    assert to == PHONE and invite.headers.get_all("Route") == []


def test_a_binding_registered_here_wins_over_a_stored_one() -> None:
    ep = endpoint()
    ep._core.registrar.register("alice", register(path=()), PHONE, 1.0)  # as if authenticated
    dial(ep, "alice", stored_binding())
    invite, to = invite_sent(ep)
    assert to == PHONE and invite.headers.get_all("Route") == []


def test_without_any_binding_the_dial_fails_unreachable() -> None:
    ep = endpoint()
    dial(ep, "alice")
    events = []
    while (event := ep.next_event()) is not None:
        events.append(event)
    assert [type(e) for e in events] == [LegFailed] and events[0].status == 480  # type: ignore[union-attr]


# --- Record-Route in our answers (RFC 3261 12.1.1) --------------------------------------------


def test_answers_that_establish_a_dialog_carry_the_invite_s_record_route() -> None:
    """Behind a record-routing proxy the caller's ACK and BYE must come back through it: our 18x
    and 2xx to an INVITE copy its Record-Route, in order; other answers do not."""
    invite = make_request(
        "INVITE",
        parse_uri("sip:+14155550100@127.0.0.1:5070"),
        via=parse_via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp1"),
        from_addr=parse_name_address("<sip:+1415@127.0.0.1>;tag=a"),
        to_addr=parse_name_address("<sip:+14155550100@127.0.0.1>"),
        call_id="rr1",
        cseq=1,
        headers=[("Record-Route", "<sip:127.0.0.1:5060;lr>"), ("Record-Route", "<sip:10.0.0.1;lr;x=y>")],
    )
    for status in (180, 183, 200):
        response = make_response(invite, status, to_tag="t")
        assert response.headers.get_all("Record-Route") == [
            "<sip:127.0.0.1:5060;lr>",
            "<sip:10.0.0.1;lr;x=y>",
        ]
    for status in (100, 486, 503):
        assert make_response(invite, status, to_tag="t").headers.get_all("Record-Route") == []
    options = make_request(
        "OPTIONS",
        parse_uri("sip:127.0.0.1:5070"),
        via=parse_via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp2"),
        from_addr=parse_name_address("<sip:k@127.0.0.1>;tag=a"),
        to_addr=parse_name_address("<sip:127.0.0.1:5070>"),
        call_id="rr2",
        cseq=1,
        headers=[("Record-Route", "<sip:127.0.0.1:5060;lr>")],
    )
    assert make_response(options, 200).headers.get_all("Record-Route") == []
