"""A registrar for the endpoint accounts (RFC 3261 section 10.3), without the authentication step.

`register` processes a REGISTER from an already authenticated user and says what to answer;
`lookup` gives the URI to send an INVITE to. Bindings keep the source address the REGISTER came
from: when it differs from the Contact's host:port (a phone behind NAT advertising its private
address), calls go to the source instead, as RFC 3581 does for responses. A REGISTER over TCP/TLS
leaves its connection as the binding's flow: calls go over it (`flow`), and fail at once if it
has closed (a phone's connection port is not one it listens on).

Path (RFC 3327): a REGISTER relayed by a proxy in front of us (Kamailio) carries the proxy's own
URI in `Path`; calls to the binding must go back through it (its URIs as the INVITE's Route set,
the contact unchanged as Request-URI). Path is kept only from the proxies the settings trust
(`RegistrationLimits.path_proxies`): from anyone else it is ignored, since it names where calls go.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .events import Registered, RegistrationLimits, Unregistered
from .headers import NameAddress, parse_name_addresses
from .message import Request
from .option_tags import option_tags
from .syntax import SipParseError, parse_uint, unbracket
from .transaction import DEFAULT_PORT, Destination, Target, address_of, transport_of
from .uri import SipURI

_MAX_EXPIRES = 2**32 - 1  # RFC 3261 20.19: delta-seconds


@dataclass(slots=True)
class Binding:
    contact: SipURI
    target: SipURI
    call_id: str
    cseq: int
    expires_at: float
    updated: float
    flow: Target | None = None  # the TCP/TLS connection the REGISTER came on, reuse-only
    path: tuple[NameAddress, ...] = ()  # RFC 3327: the trusted proxies to call it through

    def remaining(self, now: float) -> int:
        return max(0, round(self.expires_at - now))


@dataclass(slots=True)
class RegisterResult:
    """The response to send (status and extra headers) and the events to report."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    events: list[Registered | Unregistered] = field(default_factory=list)


def reachable_target(contact: SipURI, source: Destination) -> SipURI:
    """contact, or contact re-pointed at the address its REGISTER actually came from."""
    host, port = address_of(source)
    if (unbracket(contact.host), contact.port or DEFAULT_PORT) == (host, port):
        return contact
    return dataclasses.replace(contact, host=f"[{host}]" if ":" in host else host, port=port)


