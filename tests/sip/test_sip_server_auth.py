"""Server-side digest: stateless expiring nonces, replay detection, stale re-challenges."""

from __future__ import annotations

import random

from bridgeline.sip.digest import DigestAuth, parse_challenge
from bridgeline.sip.headers import parse_name_address, parse_via
from bridgeline.sip.message import Request, Response, make_request
from bridgeline.sip.server_auth import AuthResult, DigestServer
from bridgeline.sip.uri import parse_uri

ACCOUNTS = {"1001": "secret1001"}


def invite() -> Request:
    return make_request(
        "INVITE",
        parse_uri("sip:+1415@bridge.example"),
        via=parse_via("SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKa"),
        from_addr=parse_name_address("<sip:1001@bridge.example>;tag=f"),
        to_addr=parse_name_address("<sip:+1415@bridge.example>"),
        call_id="c",
        cseq=1,
        body=b"v=0\r\n",
    )


def answered(server: DigestServer, now: float, client: DigestAuth | None = None, realm: str = "") -> Request:
    challenge = Response(407)
    challenge.headers.add(
        "Proxy-Authenticate", server.challenge(now) if not realm else f'Digest realm="{realm}", nonce="n"'
    )
    retry = (client or DigestAuth("1001", "secret1001", random.Random(2))).authorize(invite(), challenge)
    assert retry is not None
    return retry


def test_fresh_credentials_authenticate_once() -> None:
    server = DigestServer("bridge.example", ACCOUNTS, random.Random(1), lifetime=300.0)
    request = answered(server, 0.0)
    assert server.authenticate(request, "Proxy-Authorization", 10.0) == AuthResult("1001", offered=True)
    assert len(server) == 1 and server.next_expiry() == 300.0
    # The same nonce count again is a replay: refused as stale, so an honest client re-tries.
    assert server.authenticate(request, "Proxy-Authorization", 11.0) == AuthResult(
        None, offered=True, stale=True
    )
    server.expire(300.0)
    assert len(server) == 0


def test_nonces_are_forgotten_one_by_one_as_they_expire() -> None:
    server = DigestServer("bridge.example", ACCOUNTS, random.Random(1), lifetime=300.0)
    for issued in (20.0, 0.0, 10.0):  # challenges issued out of order, each answered at once
        assert server.authenticate(answered(server, issued), "Proxy-Authorization", issued).username
    assert len(server) == 3 and server.next_expiry() == 300.0
    server.expire(305.0)
    assert len(server) == 2 and server.next_expiry() == 310.0
    server.expire(320.0)
    assert len(server) == 0 and server.next_expiry() is None


def test_expired_foreign_and_wrong_credentials() -> None:
    server = DigestServer("bridge.example", ACCOUNTS, random.Random(1), lifetime=300.0)
    old = answered(server, 0.0)
    assert server.authenticate(old, "Proxy-Authorization", 301.0) == AuthResult(
        None, offered=True, stale=True
    )
    restarted = DigestServer("bridge.example", ACCOUNTS, random.Random(99))  # another secret
    assert restarted.authenticate(answered(server, 0.0), "Proxy-Authorization", 1.0).stale
    wrong = answered(server, 0.0, DigestAuth("1001", "guess", random.Random(3)))
    assert server.authenticate(wrong, "Proxy-Authorization", 1.0) == AuthResult(
        None, offered=True, stale=False
    )
    other_realm = answered(server, 0.0, realm="elsewhere")
    assert server.authenticate(other_realm, "Proxy-Authorization", 1.0) == AuthResult(None)
    assert server.authenticate(invite(), "Proxy-Authorization", 1.0) == AuthResult(None)
    assert len(server) == 0  # nothing remembered for failures


def test_challenge_and_nonce_shape() -> None:
    server = DigestServer("bridge.example", ACCOUNTS, random.Random(1))
    challenge = parse_challenge(server.challenge(12.5, stale=True))
    assert challenge.realm == "bridge.example" and challenge.qop == ("auth",) and challenge.stale
    assert server.nonce_age(challenge.nonce, 20.0) == 7.5
    assert server.nonce_age(challenge.nonce[:-1] + "0", 20.0) is None
    assert server.nonce_age("garbage", 20.0) is None
    assert server.new_nonce(1.0) != server.new_nonce(1.0)
