"""The V3 signer must agree with the official SDK's validator, byte for byte."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from plivo.utils import validate_v3_signature

from bridgeline.adapters.webhooks.signing import new_nonce, sign_v3, string_to_sign

TOKEN = "MzA1ZTg0YjYxZWE3NjFhZjhkNTZmMmU3ZDljYjBm"
NONCE = "12345678901234567890"
PARAMS = {"ConferenceUUID": "c-1", "Event": "MemberJoined", "To": "+14155550100", "Empty": ""}


def _accepted(url: str, params: dict[str, str], signature: str, token: str = TOKEN) -> bool:
    return bool(validate_v3_signature("POST", url, NONCE, token, signature, dict(params)))


@pytest.mark.parametrize(
    ("url", "params"),
    [
        pytest.param("https://example.com/callbacks/phlo", PARAMS, id="plain-url"),
        pytest.param("https://example.com/cb?tenant=7&b=2&a=1&a=0", PARAMS, id="url-with-query"),
        pytest.param("https://example.com/cb?q=a%20b&plus=x+y&blank=", PARAMS, id="encoded-query"),
        pytest.param(
            "http://127.0.0.1:8000/cb", {"Name": "Zoë Ångström", "Note": "電話会議 ☎", "b": "ß"}, id="unicode"
        ),
        pytest.param("https://example.com/cb", {}, id="empty-params"),
        pytest.param("https://example.com/cb?x=1", {}, id="empty-params-with-query"),
    ],
)
def test_signature_is_accepted_by_plivo(url: str, params: dict[str, str]) -> None:
    signature = sign_v3("POST", url, params, NONCE, TOKEN)
    assert _accepted(url, params, signature)


def test_changed_param_is_rejected() -> None:
    url = "https://example.com/cb?tenant=7"
    signature = sign_v3("POST", url, PARAMS, NONCE, TOKEN)
    assert not _accepted(url, {**PARAMS, "Event": "MemberLeft"}, signature)
    assert not _accepted(url, {**PARAMS, "Extra": "1"}, signature)


def test_changed_token_is_rejected() -> None:
    url = "https://example.com/cb"
    signature = sign_v3("POST", url, PARAMS, NONCE, TOKEN)
    assert not _accepted(url, PARAMS, signature, token=TOKEN + "x")


def test_changed_url_query_is_rejected() -> None:
    signature = sign_v3("POST", "https://example.com/cb?tenant=7", PARAMS, NONCE, TOKEN)
    assert not _accepted("https://example.com/cb?tenant=8", PARAMS, signature)


def test_get_signature_is_accepted_by_plivo() -> None:
    url = "https://example.com/cb?a=1"
    signature = sign_v3("GET", url, {"b": "2"}, NONCE, TOKEN)
    assert validate_v3_signature("GET", url, NONCE, TOKEN, signature, {"b": "2"})


def test_hand_computed_vector() -> None:
    # Query sorted and re-joined, then "." and the body params as sorted key+value pairs, then the nonce.
    expected_message = b"https://example.com/cb?a=1&b=2.FromalicePhone42.abc"
    expected = base64.b64encode(hmac.new(b"secret", expected_message, hashlib.sha256).digest()).decode()

    url = "https://example.com/cb?b=2&a=1"
    params = {"Phone": "42", "From": "alice"}
    assert string_to_sign("POST", url, params) == "https://example.com/cb?a=1&b=2.FromalicePhone42"
    assert sign_v3("POST", url, params, "abc", "secret") == expected


def test_string_to_sign_shapes() -> None:
    assert string_to_sign("POST", "https://h/p", {}) == "https://h/p"
    assert string_to_sign("POST", "https://h/p", {"k": "v"}) == "https://h/p?kv"
    assert string_to_sign("POST", "https://h/p?z=1#frag", {}) == "https://h/p?z=1"


def test_unsupported_method() -> None:
    with pytest.raises(ValueError, match="GET and POST"):
        sign_v3("PUT", "https://h/p", {}, NONCE, TOKEN)


def test_nonce_is_random_and_url_safe() -> None:
    nonces = {new_nonce() for _ in range(50)}
    assert len(nonces) == 50
    for nonce in nonces:
        assert len(nonce) == 20
        assert set(nonce) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