class Registrar:
    """Location service: username -> bindings keyed by contact URI text."""

    def __init__(self, limits: RegistrationLimits | None = None) -> None:
        self.limits = limits or RegistrationLimits()
        self._bindings: dict[str, dict[str, Binding]] = {}

    def __len__(self) -> int:
        return sum(len(b) for b in self._bindings.values())

    def bindings(self, username: str, now: float) -> list[Binding]:
        """Live bindings of a user, most recently refreshed first."""
        live = [b for b in self._bindings.get(username, {}).values() if b.expires_at > now]
        return sorted(live, key=lambda b: b.updated, reverse=True)

    def lookup(self, username: str, now: float) -> SipURI | None:
        """Where to call username now: the most recently refreshed live binding's target."""
        live = self.bindings(username, now)
        return live[0].target if live else None

    def lookup_binding(self, username: str, now: float) -> Binding | None:
        """The most recently refreshed live binding, with its flow."""
        live = self.bindings(username, now)
        return live[0] if live else None

    def register(self, username: str, request: Request, source: Destination, now: float) -> RegisterResult:
        """RFC 3261 10.3 steps 5-8 for an authenticated `username`. Malformed Contact or Expires
        values raise SipParseError (the caller answers 400)."""
        to_uri = request.to_addr.uri
        if not isinstance(to_uri, SipURI) or to_uri.user != username:
            return RegisterResult(403)  # step 6: may only change its own address-of-record
        current = self._bindings.get(username, {})
        header_expires = _expires(request.headers.get("Expires"))
        if request.contact_is_wildcard:
            if header_expires != 0:
                return RegisterResult(400)  # `*` is only valid with Expires: 0 (10.2.2)
            events: list[Registered | Unregistered] = [
                Unregistered(username, b.contact, "removed") for b in current.values()
            ]
            self._bindings.pop(username, None)
            return RegisterResult(200, events=events)
        path = self._trusted_path(request, source)
        plan: list[tuple[SipURI, int]] = []
        for contact in request.contacts:
            if not isinstance(contact.uri, SipURI):
                raise SipParseError(f"unsupported contact URI: {contact.uri}")
            expires = _expires(contact.params.get("expires"))
            if expires is None:
                expires = header_expires if header_expires is not None else self.limits.default
            if 0 < expires < self.limits.minimum:
                return RegisterResult(423, [("Min-Expires", str(self.limits.minimum))])
            plan.append((contact.uri, min(expires, self.limits.maximum)))
        call_id, cseq = request.call_id, request.cseq.seq
        for uri, _ in plan:
            old = current.get(str(uri))
            if old is not None and old.call_id == call_id and old.cseq >= cseq:
                return RegisterResult(500)  # step 7: an out-of-order REGISTER from the same UA
        after = (current.keys() - {str(uri) for uri, expires in plan if not expires}) | {
            str(uri) for uri, expires in plan if expires
        }
        if len(after) > self.limits.max_bindings:
            return RegisterResult(403)
        result = RegisterResult(200)
        for uri, expires in plan:
            key = str(uri)
            if expires == 0:
                if (gone := current.pop(key, None)) is not None:
                    result.events.append(Unregistered(username, gone.contact, "removed"))
                continue
            # Through a proxy the contact stays as registered: the proxy knows where the phone is.
            target = uri if path else reachable_target(uri, source)
            flow = None
            if transport_of(source).reliable and not path:
                host, port = address_of(source)
                flow = Target(host, port, transport_of(source), reuse_only=True)
            current[key] = Binding(uri, target, call_id, cseq, now + expires, now, flow, path)
            result.events.append(Registered(username, uri, target, expires, path, transport_of(source)))
        if current:
            self._bindings[username] = current
        else:
            self._bindings.pop(username, None)
        # Step 8: the 200 lists every current binding with its remaining time.
        result.headers = [
            ("Contact", f"<{b.contact}>;expires={b.remaining(now)}") for b in self.bindings(username, now)
        ]
        if path and "path" in option_tags(request, "Supported"):
            result.headers += [("Path", str(hop)) for hop in path]  # RFC 3327 5.3
        return result

    def _trusted_path(self, request: Request, source: Destination) -> tuple[NameAddress, ...]:
        """The REGISTER's Path when it came from a trusted proxy, else (); SipParseError when a
        trusted proxy's Path is malformed or longer than the limit."""
        host, port = address_of(source)
        proxies = self.limits.path_proxies
        if (host, port) not in proxies and (host, None) not in proxies:
            return ()
        path = tuple(parse_name_addresses(request.headers.get_all("Path")))
        if len(path) > self.limits.max_path:
            raise SipParseError(f"more than {self.limits.max_path} Path entries")
        if any(not isinstance(hop.uri, SipURI) for hop in path):
            raise SipParseError("a Path entry is not a SIP URI")
        return path

    def next_expiry(self) -> float | None:
        return min((b.expires_at for bs in self._bindings.values() for b in bs.values()), default=None)

    def expire(self, now: float) -> list[Unregistered]:
        """Drop bindings whose time is up."""
        events: list[Unregistered] = []
        for username in list(self._bindings):
            bindings = self._bindings[username]
            for key in [k for k, b in bindings.items() if b.expires_at <= now]:
                events.append(Unregistered(username, bindings.pop(key).contact, "expired"))
            if not bindings:
                del self._bindings[username]
        return events


def _expires(text: str | None) -> int | None:
    if text is None:
        return None
    return parse_uint(text.strip(), "expires", _MAX_EXPIRES)
