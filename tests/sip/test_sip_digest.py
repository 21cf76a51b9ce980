"""Digest authentication: the RFC 2617 vector, client/server agreement and the retry flow."""

from __future__ import annotations

import contextlib
import hashlib
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridgeline.sip.digest import (
    Challenge,
    DigestAuth,
    DigestError,
    build_authorization,
    compute_response,
    make_challenge,
    parse_auth_params,
    parse_challenge,
    parse_credentials,
    verify_authorization,
)
from bridgeline.sip.message import Request, Response, make_response, parse_message

DATA = Path(__file__).parent / "data"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes().replace(b"\n", b"\r\n")


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


# RFC 2617 section 3.5 example inputs.
RFC_USER, RFC_PASSWORD, RFC_REALM = "Mufasa", "Circle Of Life", "testrealm@host.com"
RFC_NONCE, RFC_CNONCE, RFC_URI = "dcd98b7102dd2f0e8b11d0f600bfb0c093", "0a4f113b", "/dir/index.html"
RFC_OPAQUE = "5ccc069c403ebaf9f0171e9517f40e41"


def test_rfc2617_example_vector() -> None:
    ha1 = md5(f"{RFC_USER}:{RFC_REALM}:{RFC_PASSWORD}")
    ha2 = md5(f"GET:{RFC_URI}")
    expected = md5(f"{ha1}:{RFC_NONCE}:00000001:{RFC_CNONCE}:auth:{ha2}")
    assert expected == "6629fae49393a05397450978507c4ef1"  # the value printed in the RFC
    got = compute_response(
        algorithm="MD5",
        username=RFC_USER,
        realm=RFC_REALM,
        password=RFC_PASSWORD,
        method="GET",
        uri=RFC_URI,
        nonce=RFC_NONCE,
        qop="auth",
        cnonce=RFC_CNONCE,
        nc="00000001",
    )
    assert got == expected
    challenge = parse_challenge(
        f'Digest realm="{RFC_REALM}", qop="auth,auth-int", nonce="{RFC_NONCE}", opaque="{RFC_OPAQUE}"'
    )
    assert challenge.qop == ("auth", "auth-int")
    header = build_authorization(challenge, "GET", RFC_URI, RFC_USER, RFC_PASSWORD, RFC_CNONCE, 1)
    creds = parse_credentials(header)
    assert (creds.response, creds.nc, creds.qop, creds.opaque) == (expected, "00000001", "auth", RFC_OPAQUE)


def test_rfc2069_form_without_qop() -> None:
    challenge = Challenge(realm="r", nonce="n")
    creds = parse_credentials(build_authorization(challenge, "INVITE", "sip:b@x", "u", "p", "c"))
    assert creds.qop is None and creds.cnonce is None and creds.nc is None
    assert creds.response == md5(f"{md5('u:r:p')}:n:{md5('INVITE:sip:b@x')}")


def test_fixture_register_verifies() -> None:
    challenge = parse_challenge(
        parse_message(load("unauthorized_401.sip")).headers.get("WWW-Authenticate") or ""
    )
    assert challenge == Challenge(
        realm="sip.example.com", nonce="5f2a9c71e3b04d8a", opaque="1e6a0b7c", algorithm="MD5", qop=("auth",)
    )
    register = parse_message(load("register_auth.sip"))
    header = register.headers.get("Authorization") or ""
    passwords = {"1001": "secret1001"}
    nonces = {"5f2a9c71e3b04d8a"}

    def verify(password_map: dict[str, str], **kw: str) -> str | None:
        return verify_authorization(
            kw.get("header", header),
            kw.get("method", "REGISTER"),
            password_map.get,
            kw.get("realm", "sip.example.com"),
            nonces.__contains__ if "nonce" not in kw else (lambda n: False),
            uri=kw.get("uri", "sip:sip.example.com"),
        )

    assert verify(passwords) == "1001"
    assert verify({"1001": "wrong"}) is None
    assert verify({}) is None
    assert verify(passwords, realm="other") is None
    assert verify(passwords, method="INVITE") is None
    assert verify(passwords, uri="sip:elsewhere") is None
    assert verify(passwords, nonce="expired") is None
    assert verify(passwords, header="Digest garbage") is None
    assert verify(passwords, header=header.replace("MD5", "SHA-999")) is None
    assert verify(passwords, header="Basic dXNlcjpwYXNz") is None


@pytest.mark.parametrize("algorithm", ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess"])
@pytest.mark.parametrize("qop", [("auth",), ("auth-int",), ()])
def test_client_and_server_agree(algorithm: str, qop: tuple[str, ...]) -> None:
    value = make_challenge("bridge", "abc123", opaque="op", algorithm=algorithm, qop=qop)
    challenge = parse_challenge(value)
    assert (challenge.algorithm, challenge.qop, challenge.opaque, challenge.stale) == (
        algorithm,
        qop,
        "op",
        False,
    )
    body = b"v=0\r\n"
    header = build_authorization(challenge, "INVITE", "sip:conf@bridge", 'al"ice', "pw", "cn", 3, body)
    args = ("INVITE", {'al"ice': "pw"}.get, "bridge", lambda nonce: nonce == "abc123")
    assert verify_authorization(header, *args, uri="sip:conf@bridge", body=body) == 'al"ice'
    if qop == ("auth-int",):
        assert verify_authorization(header, *args, body=b"tampered") is None


def test_challenge_details() -> None:
    assert parse_challenge(make_challenge("r", "n", stale=True)).stale
    assert 'qop="auth"' in make_challenge("r", "n")
    with pytest.raises(DigestError):
        make_challenge("r", "n", algorithm="SHA-999")
    with pytest.raises(DigestError):
        build_authorization(Challenge("r", "n", qop=("auth-conf",)), "GET", "/", "u", "p", "c")
    scheme, params = parse_auth_params('Digest\trealm="a, b", NONCE=xyz, qop="auth"')
    assert (scheme, params) == ("Digest", {"realm": "a, b", "nonce": "xyz", "qop": "auth"})


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        'Digest realm="r"',
        'Basic realm="r"',
        'Digest realm="r", nonce="n", realm="again"',
        'Digest realm="unterminated, nonce="n"',
        "Digest realm=a b, nonce=n",
        'Digest realm="r" nonce="n"',
        "Dig<est realm=r, nonce=n",
    ],
)
def test_bad_challenges(value: str) -> None:
    with pytest.raises(DigestError):
        parse_challenge(value)


