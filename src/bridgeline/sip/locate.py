"""Locating SIP servers (RFC 3263 section 4): which DNS records to ask for, and the ordered list of
destinations (address, port, transport) a request is tried at, first to last. They are the
transaction layer's own `Destination` values (a plain `(host, port)` for UDP, a `Target` for
TCP/TLS), so what is found here is what is sent to, with no conversion. A TLS destination found
from a name carries that name as `tls_name`: the certificate is checked against the domain looked
up, not the SRV target (RFC 5922 4.1).

Sans-I/O: `locate` is a generator that yields each `Query` it needs and is sent the records found
(an empty sequence for NXDOMAIN or no data); it returns the destinations. The DNS adapter drives it
against a resolver and a cache (adapters/carriers/sip/dns_resolver.py), tests against a dict. The
randomness of RFC 2782's weighted selection comes from an injected `Random`.

The steps, for a URI host that is not an IP address:
- an explicit port: A/AAAA of the host only (RFC 3263 4.2);
- a `transport` parameter: SRV of that transport, else A/AAAA at the default port;
- otherwise NAPTR (4.1): the records with flag "s" whose service we support, lowest order then
  preference first, each followed to its SRV name; without any, SRV for each supported transport;
  without any SRV, A/AAAA at the default port over UDP (TLS for sips:).
Targets of all usable NAPTR/SRV records are concatenated, so failover (4.3) can go down the whole
list; `max_targets` and `max_queries` bound what hostile or huge answers can make us do.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Generator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from random import Random
from typing import Final, TypeVar

from .syntax import unbracket
from .transaction import Destination, Transport, destination


class RecordType(StrEnum):
    NAPTR = "NAPTR"
    SRV = "SRV"
    A = "A"
    AAAA = "AAAA"


# RFC 3263 4.1 / RFC 3261 26: NAPTR services and SRV prefixes of each transport.
NAPTR_SERVICES: Final = {"sip+d2u": Transport.UDP, "sip+d2t": Transport.TCP, "sips+d2t": Transport.TLS}
SRV_PREFIXES: Final = {Transport.UDP: "_sip._udp", Transport.TCP: "_sip._tcp", Transport.TLS: "_sips._tcp"}
DEFAULT_MAX_TARGETS: Final = 5
DEFAULT_MAX_QUERIES: Final = 12


@dataclass(frozen=True, slots=True)
class Query:
    name: str  # lower case, no trailing dot
    rtype: RecordType


@dataclass(frozen=True, slots=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str  # regexp-based rewrites are not used for SIP (RFC 3263 4.1)


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


Records = Sequence[Naptr] | Sequence[Srv] | Sequence[str]  # A/AAAA answers are address strings
Locating = Generator[Query, Records, list[Destination]]
_R = TypeVar("_R", Naptr, Srv)


@dataclass(frozen=True, slots=True)
class LocateRequest:
    """What to locate: a URI's host (brackets allowed), its port and `transport` parameter, and
    whether it is sips:. `supported`: the transports we can send on, in order of preference;
    `families`: A and/or AAAA, in the order addresses are tried (what our socket can reach)."""

    host: str
    port: int | None = None
    transport: Transport | None = None
    secure: bool = False
    supported: tuple[Transport, ...] = (Transport.UDP,)
    families: tuple[RecordType, ...] = (RecordType.A,)
    max_targets: int = DEFAULT_MAX_TARGETS
    max_queries: int = DEFAULT_MAX_QUERIES


def numeric_host(host: str) -> str | None:
    """The IP address a host is, without brackets, or None for a name."""
    try:
        return str(ipaddress.ip_address(unbracket(host)))
    except ValueError:
        return None


def normalise_name(name: str) -> str:
    return name.rstrip(".").lower()


def needs_dns(request: LocateRequest) -> bool:
    return numeric_host(request.host) is None


def locate(request: LocateRequest, rng: Random) -> Locating:
    """Yield queries, receive their records, return the destinations best first (possibly none)."""
    budget = _Budget(request.max_queries)
    default_transport = Transport.TLS if request.secure else Transport.UDP
    transport = request.transport
    if request.secure and transport is not None and transport is not Transport.TLS:
        transport = Transport.TLS  # sips: is TLS whatever the parameter says (RFC 3261 26.2.2)
    address = numeric_host(request.host)
    if address is not None:
        chosen = transport or default_transport
        if chosen not in request.supported or _family(address) not in request.families:
            return []
        return [destination(chosen, address, request.port or chosen.default_port)]
    name = normalise_name(unbracket(request.host))
    out = _Targets(request.max_targets, tls_name=name)
    if request.port is not None:
        chosen = transport or default_transport
        if chosen in request.supported:
            yield from _addresses(name, request.port, chosen, request, out, budget)
        return out.targets
    if transport is not None:
        services = []
        if transport in request.supported:
            services = [(transport, f"{SRV_PREFIXES[transport]}.{name}")]
    else:
        naptrs = yield from budget.ask(Query(name, RecordType.NAPTR))
        services = naptr_services(_only(naptrs, Naptr), request.supported, secure=request.secure)
        if not services:
            services = [
                (t, f"{SRV_PREFIXES[t]}.{name}")
                for t in request.supported
                if not request.secure or t is Transport.TLS
            ]
    found_srv = False
    for service_transport, srv_name in services:
        records = yield from budget.ask(Query(srv_name, RecordType.SRV))
        srvs = _only(records, Srv)
        found_srv = found_srv or bool(srvs)
        for srv in order_srv(srvs, rng):
            if out.full or budget.spent:
                return out.targets
            host = normalise_name(srv.target)
            yield from _addresses(host, srv.port, service_transport, request, out, budget)
    chosen = transport or default_transport
    if not found_srv and chosen in request.supported:
        yield from _addresses(name, chosen.default_port, chosen, request, out, budget)
    return out.targets


def naptr_services(
    records: Sequence[Naptr], supported: Collection[Transport], *, secure: bool = False
) -> list[tuple[Transport, str]]:
    """The SRV names to follow, best first: terminal "s" records for a service we support (only
    SIPS+D2T for a sips: URI), by order then preference, duplicates dropped."""
    usable: list[tuple[int, int, int, Transport, str]] = []
    for position, record in enumerate(records):
        transport = NAPTR_SERVICES.get(record.service.lower())
        if transport is None or transport not in supported or record.flags.lower() != "s":
            continue
        if secure and transport is not Transport.TLS:
            continue
        replacement = normalise_name(record.replacement)
        if replacement:
            usable.append((record.order, record.preference, position, transport, replacement))
    usable.sort(key=lambda item: item[:3])
    seen: set[tuple[Transport, str]] = set()
    out = []
    for _, _, _, transport, replacement in usable:
        if (transport, replacement) not in seen:
            seen.add((transport, replacement))
            out.append((transport, replacement))
    return out


def order_srv(records: Sequence[Srv], rng: Random) -> list[Srv]:
    """RFC 2782: lowest priority first; within a priority, a weighted random order: a record's
    chance to come next is its weight over the weights left. The random number is drawn from
    1..total rather than the RFC's 0..total, which favours the first record (two of weight 1 would
    go 2:1); so weight 0 records come after the others of their priority, in the order given, as
    the RFC means them ("a very small chance"). A lone record whose target is "." means the
    service is decidedly not available: no targets."""
    if len(records) == 1 and normalise_name(records[0].target) == "":
        return []
    usable = [r for r in records if normalise_name(r.target) != "" and 0 < r.port < 65536]
    out: list[Srv] = []
    for priority in sorted({r.priority for r in usable}):
        left = [r for r in usable if r.priority == priority]
        left.sort(key=lambda r: r.weight != 0)  # weight 0 first (stable: the order given otherwise)
        while left:
            total = sum(r.weight for r in left)
            pick = rng.randint(1, total) if total else 0
            running = 0
            for index, record in enumerate(left):
                running += record.weight
                if running >= pick:
                    out.append(left.pop(index))
                    break
    return out


class _Budget:
    """At most `limit` queries per lookup: a hostile zone cannot make one dial ask thousands."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    @property
    def spent(self) -> bool:
        return self.left <= 0

    def ask(self, query: Query) -> Generator[Query, Records, Records]:
        if self.left <= 0:
            return []
        self.left -= 1
        return (yield query)


