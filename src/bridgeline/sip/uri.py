"""SIP, SIPS and tel URIs (RFC 3261 section 19.1, RFC 3966), plus an opaque fallback for other schemes.

User parts and parameter values are kept exactly as written (percent-escapes included), so a
parsed URI serialises back to the same text. URI comparison rules (RFC 3261 19.1.4) are not
implemented: `==` is structural.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar
from urllib.parse import quote

from .syntax import PARSE_CACHE_SIZE, Params, SipParseError, has_forbidden_chars, parse_hostport, parse_params

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_TEL_NUMBER_RE = re.compile(r"\+?[0-9A-Fa-f*#.()pPwW-]+")
# Characters that cannot appear unescaped in userinfo, besides the generic forbidden set.
_USER_FORBIDDEN = frozenset("@[]{}|^")
# RFC 3261 25.1: user = 1*( unreserved / escaped / user-unreserved ); anything else is percent-encoded.
USER_UNRESERVED = "&=+$,;?/"
_MARKS = "-_.!~*'()"
_ESCAPED = re.compile(r"%[0-9A-Fa-f]{2}")
_ESCAPED_SPLIT = re.compile(r"(%[0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True)
class SipURI:
    """`sip:user:password@host:port;params?headers` (RFC 3261 19.1.1). `host` keeps IPv6 brackets."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = field(default_factory=Params)
    headers: tuple[tuple[str, str], ...] = ()
    scheme: str = "sip"

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(str(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{n}={v}" for n, v in self.headers))
        return "".join(out)

    @property
    def secure(self) -> bool:
        return self.scheme == "sips"

    @property
    def transport(self) -> str | None:
        """The `transport` URI parameter, lower-cased, if any."""
        value = self.params.get("transport")
        return value.lower() if value else None

    def with_param(self, name: str, value: str | None = None) -> SipURI:
        return _replace_params(self, self.params.with_param(name, value))

    def without_param(self, name: str) -> SipURI:
        return _replace_params(self, self.params.without(name))


def _replace_params(uri: SipURI, params: Params) -> SipURI:
    return SipURI(uri.host, uri.user, uri.password, uri.port, params, uri.headers, uri.scheme)


@dataclass(frozen=True, slots=True)
class TelURI:
    """`tel:+1-201-555-0123;phone-context=...` (RFC 3966); the number is kept as written."""

    number: str
    params: Params = field(default_factory=Params)
    scheme: ClassVar[str] = "tel"

    def __str__(self) -> str:
        return f"tel:{self.number}{self.params}"


@dataclass(frozen=True, slots=True)
class AbsoluteURI:
    """Any other absolute URI (`urn:`, `mailto:`, `http:`...), kept opaque."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


URI = SipURI | TelURI | AbsoluteURI


def parse_uri(text: str) -> URI:
    """Parse a Request-URI or the URI inside a name-addr. Raises SipParseError.

    Results are immutable and remembered for the most recent distinct texts: the same URIs come
    back in every message of a dialog."""
    return _parse_uri_cached(text)


def _parse_uri(text: str) -> URI:
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise SipParseError(f"not an absolute URI: {text!r}")
    if not rest or has_forbidden_chars(rest):
        raise SipParseError(f"invalid URI: {text!r}")
    scheme = scheme.lower()
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not _TEL_NUMBER_RE.fullmatch(number):
            raise SipParseError(f"invalid tel number: {number!r}")
        return TelURI(number, parse_params(";" + params))
    return AbsoluteURI(scheme, rest)


_parse_uri_cached = lru_cache(maxsize=PARSE_CACHE_SIZE)(_parse_uri)


def parse_sip_uri(text: str) -> SipURI:
    """Like parse_uri but only accepts sip: and sips:."""
    uri = parse_uri(text)
    if not isinstance(uri, SipURI):
        raise SipParseError(f"not a SIP URI: {text!r}")
    return uri


def escape_user(user: str, *, unreserved: str = USER_UNRESERVED) -> str:
    """`user` as RFC 3261 19.1.2 puts it on the wire: every character the `user` production does not
    allow is percent-encoded (as UTF-8 bytes); escapes already present (`%C3%AB`) are kept as written.

    `unreserved`: the user-unreserved characters to keep as they are (a member address, whose
    parameters follow a ';', passes fewer)."""
    safe = _MARKS + unreserved  # quote() keeps letters, digits and "_.-~" itself
    return "".join(
        part if _ESCAPED.fullmatch(part) else quote(part, safe=safe, errors="surrogatepass")
        for part in _ESCAPED_SPLIT.split(user)
    )


def parse_dial_uri(text: str) -> SipURI:
    """A SIP URI as a user wrote it (an API address) made ready for the wire: its user part escaped
    (`sip:a#b@host` is sent as `sip:a%23b@host`), then parsed. Raises SipParseError."""
    scheme, colon, rest = text.strip().partition(":")
    userinfo, at, hostpart = rest.partition("@")
    if colon and at:
        text = f"{scheme}:{escape_user(userinfo)}@{hostpart}"
    return parse_sip_uri(text)


def _parse_sip(scheme: str, rest: str) -> SipURI:
    # '@' cannot appear unescaped in userinfo, so the first one ends it (RFC 3261 25.1).
    userinfo, at, hostpart = rest.partition("@")
    user = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        if not user or any(c in _USER_FORBIDDEN for c in userinfo):
            raise SipParseError(f"invalid userinfo in SIP URI: {userinfo!r}")
        password = pw if colon else None
    else:
        hostpart = userinfo
    hostpart, question, headers_text = hostpart.partition("?")
    hostport, semi, params_text = hostpart.partition(";")
    host, port = parse_hostport(hostport)
    params = parse_params(";" + params_text) if semi else Params()
    headers: list[tuple[str, str]] = []
    if question:
        for item in headers_text.split("&"):
            name, eq, value = item.partition("=")
            if not name or not eq:
                raise SipParseError(f"invalid URI header: {item!r}")
            headers.append((name, value))
    return SipURI(host, user, password, port, params, tuple(headers), scheme)