AUTH_TEXT = st.text(max_size=200) | st.text(
    alphabet='Digest realm nonce uri response qop auth=",\\ ', max_size=120
)


@given(AUTH_TEXT)
def test_fuzzed_headers_raise_only_digest_errors(value: str) -> None:
    for parse in (parse_challenge, parse_credentials):
        with contextlib.suppress(DigestError):
            parse(value)
    assert verify_authorization(value, "REGISTER", lambda u: "pw", "r", lambda n: True) is None


# --- retry flow ---------------------------------------------------------------------------------


class Registrar:
    """A server-side stand-in: challenges until the request carries valid credentials."""

    def __init__(self, status: int = 401, realm: str = "sip.example.com") -> None:
        self.status, self.realm, self.nonce = status, realm, "n-1"
        self.header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        self.answer = "Authorization" if status == 401 else "Proxy-Authorization"

    def handle(self, request: Request, *, stale: bool = False) -> Response:
        for value in request.headers.get_all(self.answer):
            user = verify_authorization(
                value, request.method, {"1001": "secret1001"}.get, self.realm, lambda n: n == self.nonce
            )
            if user is not None:
                return make_response(request, 200, to_tag="t")
        challenge = make_challenge(self.realm, self.nonce, stale=stale)
        return make_response(request, self.status, to_tag="t", headers=[(self.header, challenge)])


def test_auth_flow_resends_with_credentials() -> None:
    first = parse_message(load("register_auth.sip"))
    assert isinstance(first, Request)
    first.headers.remove("Authorization")
    auth = DigestAuth("1001", "secret1001", random.Random(1))
    registrar = Registrar()
    flow = auth.auth_flow(first)
    request = next(flow)
    assert request is first
    request = flow.send(registrar.handle(request))
    assert request.cseq.seq == first.cseq.seq + 1 and request.cseq.method == "REGISTER"
    assert request.top_via.branch != first.top_via.branch
    assert request.top_via.host == first.top_via.host and request.top_via.wants_rport
    assert request.call_id == first.call_id and request.from_addr.tag == first.from_addr.tag
    response = registrar.handle(parse_message(bytes(request)))  # type: ignore[arg-type]
    assert response.status == 200
    with pytest.raises(StopIteration):
        flow.send(response)


def test_auth_flow_gives_up_on_wrong_password_but_retries_stale_nonce() -> None:
    first = parse_message(load("register_auth.sip"))
    assert isinstance(first, Request)
    first.headers.remove("Authorization")
    registrar = Registrar()
    flow = DigestAuth("1001", "wrong", random.Random(2)).auth_flow(first)
    retry = flow.send(registrar.handle(next(flow)))
    with pytest.raises(StopIteration):  # same nonce challenged again: the password is wrong
        flow.send(registrar.handle(retry))

    auth = DigestAuth("1001", "secret1001", random.Random(3))
    flow = auth.auth_flow(first)
    retry = flow.send(registrar.handle(next(flow)))
    registrar.nonce = "n-2"  # the server expired the nonce: stale=TRUE asks for a silent retry
    again = flow.send(registrar.handle(retry, stale=True))
    assert parse_credentials(again.headers.get("Authorization") or "").nonce == "n-2"
    assert again.headers.get_all("Authorization") and len(again.headers.get_all("Authorization")) == 1
    assert again.cseq.seq == first.cseq.seq + 2
    assert registrar.handle(again).status == 200


def test_proxy_then_registrar_challenge_accumulates_both_headers() -> None:
    first = parse_message(load("register_auth.sip"))
    assert isinstance(first, Request)
    first.headers.remove("Authorization")
    proxy, registrar = Registrar(407, realm="proxy.example.com"), Registrar(401)
    flow = DigestAuth("1001", "secret1001", random.Random(4)).auth_flow(first)
    request = flow.send(proxy.handle(next(flow)))
    assert request.headers.get("Proxy-Authorization") is not None
    assert proxy.handle(request).status == 200  # the proxy lets it through; the registrar challenges
    request = flow.send(registrar.handle(request))
    assert proxy.handle(request).status == 200 and registrar.handle(request).status == 200
    nc = parse_credentials(request.headers.get("Proxy-Authorization") or "").nc
    assert nc == "00000001"


def test_authorize_ignores_other_responses_and_schemes() -> None:
    request = parse_message(load("register_auth.sip"))
    assert isinstance(request, Request)
    auth = DigestAuth("1001", "secret1001", random.Random(5))
    assert auth.authorize(request, make_response(request, 403)) is None
    basic_only = make_response(request, 401, headers=[("WWW-Authenticate", 'Basic realm="x"')])
    assert auth.authorize(request, basic_only) is None