class _Targets:
    """The destinations found so far for the name `tls_name`, at most `limit`."""

    def __init__(self, limit: int, tls_name: str) -> None:
        self.limit = limit
        self.tls_name = tls_name
        self.targets: list[Destination] = []

    @property
    def full(self) -> bool:
        return len(self.targets) >= self.limit

    def add(self, address: str, port: int, transport: Transport) -> None:
        found = destination(transport, address, port, tls_name=self.tls_name)
        if not self.full and found not in self.targets:
            self.targets.append(found)


def _addresses(
    name: str, port: int, transport: Transport, request: LocateRequest, out: _Targets, budget: _Budget
) -> Generator[Query, Records, None]:
    literal = numeric_host(name)  # an SRV target should be a name, but take an address as one
    if literal is not None:
        if _family(literal) in request.families:
            out.add(literal, port, transport)
        return
    for family in request.families:
        if out.full:
            return
        records = yield from budget.ask(Query(name, family))
        for text in records:
            address = numeric_host(text) if isinstance(text, str) else None
            if address is not None and _family(address) is family:
                out.add(address, port, transport)


def _family(address: str) -> RecordType:
    return RecordType.AAAA if ":" in address else RecordType.A


def _only(records: Records, kind: type[_R]) -> list[_R]:
    """The records of the expected kind (a cache or resolver bug must not become a crash here)."""
    return [r for r in records if isinstance(r, kind)]
