"""DNS for locating SIP servers: drives the pure `sip.locate` steps against dnspython's asyncio
resolver, with a TTL cache bounded in size, a per-lookup timeout and counters.

`cached(request)` answers synchronously when every record the steps need is in the cache, so a dial
to a name seen recently sends its INVITE with no await, exactly as a dial to an IP address does;
`locate(request)` asks the resolver for what is missing. Concurrent lookups of the same record share
one query. A lookup that fails (timeout, SERVFAIL, no nameserver) raises `DnsFailure` with a reason
meant for a log line; NXDOMAIN and empty answers are not failures: they are cached for
`negative_ttl_s` and let the steps fall back (NAPTR -> SRV -> A/AAAA).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from bridgeline.sip.locate import (
    LocateRequest,
    Locating,
    Naptr,
    Query,
    Records,
    RecordType,
    Srv,
    locate,
)
from bridgeline.sip.transaction import Destination


class DnsFailure(Exception):
    """No answer could be had for a query: `reason` says why, for a log line."""

    def __init__(self, query: Query, reason: str) -> None:
        super().__init__(f"{query.rtype} {query.name}: {reason}")
        self.query = query
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    nameservers: tuple[tuple[str, int], ...] | None = None  # None: the system's resolv.conf
    timeout_s: float = 2.0
    cache_max: int = 1000
    negative_ttl_s: float = 30.0
    max_ttl_s: float = 3600.0


class SipResolver:
    def __init__(
        self, config: ResolverConfig, rng: Random, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._rng = rng
        self._clock = clock
        self._cache: OrderedDict[Query, tuple[float, Records]] = OrderedDict()
        self._inflight: dict[Query, asyncio.Future[Records]] = {}
        self._resolver: dns.asyncresolver.Resolver | None = None
        self.stats: Counter[str] = Counter()  # lookups, cache_hits, failures, timeouts

    # --- the two ways in --------------------------------------------------------------------------

    def cached(self, request: LocateRequest) -> list[Destination] | None:
        """The targets, if every record needed is cached (and fresh); else None."""
        steps = locate(request, self._rng)
        try:
            query = next(steps)
            while True:
                records = self._from_cache(query)
                if records is None:
                    steps.close()
                    return None
                query = steps.send(records)
        except StopIteration as done:
            return list(done.value)

    async def locate(self, request: LocateRequest, *, shared: bool = True) -> list[Destination]:
        """Raises DnsFailure when a NAPTR or SRV query gets no answer (the nameserver is not
        answering), or when nothing was found and an address query got none. An address query
        that fails for one server is skipped: the others may still be reached. `shared`: queries
        in flight are shared with other lookups; a background lookup asks on its own, so that no
        dial waits on (and fails with) a query sent before the nameserver could answer."""
        steps: Locating = locate(request, self._rng)
        skipped: DnsFailure | None = None
        try:
            query = next(steps)
            while True:
                records = self._from_cache(query)
                if records is None:
                    try:
                        records = await (self._lookup(query) if shared else self._ask(query))
                    except DnsFailure as failure:
                        if query.rtype not in (RecordType.A, RecordType.AAAA):
                            raise
                        skipped = skipped or failure
                        records = []
                query = steps.send(records)
        except StopIteration as done:
            if not done.value and skipped is not None:
                raise skipped from None
            return list(done.value)

    # --- cache ------------------------------------------------------------------------------------

    def _from_cache(self, query: Query) -> Records | None:
        entry = self._cache.get(query)
        if entry is None:
            return None
        expires, records = entry
        if expires <= self._clock():
            del self._cache[query]
            return None
        self._cache.move_to_end(query)
        self.stats["cache_hits"] += 1
        return records

    def _store(self, query: Query, records: Records, ttl: float) -> None:
        if self.config.cache_max <= 0:
            return
        self._cache[query] = (self._clock() + min(ttl, self.config.max_ttl_s), records)
        self._cache.move_to_end(query)
        while len(self._cache) > self.config.cache_max:
            self._cache.popitem(last=False)  # the least recently used

    def __len__(self) -> int:
        return len(self._cache)

    # --- the resolver -----------------------------------------------------------------------------

    async def _lookup(self, query: Query) -> Records:
        pending = self._inflight.get(query)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Records] = asyncio.get_running_loop().create_future()
        self._inflight[query] = future
        try:
            records = await self._ask(query)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc if isinstance(exc, DnsFailure) else DnsFailure(query, "cancelled"))
                future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        finally:
            self._inflight.pop(query, None)
        future.set_result(records)
        return records

    async def _ask(self, query: Query) -> Records:
        self.stats["lookups"] += 1
        resolver = self._get_resolver(query)
        timeout = self.config.timeout_s
        try:
            # The resolver's lifetime bounds its own retries; wait_for guards against anything else.
            answer = await asyncio.wait_for(
                resolver.resolve(query.name, query.rtype.value, lifetime=timeout, search=False),
                timeout + 0.5,
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            self._store(query, [], self.config.negative_ttl_s)
            return []
        except (dns.exception.Timeout, TimeoutError) as exc:
            self.stats["failures"] += 1
            self.stats["timeouts"] += 1
            raise DnsFailure(query, f"no answer within {timeout:g} s") from exc
        except dns.exception.DNSException as exc:  # SERVFAIL from all, no nameservers, bad name
            self.stats["failures"] += 1
            raise DnsFailure(query, type(exc).__name__ + (f": {exc}" if str(exc) else "")) from exc
        records = _records(query.rtype, answer)
        self._store(query, records, float(answer.rrset.ttl) if answer.rrset is not None else 0.0)
        return records

    def _get_resolver(self, query: Query) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            servers = self.config.nameservers
            try:
                resolver = dns.asyncresolver.Resolver(configure=servers is None)
            except dns.resolver.NoResolverConfiguration as exc:
                self.stats["failures"] += 1
                raise DnsFailure(query, "no nameservers: resolv.conf is missing or empty") from exc
            if servers is not None:
                resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in servers]
            resolver.cache = None  # ours is bounded, and serves `cached` synchronously
            self._resolver = resolver
        return self._resolver


def _records(rtype: RecordType, answer: Any) -> Records:
    """The records of an answer in the pure module's types; other types in the answer are skipped."""
    if rtype is RecordType.NAPTR:
        return [
            Naptr(r.order, r.preference, _text(r.flags), _text(r.service), r.replacement.to_text())
            for r in answer
            if r.rdtype == dns.rdatatype.NAPTR
        ]
    if rtype is RecordType.SRV:
        return [
            Srv(r.priority, r.weight, r.port, r.target.to_text())
            for r in answer
            if r.rdtype == dns.rdatatype.SRV
        ]
    return [r.address for r in answer if r.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)]


def _text(value: bytes | str) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value
