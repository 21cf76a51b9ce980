"""The SIP YAML's `dns` and `failover` settings, host:port parsing with IPv6 references, and what a
dial looks up before its INVITE (`dial_lookup.lookup_for`, mirroring the endpoint's routing)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bridgeline.adapters.carriers.sip.dial_lookup import lookup_for
from bridgeline.adapters.carriers.sip.settings import SipSettings, split_host_port
from bridgeline.sip.events import FailoverPolicy
from bridgeline.sip.locate import LocateRequest, RecordType, Transport

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
    assert lookup("sips:bob@secure.test") is None  # refused by the endpoint, never looked up
    assert lookup("sip:bob@Pbx.Test:5080") == LocateRequest("Pbx.Test", 5080, None, False, UDP, V4, 3, 7)
    by_tcp = lookup("sip:bob@pbx.test;transport=tcp")
    assert by_tcp is not None and by_tcp.transport is Transport.TCP
    unknown = lookup("sip:bob@pbx.test;transport=sctp")
    assert unknown is not None and unknown.supported == ()  # nothing to send on: no target, no query
    assert lookup("sip:bad@") is None
    by_address = settings(trunk={"proxy": "203.0.113.5:5060", "domain": "c.test"})
    assert lookup_for("+14155550100", by_address, UDP, V4) is None
    no_port_v6 = settings(trunk={"proxy": "[2001:db8::1]", "domain": "c.test"})
    assert lookup_for("+14155550100", no_port_v6, UDP, V4) is None
