"""HTTP Digest authentication as SIP uses it (RFC 3261 section 22.4; RFC 2617; RFC 7616/8760 for SHA-256).

Client side: `parse_challenge` + `build_authorization`, or `DigestAuth`, which turns a 401/407 into
the request to resend. Server side: `make_challenge` + `verify_authorization`. Supported: MD5,
MD5-sess, SHA-256, SHA-256-sess; qop auth, auth-int, or none (RFC 2069 compatibility).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Final

from .message import RandomSource, Request, Response, new_branch
from .syntax import SipParseError, is_token, quote, split_top_level, unquote

_HEX_DIGESTS: Final[dict[str, Callable[[bytes], str]]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
MAX_ROUNDS: Final = 3  # a 407 from a proxy, then a 401 from the registrar, then give up


class DigestError(SipParseError):
    """A malformed challenge or credentials header, or one using an algorithm/qop we lack."""


def _hasher(algorithm: str) -> Callable[[bytes], str]:
    base = algorithm.upper().removesuffix("-SESS")
    if base not in _HEX_DIGESTS:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}")
    return _HEX_DIGESTS[base]


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `Digest realm="x", nonce="y", qop=auth` into the scheme and unquoted parameters
    (names lower-cased). Quoted values may contain commas (RFC 2617 section 1.2)."""
    parts = value.split(None, 1)
    scheme, rest = [*parts, "", ""][:2]
    if not is_token(scheme):
        raise DigestError(f"invalid auth scheme: {value[:40]!r}")
    params: dict[str, str] = {}
    try:
        items = split_top_level(rest, ",")
    except SipParseError as exc:  # an unterminated quoted string
        raise DigestError(str(exc)) from exc
    for item in items:
        if not item:
            continue
        name, eq, raw = item.partition("=")
        name, raw = name.strip().lower(), raw.strip()
        if not eq or not is_token(name) or name in params:
            raise DigestError(f"invalid auth parameter: {item[:40]!r}")
        if not raw.startswith('"') and not is_token(raw):
            raise DigestError(f"invalid auth parameter value: {item[:40]!r}")
        try:
            params[name] = unquote(raw)
        except SipParseError as exc:
            raise DigestError(str(exc)) from exc
    return scheme, params


@dataclass(frozen=True, slots=True)
class Challenge:
    """A `WWW-Authenticate`/`Proxy-Authenticate` Digest challenge."""

    realm: str
    nonce: str
    opaque: str | None = None
    stale: bool = False
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    domain: str | None = None


def parse_challenge(value: str) -> Challenge:
    scheme, p = parse_auth_params(value)
    if scheme.lower() != "digest":
        raise DigestError(f"not a Digest challenge: {scheme!r}")
    if "realm" not in p or "nonce" not in p:
        raise DigestError("Digest challenge without realm or nonce")
    qop = tuple(q.strip().lower() for q in p.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=p["realm"],
        nonce=p["nonce"],
        opaque=p.get("opaque"),
        stale=p.get("stale", "").lower() == "true",
        algorithm=p.get("algorithm", "MD5"),
        qop=qop,
        domain=p.get("domain"),
    )


