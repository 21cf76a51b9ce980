"""SDES keys for SRTP (RFC 4568): the `a=crypto` attribute and what a call's SRTP setting allows.

Pure: the keys are inputs (the SIP carrier draws them from os.urandom per call), nothing here reads
entropy. Offer/answer uses this in `offer_answer`; the keys it agrees on travel in `MediaParams.srtp`
to the media runtime, which protects and unprotects with them (`media/srtp.py`).

What we accept of RFC 4568's grammar: `a=crypto:<tag> <suite> inline:<base64 key||salt>[|lifetime]`
with one key, no MKI and no session parameters. A crypto line with anything else (an MKI, several
keys, UNENCRYPTED_SRTP and friends, a key of the wrong length) is one we do not support: it is
skipped like an unknown suite, so another line of the offer may still be used.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

KEY_LENGTH: Final = 30  # AES_CM_128: 16-byte master key + 14-byte master salt (RFC 4568 6.2)
_MAX_TAG: Final = 999_999_999  # RFC 4568 9.1: 1*9DIGIT


class SrtpPolicy(StrEnum):
    """Per trunk, endpoint or default (docs/sip.md). `required`: offer RTP/SAVP only and refuse any
    answer or offer without a usable key (488); `offered`: best effort, RTP/AVP with a=crypto lines,
    encrypted when the peer answers with a key, plain otherwise; `off`: plain RTP, crypto ignored."""

    REQUIRED = "required"
    OFFERED = "offered"
    OFF = "off"


class CryptoSuite(StrEnum):
    """The suites we offer, in our preference order (RFC 4568 6.2.1, 6.2.2)."""

    AES_CM_128_HMAC_SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
    AES_CM_128_HMAC_SHA1_32 = "AES_CM_128_HMAC_SHA1_32"


@dataclass(frozen=True, slots=True)
class Crypto:
    """One usable `a=crypto` line."""

    tag: int
    suite: CryptoSuite
    key: bytes  # master key || master salt, KEY_LENGTH bytes
    lifetime: str | None = None  # kept for the record; libsrtp's own limit (2^48 packets) applies

    def __str__(self) -> str:
        inline = base64.b64encode(self.key).decode("ascii")
        if self.lifetime is not None:
            inline += f"|{self.lifetime}"
        return f"{self.tag} {self.suite.value} inline:{inline}"


@dataclass(frozen=True, slots=True)
class SrtpParams:
    """What offer/answer agreed: the suite, the key we protect with and the key the peer protects
    with (each side sends with the key it announced, RFC 4568 6.1)."""

    suite: CryptoSuite
    local_key: bytes
    remote_key: bytes

    def __repr__(self) -> str:  # keys never reach a log line through a repr
        return f"SrtpParams(suite={self.suite.value})"


@dataclass(frozen=True, slots=True)
class SrtpConfig:
    """Our side of one negotiation: the policy and fresh keys (KEY_LENGTH bytes each). An offer
    uses one key per suite in `suites` order; an answer uses the first."""

    policy: SrtpPolicy
    keys: tuple[bytes, ...] = ()
    # What we offer or accept; a re-offer on an encrypted call is held to the suite in use, so our
    # sending context (its key, its packet index) never restarts.
    suites: tuple[CryptoSuite, ...] = tuple(CryptoSuite)

    def __post_init__(self) -> None:
        if self.policy is not SrtpPolicy.OFF and not self.keys:
            raise ValueError("an SRTP policy other than off needs keys")
        if any(len(k) != KEY_LENGTH for k in self.keys):
            raise ValueError(f"SRTP keys must be {KEY_LENGTH} bytes")

    def __repr__(self) -> str:
        return f"SrtpConfig(policy={self.policy.value})"

    @property
    def enabled(self) -> bool:
        return self.policy is not SrtpPolicy.OFF

    def offer_lines(self) -> list[Crypto]:
        """Our offer's crypto lines: tag n for the n-th suite, each with a key of its own (or all
        with the one key given)."""
        keys = self.keys * len(self.suites) if len(self.keys) == 1 else self.keys
        pairs = zip(self.suites, keys, strict=False)
        return [Crypto(i + 1, suite, key) for i, (suite, key) in enumerate(pairs)]


OFF: Final = SrtpConfig(SrtpPolicy.OFF)


def parse_crypto(value: str) -> Crypto | None:
    """The attribute value after `a=crypto:`, or None when it is malformed or something we do not
    support (see the module docstring). Never raises: every byte of an offer is hostile."""
    parts = value.split()
    if len(parts) != 3:  # session parameters (a fourth field on) are not supported
        return None
    tag_text, suite_text, key_params = parts
    if not (tag_text.isascii() and tag_text.isdigit()) or len(tag_text) > 9 or int(tag_text) > _MAX_TAG:
        return None
    try:
        suite = CryptoSuite(suite_text)
    except ValueError:
        return None
    method, colon, info = key_params.partition(":")
    if method != "inline" or not colon or ";" in info:  # ";" separates several keys: unsupported
        return None
    key_text, *rest = info.split("|")
    if len(rest) > 1 or (rest and ":" in rest[0]):  # an MKI (or lifetime|MKI): unsupported
        return None
    lifetime = rest[0] if rest else None
    if lifetime is not None and not _is_lifetime(lifetime):
        return None
    try:
        key = base64.b64decode(key_text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(key) != KEY_LENGTH:
        return None
    return Crypto(int(tag_text), suite, key, lifetime)


def _is_lifetime(text: str) -> bool:
    """`2^20` or a decimal number (RFC 4568 9.2)."""
    digits = text[2:] if text.startswith("2^") else text
    return digits.isascii() and digits.isdigit() and 0 < len(digits) <= 20


def crypto_lines(values: list[str]) -> list[Crypto]:
    """The usable crypto lines among attribute values, in their order; a repeated tag is kept once."""
    found: list[Crypto] = []
    for value in values:
        crypto = parse_crypto(value)
        if crypto is not None and all(c.tag != crypto.tag for c in found):
            found.append(crypto)
    return found
