"""Following 3xx answers to our INVITEs (RFC 3261 8.1.3.4, 21.3), bounded and allow-listed.

A redirect is the network telling us to place a call somewhere else, so each target must pass the
policy: a sip: URI (sips: would need TLS, which we do not speak), not tried before on this leg
(loops), on a host the configuration allows (a redirect to an arbitrary number or host is a toll
fraud vector), and at most `max_redirects` new INVITEs per leg. Only 300, 301 and 302 are followed:
305 Use Proxy is deprecated (RFC 5876: it lets a response steer our traffic through any proxy), and
380 Alternative Service describes a service in its body rather than a target.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Final

from .headers import NameAddress
from .syntax import SipParseError, parse_hostport, unbracket
from .transaction import DEFAULT_PORT
from .uri import SipURI

FOLLOWED_STATUSES: Final = frozenset({300, 301, 302})
DEFAULT_MAX_REDIRECTS: Final = 3


@dataclass(frozen=True, slots=True)
class RedirectPolicy:
    """Which 3xx targets an outbound leg may follow. `allowed_targets` holds `host` (any port) or
    `host:port` entries; empty means no redirect is followed."""

    max_redirects: int = DEFAULT_MAX_REDIRECTS
    allowed_targets: frozenset[str] = frozenset()

    def allows(self, uri: SipURI) -> bool:
        host = unbracket(uri.host).lower()
        port = uri.port or DEFAULT_PORT
        return host in self.allowed_targets or f"{host}:{port}" in self.allowed_targets


def allowed_target(entry: str) -> str:
    """An allow-list entry in the form `RedirectPolicy.allows` compares: lower case, no brackets.
    Raises SipParseError for something that is not `host[:port]`."""
    host, port = parse_hostport(entry.strip())
    host = unbracket(host).lower()
    return host if port is None else f"{host}:{port}"


def target_key(uri: SipURI) -> str:
    """What makes two targets the same call for loop detection: scheme, user, host and port (URI
    parameters such as `transport` or `user=phone` do not make a new destination)."""
    return f"{uri.scheme}:{uri.user or ''}@{unbracket(uri.host).lower()}:{uri.port or DEFAULT_PORT}"


def _q_value(contact: NameAddress) -> float:
    """RFC 3261 20.10: q in [0, 1]; absent counts as 1 (the usual reading), unreadable as 0."""
    text = contact.params.get("q")
    if text is None:
        return 1.0
    try:
        q = float(text)
    except ValueError:
        return 0.0
    return q if 0.0 <= q <= 1.0 else 0.0


def _as_request_uri(uri: SipURI) -> SipURI:
    """A contact made fit to be a Request-URI: URI headers (`?Subject=...`) and the `method`
    parameter are dropped (RFC 3261 19.1.5 lets us ignore them; honouring them would let the
    redirecting party write headers into our INVITE)."""
    bare = SipURI(uri.host, uri.user, None, uri.port, uri.params, (), uri.scheme)
    return bare.without_param("method") if "method" in bare.params else bare


@dataclass(frozen=True, slots=True)
class RedirectTargets:
    """The contacts of one 3xx sorted into those to try (highest q first, ties in the order
    given) and how many were refused by the policy."""

    usable: list[SipURI]
    refused: int


def redirect_targets(
    contacts: Iterable[NameAddress], policy: RedirectPolicy, tried: Collection[str]
) -> RedirectTargets:
    usable: list[tuple[float, int, SipURI]] = []
    seen = set(tried)
    refused = 0
    for position, contact in enumerate(contacts):
        uri = contact.uri
        if not isinstance(uri, SipURI) or uri.secure or not policy.allows(uri):
            refused += 1
            continue
        key = target_key(uri)
        if key in seen:
            refused += 1  # a loop back to a target of this leg, or a duplicate contact
            continue
        seen.add(key)
        usable.append((-_q_value(contact), position, _as_request_uri(uri)))
    usable.sort(key=lambda item: item[:2])
    return RedirectTargets([uri for _, _, uri in usable], refused)


def parse_allowed_targets(entries: Iterable[str]) -> frozenset[str]:
    """Settings helper: normalise entries, raising ValueError on the first bad one."""
    out = set()
    for entry in entries:
        try:
            out.add(allowed_target(entry))
        except SipParseError as exc:
            raise ValueError(f"redirect target {entry!r} is not host[:port]") from exc
    return frozenset(out)
