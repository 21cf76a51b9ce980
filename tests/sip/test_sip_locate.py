"""RFC 3263 server location (`sip/locate.py`): which queries are asked in which order, and the
targets that come out, driven against a dict of records; RFC 2782 weighted selection checked with
Hypothesis."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from bridgeline.sip.locate import (
    LocateRequest,
    Naptr,
    Query,
    Records,
    RecordType,
    Srv,
    locate,
    naptr_services,
    order_srv,
)
from bridgeline.sip.transaction import Destination, Transport, address_of, destination

A, AAAA, SRV, NAPTR = RecordType.A, RecordType.AAAA, RecordType.SRV, RecordType.NAPTR
UDP, TCP, TLS = Transport.UDP, Transport.TCP, Transport.TLS
Zone = Mapping[tuple[str, RecordType], Records]


def target(host: str, port: int, transport: Transport, tls_name: str | None = None) -> Destination:
    """What locate returns: the transaction layer's destinations (UDP as a plain address)."""
    return destination(transport, host, port, tls_name=tls_name)


def run(request: LocateRequest, zone: Zone, seed: int = 1) -> tuple[list[Destination], list[Query]]:
    """Drive the generator: every query is answered from zone (missing: no records)."""
    asked: list[Query] = []
    steps = locate(request, random.Random(seed))
    try:
        query = next(steps)
        while True:
            asked.append(query)
            query = steps.send(zone.get((query.name, query.rtype), []))
    except StopIteration as done:
        return done.value, asked


def test_an_ip_address_needs_no_dns() -> None:
    assert run(LocateRequest("192.0.2.1"), {}) == ([target("192.0.2.1", 5060, UDP)], [])
    assert run(LocateRequest("192.0.2.1", 5080), {})[0] == [target("192.0.2.1", 5080, UDP)]
    ipv6 = LocateRequest("[::1]", 5062, families=(AAAA,))
    assert run(ipv6, {}) == ([target("::1", 5062, UDP)], [])
    assert run(LocateRequest("[::1]", 5062), {})[0] == []  # our socket cannot reach IPv6
    assert run(LocateRequest("192.0.2.1", transport=TCP), {})[0] == []  # not a transport we speak
    assert run(LocateRequest("192.0.2.1", secure=True, supported=(UDP, TLS)), {})[0] == [
        target("192.0.2.1", 5061, TLS)
    ]


def test_an_explicit_port_asks_only_for_addresses() -> None:
    zone = {
        ("pbx.example", A): ["192.0.2.5", "192.0.2.6"],
        ("_sip._udp.pbx.example", SRV): [Srv(1, 1, 9, "x")],
    }
    targets, asked = run(LocateRequest("PBX.example.", 5070), zone)
    assert asked == [Query("pbx.example", A)]
    assert targets == [target("192.0.2.5", 5070, UDP), target("192.0.2.6", 5070, UDP)]


def test_naptr_then_srv_then_addresses_in_priority_order() -> None:
    zone: dict[tuple[str, RecordType], Records] = {
        ("example.com", NAPTR): [
            Naptr(20, 10, "s", "SIP+D2T", "_sip._tcp.example.com."),
            Naptr(10, 10, "S", "SIP+D2U", "_sip._udp.example.com."),
            Naptr(5, 10, "u", "E2U+sip", "!^.*$!sip:x@y!"),  # not a terminal SRV record: ignored
        ],
        ("_sip._udp.example.com", SRV): [
            Srv(20, 0, 5062, "b.example.com."),
            Srv(10, 0, 5060, "a.example.com."),
        ],
        ("a.example.com", A): ["192.0.2.1"],
        ("b.example.com", A): ["192.0.2.2"],
    }
    targets, asked = run(LocateRequest("example.com"), zone)
    assert targets == [target("192.0.2.1", 5060, UDP), target("192.0.2.2", 5062, UDP)]
    assert asked == [
        Query("example.com", NAPTR),
        Query("_sip._udp.example.com", SRV),  # the TCP record is skipped: not supported
        Query("a.example.com", A),
        Query("b.example.com", A),
    ]
    # With TCP supported, its targets follow the UDP ones (NAPTR order 20 after 10).
    zone[("_sip._tcp.example.com", SRV)] = [Srv(1, 0, 5070, "a.example.com")]
    tcp, _ = run(LocateRequest("example.com", supported=(UDP, TCP)), zone)
    assert tcp[-1] == target("192.0.2.1", 5070, TCP) and len(tcp) == 3


def test_without_naptr_srv_of_each_supported_transport_then_a_records() -> None:
    zone = {
        ("_sip._tcp.example.net", SRV): [Srv(0, 0, 5080, "t.example.net")],
        ("t.example.net", A): ["192.0.2.9"],
    }
    targets, asked = run(LocateRequest("example.net", supported=(UDP, TCP)), zone)
    assert targets == [target("192.0.2.9", 5080, TCP)]
    assert [q.name for q in asked] == [
        "example.net",
        "_sip._udp.example.net",
        "_sip._tcp.example.net",
        "t.example.net",
    ]
    # No SRV at all: the host's own addresses at 5060 over UDP (RFC 3263 4.2).
    plain, asked = run(LocateRequest("host.example", families=(AAAA, A)), {("host.example", AAAA): ["::1"]})
    assert plain == [target("::1", 5060, UDP)]
    assert asked[-2:] == [Query("host.example", AAAA), Query("host.example", A)]


