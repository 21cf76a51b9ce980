"""The SIP YAML's `dns` and `failover` settings, host:port parsing with IPv6 references, and what a
dial looks up before its INVITE (`dial_lookup.lookup_for`, mirroring the endpoint's routing)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bridgeline.adapters.carriers.sip.dial_lookup import lookup_for
from bridgeline.adapters.carriers.sip.settings import SipSettings, split_host_port
from bridgeline.sip.events import FailoverPolicy
from bridgeline.sip.locate import LocateRequest, RecordType
from bridgeline.sip.transaction import Transport

UDP = (Transport.UDP,)
V4 = (RecordType.A,)


def settings(**overrides: object) -> SipSettings:
    return SipSettings.model_validate(
        {
            "endpoints": {"alice": "pw", "1001": "pw"},
            "trunk": {"proxy": "sip.carrier.test", "domain": "c.test"},
        }
        | overrides
    )


def test_host_port_forms() -> None:
    assert split_host_port("sip.example") == ("sip.example", None)
    assert split_host_port("sip.example:5070") == ("sip.example", 5070)
    assert split_host_port("[::1]:5062") == ("::1", 5062)
    assert split_host_port("[::1]") == ("::1", None)
    assert split_host_port("::1") == ("::1", None)  # a bare IPv6 address has no port
    for bad in ("host:0", "host:x", "[::1", "[::1]x"):
        with pytest.raises(ValueError, match="invalid"):
            split_host_port(bad)


def test_dns_and_failover_settings() -> None:
    parsed = settings(
        dns={"nameservers": ["127.0.0.1:5353", "::1"], "timeout_s": 0.5},
        failover={"max": 2, "no_response_s": 1.5},
        listen="[::1]:5070",
    )
    assert parsed.dns.nameserver_addresses() == (("127.0.0.1", 5353), ("::1", 53))
    assert parsed.endpoint_config().failover == FailoverPolicy(2, 1.5)
    assert parsed.listen_address == ("::1", 5070)
    assert parsed.endpoint_config().local_address == ("::1", 5070)
    assert settings().dns.nameserver_addresses() is None  # resolv.conf
    for bad in (
        {"dns": {"nameservers": ["ns.example"]}},  # a nameserver must be an address
        {"dns": {"timeout_s": 0}},
        {"dns": {"max_targets": 0}},
        {"failover": {"max": 21}},
        {"dns": {"unknown": 1}},
    ):
        with pytest.raises(ValidationError):
            settings(**bad)


def test_what_a_dial_looks_up() -> None:
    config = settings(dns={"max_targets": 3, "max_queries": 7})

    def lookup(target: str) -> LocateRequest | None:
        return lookup_for(target, config, UDP, V4)

    assert lookup("+14155550100") == LocateRequest("sip.carrier.test", None, None, False, UDP, V4, 3, 7)
    assert lookup("1001") is None  # an account wins over a number
    assert lookup("alice") is None
    assert lookup("sip:bob@192.0.2.1:5070") is None
    assert lookup("sip:bob@[::1]") is None
    tls_only = (Transport.TLS,)  # sips: NAPTR/SRV, SIPS+D2T and _sips._tcp only
    assert lookup("sips:bob@secure.test") == LocateRequest(
        "secure.test", None, None, True, tls_only, V4, 3, 7
    )
    sips_tcp = lookup("sips:bob@secure.test;transport=tcp")
    assert sips_tcp is not None and (sips_tcp.transport, sips_tcp.supported) == (Transport.TLS, tls_only)
    assert lookup("sip:bob@Pbx.Test:5080") == LocateRequest("Pbx.Test", 5080, None, False, UDP, V4, 3, 7)
    by_tcp = lookup("sip:bob@pbx.test;transport=tcp")
    # Named explicitly: dialled whether or not DNS may choose it (no TCP listener here)
    assert by_tcp is not None and (by_tcp.transport, by_tcp.supported) == (Transport.TCP, (Transport.TCP,))
    unknown = lookup("sip:bob@pbx.test;transport=sctp")
    assert unknown is not None and unknown.supported == ()  # nothing to send on: no target, no query
    assert lookup("sip:bad@") is None
    by_address = settings(trunk={"proxy": "203.0.113.5:5060", "domain": "c.test"})
    assert lookup_for("+14155550100", by_address, UDP, V4) is None
    no_port_v6 = settings(trunk={"proxy": "[2001:db8::1]", "domain": "c.test"})
    assert lookup_for("+14155550100", no_port_v6, UDP, V4) is None


def test_what_dns_may_choose_follows_the_listeners_and_a_pinned_trunk_transport() -> None:
    """TCP only with a TCP listener, TLS once TLS is set up (a listener, a certificate or CAs);
    `trunk.transport` pins what the trunk's name is looked up for."""
    assert settings().located_transports == (Transport.UDP,)
    tcp = settings(tcp={"listen": "127.0.0.1:5070"})
    assert tcp.located_transports == (Transport.TCP, Transport.UDP)
    tls = settings(tcp={"listen": "127.0.0.1:5070"}, tls={"ca_file": "/etc/ssl/ca.pem"})
    assert tls.located_transports == (Transport.TLS, Transport.TCP, Transport.UDP)
    located = lookup_for("+14155550100", tcp, tcp.located_transports, V4)
    assert located is not None and (located.transport, located.supported) == (
        None,
        (Transport.TCP, Transport.UDP),
    )
    pinned = settings(trunk={"proxy": "sip.carrier.test", "domain": "c.test", "transport": "tls"})
    by_tls = lookup_for("+14155550100", pinned, UDP, V4)
    assert by_tls is not None and (by_tls.transport, by_tls.supported) == (Transport.TLS, (Transport.TLS,))
    assert pinned.endpoint_config().trunk is not None
    assert pinned.endpoint_config().trunk.proxy == ("sip.carrier.test", 5061, Transport.TLS, False, None)
    assert settings().endpoint_config().trunk.proxy == ("sip.carrier.test", 5060)  # UDP when unpinned
