"""Which REFERs a call may act on: who may transfer, and to where (docs/sip.md "Transfers by REFER").

A REFER makes us place a call a phone asked for, so the target is allow-listed as a redirect's is:
a phone on the open network must not be able to make us dial premium numbers or arbitrary hosts.
Targets are read the way the API's addresses are dialed:

- `sip:<user>@<our domain or address>`: our endpoint `user` if it is one, else an E.164 number (via
  the trunk); the trunk's domain takes E.164 numbers too;
- any other `sip:user@host[:port]`: that SIP URI, dialed directly.

Allow-list entries: `endpoints` (any of our endpoints), a number prefix such as `+1415` (`+` alone:
every E.164 number written with a plus), and `host` or `host:port` for SIP URIs there.
Transferors (whose legs may REFER): `endpoints` (our phones), `trunk` (calls through the trunk),
`uris` (calls dialed to a SIP URI directly).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from .redirect import allowed_target
from .syntax import SipParseError, unbracket
from .transaction import DEFAULT_PORT
from .uri import SipURI, escape_user

_E164 = re.compile(r"\+?[1-9][0-9]{5,15}", re.ASCII)
_PREFIX = re.compile(r"\+?[0-9]{0,15}", re.ASCII)
ENDPOINTS = "endpoints"


class LegKind(StrEnum):
    """Who is on a leg, for `ReferPolicy.transferors`."""

    ENDPOINT = "endpoints"  # one of our registered phones
    TRUNK = "trunk"  # a number through the trunk, or a call from it
    URI = "uris"  # a SIP URI dialed directly


class TargetKind(StrEnum):
    ENDPOINT = "endpoint"
    NUMBER = "number"
    URI = "uri"


@dataclass(frozen=True, slots=True)
class ReferTarget:
    address: str  # the member address the cold transfer dials
    kind: TargetKind
    hostport: str = ""  # for URI targets: `host:port`, lower case, as allow-list entries compare


@dataclass(frozen=True, slots=True)
class ReferPolicy:
    enabled: bool = True
    endpoints: bool = True  # any of our endpoints may be a target
    number_prefixes: tuple[str, ...] = ()
    hosts: frozenset[str] = frozenset()  # `host` (any port) or `host:port`
    transferors: frozenset[LegKind] = field(default_factory=lambda: frozenset({LegKind.ENDPOINT}))

    @classmethod
    def from_entries(
        cls, *, enabled: bool, allowed: Iterable[str], transferors: Iterable[str]
    ) -> ReferPolicy:
        """Raises ValueError for an entry that is none of the forms the module names."""
        prefixes: list[str] = []
        hosts: set[str] = set()
        endpoints = False
        for entry in allowed:
            entry = entry.strip()
            if entry == ENDPOINTS:
                endpoints = True
            elif entry[:1] in "+0123456789" and entry and _PREFIX.fullmatch(entry):
                prefixes.append(entry)
            else:
                try:
                    hosts.add(allowed_target(entry))
                except SipParseError as exc:
                    raise ValueError(
                        f"refer.allowed: {entry!r} is not endpoints, +prefix or host[:port]"
                    ) from exc
        kinds = frozenset(LegKind(k) for k in transferors)
        return cls(enabled, endpoints, tuple(prefixes), frozenset(hosts), kinds)

    def refusal(self, transferor: LegKind, target: ReferTarget) -> str | None:
        """Why this REFER is refused, or None when it may go ahead."""
        if not self.enabled:
            return "Transfers by REFER are disabled"
        if transferor not in self.transferors:
            return "This call may not transfer"
        if target.kind is TargetKind.ENDPOINT:
            return None if self.endpoints else "Transfer target not allowed"
        if target.kind is TargetKind.NUMBER:
            allowed = any(target.address.startswith(p) for p in self.number_prefixes)
            return None if allowed else "Transfer target not allowed"
        host = target.hostport.rsplit(":", 1)[0]
        return None if target.hostport in self.hosts or host in self.hosts else "Transfer target not allowed"


def read_target(
    uri: SipURI, *, local_hosts: Collection[str], accounts: Collection[str], trunk_domain: str | None
) -> ReferTarget:
    """The member address a Refer-To URI names (see the module). `local_hosts` are lower case."""
    host = unbracket(uri.host).lower()
    user = uri.user or ""
    if host in local_hosts:
        if user in accounts:
            return ReferTarget(user, TargetKind.ENDPOINT)
        if _E164.fullmatch(user):
            return ReferTarget(user, TargetKind.NUMBER)
    if trunk_domain is not None and host == trunk_domain.lower() and _E164.fullmatch(user):
        return ReferTarget(user, TargetKind.NUMBER)
    port = uri.port or DEFAULT_PORT
    escaped = escape_user(user, unreserved="&=+$,/")
    written = f"sip:{escaped}@{uri.host}" + (f":{uri.port}" if uri.port else "")
    return ReferTarget(written, TargetKind.URI, f"{host}:{port}")