def test_sips_uses_only_tls_and_a_transport_parameter_picks_its_srv() -> None:
    zone = {
        ("example.org", NAPTR): [Naptr(1, 1, "s", "SIP+D2U", "_sip._udp.example.org")],
        ("_sips._tcp.example.org", SRV): [Srv(1, 1, 5061, "tls.example.org")],
        ("_sip._tcp.example.org", SRV): [Srv(1, 1, 5060, "tls.example.org")],
        ("tls.example.org", A): ["192.0.2.7"],
    }
    assert run(LocateRequest("example.org", secure=True), zone)[0] == []  # we speak no TLS
    secure = LocateRequest("example.org", secure=True, supported=(UDP, TLS))
    # RFC 5922 4.1: the certificate is checked against the domain looked up, not the SRV target
    assert run(secure, zone)[0] == [target("192.0.2.7", 5061, TLS, tls_name="example.org")]
    by_param, asked = run(LocateRequest("example.org", transport=TCP, supported=(UDP, TCP)), zone)
    assert by_param == [target("192.0.2.7", 5060, TCP)] and asked[0] == Query("_sip._tcp.example.org", SRV)


def test_a_dot_target_means_no_service_and_nothing_found_means_no_target() -> None:
    zone = {("_sip._udp.gone.example", SRV): [Srv(0, 0, 0, ".")], ("gone.example", A): ["192.0.2.3"]}
    assert run(LocateRequest("gone.example"), zone)[0] == []  # the "." SRV: not A records either
    assert run(LocateRequest("nowhere.example"), {})[0] == []


def test_hostile_answers_are_bounded() -> None:
    many = [Srv(0, 1, 5060, f"h{i}.example") for i in range(1000)]
    zone: dict[tuple[str, RecordType], Records] = {("big.example", SRV): many}
    zone[("_sip._udp.big.example", SRV)] = many
    for i in range(1000):
        zone[(f"h{i}.example", A)] = [f"10.0.{i // 250}.{i % 250}", "not an address", "::1"]
    targets, asked = run(LocateRequest("big.example", max_targets=3, max_queries=8), zone)
    assert len(targets) == 3 and len(asked) <= 8
    assert all(t[0].startswith("10.0.") for t in targets)  # the junk and the wrong family dropped
    starved, asked = run(LocateRequest("big.example", max_targets=50, max_queries=4), zone)
    assert len(asked) == 4 and len(starved) == 2  # NAPTR, SRV, then two address queries


def test_naptr_services_are_filtered_and_deduplicated() -> None:
    records = [
        Naptr(10, 20, "s", "SIP+D2U", "b.example"),
        Naptr(10, 10, "s", "SIP+D2U", "a.example"),
        Naptr(10, 10, "s", "SIP+D2U", "A.example."),
        Naptr(1, 1, "s", "SIPS+D2T", "s.example"),
        Naptr(1, 1, "s", "SIP+D2U", ""),
    ]
    assert naptr_services(records, (UDP,)) == [(UDP, "a.example"), (UDP, "b.example")]
    assert naptr_services(records, (UDP, TLS), secure=True) == [(TLS, "s.example")]


srv_records = st.lists(
    st.builds(
        Srv,
        priority=st.integers(0, 3),
        weight=st.integers(0, 100),
        port=st.integers(1, 65535),
        target=st.sampled_from(["a.example", "b.example", "c.example", "d.example"]),
    ),
    max_size=8,
)


@given(srv_records, st.integers(0, 2**32))
def test_order_srv_keeps_every_record_and_sorts_priorities(records: list[Srv], seed: int) -> None:
    ordered = order_srv(records, random.Random(seed))
    assert Counter(ordered) == Counter(records)
    priorities = [r.priority for r in ordered]
    assert priorities == sorted(priorities)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=2, max_size=4), st.integers(0, 2**32))
def test_order_srv_picks_first_in_proportion_to_weight(weights: list[int], seed: int) -> None:
    records = [Srv(10, w, 5060 + i, f"h{i}.example") for i, w in enumerate(weights)]
    rng = random.Random(seed)
    trials = 2000
    firsts = Counter(order_srv(records, rng)[0] for _ in range(trials))
    total = sum(weights)
    for record in records:
        expected = trials * record.weight / total
        assert abs(firsts[record] - expected) < 5 * (expected**0.5) + 10, (record, firsts[record], expected)


def test_zero_weights_come_last_in_their_priority_and_lower_priority_always_later() -> None:
    rng = random.Random(5)
    records = [
        Srv(10, 0, 5060, "zero.example"),
        Srv(10, 100, 5060, "heavy.example"),
        Srv(20, 100, 5060, "backup"),
    ]
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(1000))
    assert firsts["heavy.example"] == 1000
    assert order_srv(records[:1], rng) == records[:1]  # all weights 0: still used
    assert all(order_srv(records, rng)[-1].target == "backup" for _ in range(50))


def _sequence(targets: Sequence[Destination]) -> list[tuple[str, int]]:
    return [address_of(t) for t in targets]


def test_the_same_seed_gives_the_same_order() -> None:
    zone = {
        ("_sip._udp.lb.example", SRV): [Srv(10, 50, 5060 + i, f"n{i}.lb.example") for i in range(5)],
        **{(f"n{i}.lb.example", A): [f"192.0.2.{i + 1}"] for i in range(5)},
    }
    first = _sequence(run(LocateRequest("lb.example"), zone, seed=9)[0])
    assert first == _sequence(run(LocateRequest("lb.example"), zone, seed=9)[0])
    orders = {tuple(_sequence(run(LocateRequest("lb.example"), zone, seed=s)[0])) for s in range(30)}
    assert len(orders) > 5  # load is spread, not always the same first server
