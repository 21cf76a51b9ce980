"""Server-side Digest authentication with nonces that expire (RFC 3261 22.1-22.4, RFC 2617 3.2-3.3).

Nonces are stateless: `<issued ms>.<salt>.<HMAC>` under a secret drawn from the injected rng, so
challenging a flood of unauthenticated requests costs no memory and a nonce's age can be read
back without a table. State is kept only after a successful check: the last nonce-count seen per
nonce (RFC 2617 3.2.2: a repeated nc is a replay), dropped when the nonce expires.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from .digest import DigestError, make_challenge, parse_credentials, verify_authorization
from .message import RandomSource, Request


@dataclass(frozen=True, slots=True)
class AuthResult:
    """`username` when the request is authenticated. Otherwise `offered` says whether it carried
    credentials for our realm and `stale` whether they were right but for an expired (or unknown,
    or replayed) nonce: RFC 2617 3.2.1 says to re-challenge with stale=TRUE then, not to refuse."""

    username: str | None
    offered: bool = False
    stale: bool = False


class DigestServer:
    """Issues challenges and checks `Authorization` / `Proxy-Authorization` for one realm."""

    def __init__(
        self, realm: str, accounts: Mapping[str, str], rng: RandomSource, lifetime: float = 300.0
    ) -> None:
        self.realm = realm
        self._accounts = accounts
        self._rng = rng
        self._secret = rng.getrandbits(256).to_bytes(32, "big")
        self.lifetime = lifetime
        self._seen: dict[str, tuple[int, float]] = {}  # nonce -> (last nc, when to forget it)
        # (when to forget, nonce), one entry per nonce in _seen: the endpoint asks for the next
        # expiry on every datagram, and a busy server remembers lifetime x calls/s nonces.
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    # --- nonces -------------------------------------------------------------------------------

    def new_nonce(self, now: float) -> str:
        stamp = f"{round(now * 1000):x}.{self._rng.getrandbits(48):012x}"
        return f"{stamp}.{self._mac(stamp)}"

    def _mac(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def nonce_age(self, nonce: str, now: float) -> float | None:
        """Seconds since we issued nonce, or None if we did not (forged, or from before a restart)."""
        stamp, _, mac = nonce.rpartition(".")
        if not hmac.compare_digest(self._mac(stamp).encode(), mac.encode()):
            return None
        try:
            issued = int(stamp.partition(".")[0], 16) / 1000
        except ValueError:
            return None
        return now - issued

    def challenge(self, now: float, *, stale: bool = False) -> str:
        """A `WWW-Authenticate` / `Proxy-Authenticate` value with a fresh nonce (qop=auth)."""
        return make_challenge(self.realm, self.new_nonce(now), stale=stale)

    # --- verification -------------------------------------------------------------------------

    def authenticate(self, request: Request, header_name: str, now: float) -> AuthResult:
        """Check every `header_name` line for our realm (a request may carry credentials for
        several proxies, RFC 3261 22.3). The digest-uri is not compared with the Request-URI:
        phones disagree on its normal form, and the method and nonce already bind the answer."""
        offered = stale = False
        for value in request.headers.get_all(header_name):
            try:
                creds = parse_credentials(value)
            except DigestError:
                continue
            if creds.realm != self.realm:
                continue
            offered = True
            verdict: list[bool] = []  # what nonce_ok decided; only called when the digest matched

            def nonce_ok(nonce: str, nc: str | None = creds.nc, sink: list[bool] = verdict) -> bool:
                ok = self._accept_nonce(nonce, nc, now)
                sink.append(ok)
                return ok

            username = verify_authorization(
                value, request.method, self._accounts.get, self.realm, nonce_ok, body=request.body
            )
            if username is not None:
                return AuthResult(username, offered=True)
            stale = stale or verdict == [False]
        return AuthResult(None, offered=offered, stale=stale)

    def _accept_nonce(self, nonce: str, nc_text: str | None, now: float) -> bool:
        age = self.nonce_age(nonce, now)
        if age is None or age > self.lifetime or age < -1.0:
            return False
        if nc_text is None:
            return True  # RFC 2069 form: no nonce-count to check
        try:
            nc = int(nc_text, 16)
        except ValueError:
            return False
        last, until = self._seen.get(nonce, (0, None))
        if nc <= last:
            return False  # replayed (or reordered) credentials
        if until is None:  # first use of this nonce: forget it once it has expired
            until = now - age + self.lifetime
            heapq.heappush(self._expiries, (until, nonce))
        self._seen[nonce] = (nc, until)
        return True

    # --- housekeeping -------------------------------------------------------------------------

    def next_expiry(self) -> float | None:
        return self._expiries[0][0] if self._expiries else None

    def expire(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, nonce = heapq.heappop(self._expiries)
            del self._seen[nonce]
