"""The DNS adapter (`adapters/carriers/sip/dns_resolver.py`) against a real nameserver: dnsmasq on
127.0.0.1 with NAPTR, SRV and A records; the TTL cache (fresh answers served without a query and
synchronously, expired ones asked again, the size bound), negative answers, and a nameserver that
never answers."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnskit import Dnsmasq, SilentNameserver, host, naptr, srv

from bridgeline.adapters.carriers.sip.dns_resolver import DnsFailure, ResolverConfig, SipResolver
from bridgeline.sip.locate import LocateRequest

RECORDS = [
    naptr("pbx.test", 10, 10, "SIP+D2U", "_sip._udp.pbx.test"),
    srv("_sip._udp.pbx.test", "one.pbx.test", 5070, 10),
    srv("_sip._udp.pbx.test", "two.pbx.test", 5072, 20),
    host("one.pbx.test", "127.0.0.11"),
    host("two.pbx.test", "127.0.0.12"),
]
EXPECTED = [("127.0.0.11", 5070), ("127.0.0.12", 5072)]  # UDP destinations


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[Dnsmasq]:
    with Dnsmasq(RECORDS, ttl=60, log=tmp_path / "dnsmasq.log") as server:
        yield server


def resolver(port: int, clock: Clock, **config: float) -> SipResolver:
    settings = ResolverConfig(nameservers=(("127.0.0.1", port),), **config)  # type: ignore[arg-type]
    return SipResolver(settings, random.Random(1), clock)


async def test_naptr_srv_and_a_records_then_the_cache(dnsmasq: Dnsmasq) -> None:
    clock = Clock()
    dns = resolver(dnsmasq.port, clock)
    request = LocateRequest("pbx.test")
    assert dns.cached(request) is None
    assert await dns.locate(request) == EXPECTED
    asked = dnsmasq.queries()
    assert asked[-4:] == [
        "query[NAPTR] pbx.test",
        "query[SRV] _sip._udp.pbx.test",
        "query[A] one.pbx.test",
        "query[A] two.pbx.test",
    ]
    assert dns.stats["lookups"] == 4
    # Fresh: answered synchronously from the cache, nothing asked.
    assert dns.cached(request) == EXPECTED
    assert await dns.locate(request) == EXPECTED
    assert dnsmasq.queries() == asked and dns.stats["lookups"] == 4 and dns.stats["cache_hits"] == 8
    # The TTL (60 s) passes: asked again.
    clock.now += 61
    assert dns.cached(request) is None
    assert await dns.locate(request) == EXPECTED
    assert dns.stats["lookups"] == 8


async def test_nxdomain_is_cached_briefly_and_gives_no_target(dnsmasq: Dnsmasq) -> None:
    clock = Clock()
    dns = resolver(dnsmasq.port, clock, negative_ttl_s=5)
    request = LocateRequest("nobody.test")
    assert await dns.locate(request) == []
    assert dns.stats["lookups"] == 3 and dns.stats["failures"] == 0  # NAPTR, SRV, A: all NXDOMAIN
    assert dns.cached(request) == []
    clock.now += 6
    assert dns.cached(request) is None


async def test_the_cache_is_bounded(dnsmasq: Dnsmasq) -> None:
    dns = resolver(dnsmasq.port, Clock(), cache_max=2)
    assert await dns.locate(LocateRequest("pbx.test")) == EXPECTED
    assert len(dns) == 2
    await dns.locate(LocateRequest("one.pbx.test", 5060))
    assert len(dns) == 2


async def test_a_nameserver_that_never_answers_fails_the_lookup_in_time() -> None:
    with SilentNameserver() as silent:
        dns = resolver(silent.port, Clock(), timeout_s=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Two dials of the same name at once share the lookup; both fail with the reason.
        results = await asyncio.gather(
            dns.locate(LocateRequest("pbx.test")),
            dns.locate(LocateRequest("pbx.test")),
            return_exceptions=True,
        )
        assert loop.time() - started < 2.0
        assert all(isinstance(r, DnsFailure) for r in results), results
        failure = results[0]
        assert isinstance(failure, DnsFailure) and failure.reason == "no answer within 0.3 s"
        assert dns.stats["lookups"] == 1 and dns.stats["failures"] == 1 and dns.stats["timeouts"] == 1
        assert silent.swallowed() >= 1  # the query did reach it
        assert len(dns) == 0  # a failure is not cached: the next dial asks again


async def test_long_ttls_are_shortened_and_a_zero_size_cache_keeps_nothing(dnsmasq: Dnsmasq) -> None:
    clock = Clock()
    dns = resolver(dnsmasq.port, clock, max_ttl_s=10)  # the records say 60 s
    request = LocateRequest("pbx.test")
    assert await dns.locate(request) == EXPECTED
    clock.now += 9
    assert dns.cached(request) == EXPECTED
    clock.now += 2
    assert dns.cached(request) is None
    uncached = resolver(dnsmasq.port, clock, cache_max=0)
    assert await uncached.locate(request) == EXPECTED
    assert len(uncached) == 0 and uncached.cached(request) is None


async def test_a_server_whose_address_gets_no_answer_is_skipped(tmp_path: Path) -> None:
    with SilentNameserver() as silent:
        records = [
            srv("_sip._udp.mixed.test", "a.broken.test", 5070, 10),  # its zone never answers
            srv("_sip._udp.mixed.test", "b.mixed.test", 5072, 20),
            host("b.mixed.test", "127.0.0.12"),
            f"--server=/broken.test/127.0.0.1#{silent.port}",
        ]
        with Dnsmasq(records, log=tmp_path / "dnsmasq.log") as server:
            dns = resolver(server.port, Clock(), timeout_s=0.3)
            assert await dns.locate(LocateRequest("mixed.test")) == [("127.0.0.12", 5072)]
            assert dns.stats["failures"] == 1
            with pytest.raises(DnsFailure, match=re.escape("A a.broken.test: no answer within 0.3 s")):
                await dns.locate(LocateRequest("a.broken.test", 5060))  # nothing else to try