@dataclass(frozen=True, slots=True)
class Credentials:
    """An `Authorization`/`Proxy-Authorization` Digest header."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    cnonce: str | None = None
    nc: str | None = None
    opaque: str | None = None


def parse_credentials(value: str) -> Credentials:
    scheme, p = parse_auth_params(value)
    if scheme.lower() != "digest":
        raise DigestError(f"not Digest credentials: {scheme!r}")
    missing = {"username", "realm", "nonce", "uri", "response"} - p.keys()
    if missing:
        raise DigestError(f"Digest credentials without {', '.join(sorted(missing))}")
    qop = p.get("qop")
    if qop is not None and ("cnonce" not in p or "nc" not in p):
        raise DigestError("qop requires cnonce and nc")
    return Credentials(
        username=p["username"],
        realm=p["realm"],
        nonce=p["nonce"],
        uri=p["uri"],
        response=p["response"],
        algorithm=p.get("algorithm", "MD5"),
        qop=qop,
        cnonce=p.get("cnonce"),
        nc=p.get("nc"),
        opaque=p.get("opaque"),
    )


def compute_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    cnonce: str | None = None,
    nc: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest of RFC 2617 section 3.2.2 (and RFC 7616 3.4.1 for other hashes)."""
    hasher = _hasher(algorithm)

    def h(data: str | bytes) -> str:
        return hasher(data.encode("utf-8") if isinstance(data, str) else data)

    ha1 = h(f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        if cnonce is None:
            raise DigestError("-sess algorithms need a cnonce")
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + h(body)
    elif qop not in (None, "auth"):
        raise DigestError(f"unsupported qop {qop!r}")
    if qop is None:
        return h(f"{ha1}:{nonce}:{h(a2)}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{h(a2)}")


def build_authorization(
    challenge: Challenge,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """Header value answering challenge. Prefers qop=auth, then auth-int; with no qop offered,
    answers in the RFC 2069 form (no cnonce/nc)."""
    if not challenge.qop:
        qop = None
    elif "auth" in challenge.qop:
        qop = "auth"
    elif "auth-int" in challenge.qop:
        qop = "auth-int"
    else:
        raise DigestError(f"no supported qop in {challenge.qop}")
    nc_text = f"{nc:08x}"
    response = compute_response(
        algorithm=challenge.algorithm,
        username=username,
        realm=challenge.realm,
        password=password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        cnonce=cnonce,
        nc=nc_text,
        body=body,
    )
    parts = [
        f"username={quote(username)}",
        f"realm={quote(challenge.realm)}",
        f"nonce={quote(challenge.nonce)}",
        f"uri={quote(uri)}",
        f"response={quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if qop is not None or challenge.algorithm.upper().endswith("-SESS"):
        parts.append(f"cnonce={quote(cnonce)}")
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


def make_challenge(
    realm: str,
    nonce: str,
    opaque: str | None = None,
    stale: bool = False,
    *,
    algorithm: str = "MD5",
    qop: Sequence[str] = ("auth",),
) -> str:
    """A `WWW-Authenticate`/`Proxy-Authenticate` value. Nonce generation and expiry are the
    caller's: this module keeps no state and reads no clock."""
    _hasher(algorithm)
    parts = [f"realm={quote(realm)}", f"nonce={quote(nonce)}", f"algorithm={algorithm}"]
    if qop:
        parts.append(f"qop={quote(','.join(qop))}")
    if opaque is not None:
        parts.append(f"opaque={quote(opaque)}")
    if stale:
        parts.append("stale=TRUE")
    return "Digest " + ", ".join(parts)


def verify_authorization(
    header_value: str,
    method: str,
    password_lookup: Callable[[str], str | None],
    realm: str,
    nonce_ok: Callable[[str], bool],
    *,
    uri: str | None = None,
    body: bytes = b"",
) -> str | None:
    """The authenticated username, or None for anything else: malformed header, other realm,
    unknown user, wrong digest, a digest-uri differing from `uri` (when given), or a nonce that
    `nonce_ok` rejects. nonce_ok runs last, so forged requests cannot consume nonces."""
    try:
        creds = parse_credentials(header_value)
        if creds.realm != realm or (uri is not None and creds.uri != uri):
            return None
        password = password_lookup(creds.username)
        if password is None:
            return None
        expected = compute_response(
            algorithm=creds.algorithm,
            username=creds.username,
            realm=creds.realm,
            password=password,
            method=method,
            uri=creds.uri,
            nonce=creds.nonce,
            qop=creds.qop,
            cnonce=creds.cnonce,
            nc=creds.nc,
            body=body,
        )
    except DigestError:
        return None
    if not hmac.compare_digest(expected.encode(), creds.response.lower().encode()):
        return None
    return creds.username if nonce_ok(creds.nonce) else None


class DigestAuth:
    """Client credentials for one account, answering 401/407 challenges (RFC 3261 22.2).

    `auth_flow` is a generator in the shape of httpx's: it yields requests to send and is sent the
    final response to each."""

    def __init__(self, username: str, password: str, rng: RandomSource) -> None:
        self.username = username
        self.password = password
        self._rng = rng
        self._nonce_counts: dict[str, int] = {}

    def authorize(self, request: Request, response: Response) -> Request | None:
        """The request to resend for a 401/407, or None when there is nothing to answer or the
        same credentials were already refused (an unchanged, non-stale nonce)."""
        if response.status == 401:
            challenge_name, answer_name = "WWW-Authenticate", "Authorization"
        elif response.status == 407:
            challenge_name, answer_name = "Proxy-Authenticate", "Proxy-Authorization"
        else:
            return None
        challenges = []
        for value in response.headers.get_all(challenge_name):
            try:
                challenges.append(parse_challenge(value))
            except DigestError:
                continue  # e.g. a Basic or unknown-scheme challenge beside a Digest one
        if not challenges:
            return None
        previous = _previous_nonces(request.headers.get_all(answer_name))
        retry = Request(request.method, request.uri, request.headers.copy(), request.body)
        for challenge in challenges:
            if previous.get(challenge.realm) == challenge.nonce and not challenge.stale:
                return None  # the server refused these credentials
            _drop_credentials_for(retry, answer_name, challenge.realm)
            count = self._nonce_counts.get(challenge.nonce, 0) + 1
            self._nonce_counts[challenge.nonce] = count
            cnonce = f"{self._rng.getrandbits(64):016x}"
            try:
                value = build_authorization(
                    challenge,
                    request.method,
                    str(request.uri),
                    self.username,
                    self.password,
                    cnonce=cnonce,
                    nc=count,
                    body=request.body,
                )
            except DigestError:
                return None
            retry.headers.add(answer_name, value)
        # RFC 3261 22.2: a new request, so a new CSeq and (8.1.1.7) a new branch.
        cseq = request.cseq
        retry.headers.set("CSeq", f"{cseq.seq + 1} {cseq.method}")
        vias = request.headers.get_list("Via")
        top = request.top_via.with_param("branch", new_branch(self._rng))
        retry.headers.set("Via", ", ".join([str(top), *vias[1:]]))
        return retry

    def auth_flow(self, request: Request) -> Generator[Request, Response, None]:
        """Yield the request; on each 401/407 sent back, yield the authorised retry."""
        response = yield request
        for _ in range(MAX_ROUNDS):
            retry = self.authorize(request, response)
            if retry is None:
                return
            request = retry
            response = yield request


def _previous_nonces(values: list[str]) -> dict[str, str]:
    nonces: dict[str, str] = {}
    for value in values:
        try:
            creds = parse_credentials(value)
        except DigestError:
            continue
        nonces[creds.realm] = creds.nonce
    return nonces


def _drop_credentials_for(request: Request, name: str, realm: str) -> None:
    kept = []
    for value in request.headers.get_all(name):
        try:
            if parse_credentials(value).realm == realm:
                continue
        except DigestError:
            pass
        kept.append(value)
    request.headers.remove(name)
    for value in kept:
        request.headers.add(name, value)
