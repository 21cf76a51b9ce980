"""Plivo's V3 request signature, as receivers check it with `plivo.utils.validate_v3_signature`.

The string to sign is derived from the callback URL and the request parameters:

* base = ``scheme://netloc/path`` (query and fragment dropped);
* the URL's query string is decoded and re-encoded sorted by key, repeated keys as ``k=v1&k=v2`` with
  values sorted, without percent-encoding;
* GET: body params are merged into the query (the URL's own values win) and the result is
  ``base?query`` (no ``?`` when it is empty);
* POST: ``base?query.`` followed by the body params concatenated as ``keyvalue`` sorted by key; with no
  body params it is just ``base?query`` (or ``base``), and with no query it is ``base?`` + body.

The signature is base64(HMAC-SHA256(auth_token, string_to_sign + "." + nonce)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import parse_qs, urlparse, urlunparse


def new_nonce() -> str:
    """A random, URL-safe nonce of 20 characters."""
    return secrets.token_urlsafe(15)


def sign_v3(method: str, url: str, params: Mapping[str, str], nonce: str, auth_token: str) -> str:
    """The value of the `X-Plivo-Signature-V3` header for this request."""
    message = f"{string_to_sign(method, url, params)}.{nonce}".encode()
    digest = hmac.new(auth_token.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def string_to_sign(method: str, url: str, params: Mapping[str, str]) -> str:
    """The URL-and-params part of the signed message (before the nonce is appended)."""
    verb = method.upper()
    parts = urlparse(url)
    base = urlunparse((parts.scheme, parts.netloc, parts.path, "", "", ""))
    url_query = parse_qs(parts.query, keep_blank_values=True)

    if verb == "GET":
        merged = {key: [value] for key, value in params.items()}
        merged.update(url_query)
        query = _sorted_query(merged)
        return f"{base}?{query}" if query else base
    if verb != "POST":
        raise ValueError(f"V3 signatures cover GET and POST only, not {method!r}")

    query = _sorted_query(url_query)
    if not params:
        return f"{base}?{query}" if query else base
    body = "".join(f"{key}{params[key]}" for key in sorted(params))
    separator = "." if query else ""
    return f"{base}?{query}{separator}{body}"


def _sorted_query(values: Mapping[str, list[str]]) -> str:
    return "&".join(f"{key}={value}" for key in sorted(values) for value in sorted(values[key]))
