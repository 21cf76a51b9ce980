"""SDES keys for SRTP (RFC 4568): the `a=crypto` attribute and what a call's SRTP setting allows.

Pure: the keys are inputs (the SIP carrier draws them from os.urandom per call), nothing here reads
entropy. Offer/answer uses this in `offer_answer`; the keys it agrees on travel in `MediaParams.srtp`
to the media runtime, which protects and unprotects with them (`media/srtp.py`).

What we accept of RFC 4568's grammar: `a=crypto:<tag> <suite> inline:<base64 key||salt>[|lifetime]`
with one key, no MKI and no session parameters. A crypto line with anything else (an MKI, several
keys, UNENCRYPTED_SRTP and friends, a key of the wrong length for its suite) is one we do not
support: it is skipped like an unknown suite, so another line of the offer may still be used.

Suites: the AEAD AES-GCM ones of RFC 7714 first, then RFC 4568's AES_CM with HMAC-SHA1. A GCM
packet costs libsrtp less than half the CPU of an AES_CM/HMAC-SHA1 one (docs/benchmarks.md 4b), and
peers that answer with the first line they support (baresip, for one) then pick it; an answerer
takes the offerer's order, so a peer that offers AES_CM first gets AES_CM.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

_MAX_TAG: Final = 999_999_999  # RFC 4568 9.1: 1*9DIGIT


class SrtpPolicy(StrEnum):
    """Per trunk, endpoint or default (docs/sip.md). `required`: offer RTP/SAVP only and refuse any
    answer or offer without a usable key (488); `offered`: best effort, RTP/AVP with a=crypto lines,
    encrypted when the peer answers with a key, plain otherwise; `off`: plain RTP, crypto ignored."""

    REQUIRED = "required"
    OFFERED = "offered"
    OFF = "off"


class CryptoSuite(StrEnum):
    """The suites we offer, in our preference order (RFC 7714 14.2, RFC 4568 6.2.1, 6.2.2)."""

    AEAD_AES_128_GCM = "AEAD_AES_128_GCM"
    AEAD_AES_256_GCM = "AEAD_AES_256_GCM"
    AES_CM_128_HMAC_SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
    AES_CM_128_HMAC_SHA1_32 = "AES_CM_128_HMAC_SHA1_32"

    @property
    def key_length(self) -> int:
        """Bytes of master key || master salt in its `inline:` key."""
        return _KEY_LENGTHS[self]


_KEY_LENGTHS: Final = {
    CryptoSuite.AEAD_AES_128_GCM: 16 + 12,  # RFC 7714 12: 96-bit master salt
    CryptoSuite.AEAD_AES_256_GCM: 32 + 12,
    CryptoSuite.AES_CM_128_HMAC_SHA1_80: 16 + 14,  # RFC 4568 6.2: 112-bit master salt
    CryptoSuite.AES_CM_128_HMAC_SHA1_32: 16 + 14,
}


@dataclass(frozen=True, slots=True)
class Crypto:
    """One usable `a=crypto` line."""

    tag: int
    suite: CryptoSuite
    key: bytes  # master key || master salt, suite.key_length bytes
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
    """Our side of one negotiation: the policy and fresh keys, `keys[i]` for `suites[i]` (of its
    suite's key_length). An offer has one line per suite in `suites` order; an answer uses the key
    of the suite it answers with."""

    policy: SrtpPolicy
    keys: tuple[bytes, ...] = ()
    # What we offer or accept; a re-offer on an encrypted call is held to the suite in use, so our
    # sending context (its key, its packet index) never restarts.
    suites: tuple[CryptoSuite, ...] = tuple(CryptoSuite)

    def __post_init__(self) -> None:
        if self.policy is SrtpPolicy.OFF:
            return
        if len(self.keys) != len(self.suites) or not self.suites:
            raise ValueError("an SRTP policy other than off needs one key per suite")
        for suite, key in zip(self.suites, self.keys, strict=True):
            if len(key) != suite.key_length:
                raise ValueError(f"an SRTP key for {suite.value} must be {suite.key_length} bytes")

    def __repr__(self) -> str:
        return f"SrtpConfig(policy={self.policy.value})"

    @property
    def enabled(self) -> bool:
        return self.policy is not SrtpPolicy.OFF

    def offer_lines(self) -> list[Crypto]:
        """Our offer's crypto lines: tag n for the n-th suite, each with its own key."""
        pairs = zip(self.suites, self.keys, strict=True)
        return [Crypto(i + 1, suite, key) for i, (suite, key) in enumerate(pairs)]

    def key_for(self, suite: CryptoSuite) -> bytes:
        """Our key for `suite`, one of `suites`."""
        return self.keys[self.suites.index(suite)]


OFF: Final = SrtpConfig(SrtpPolicy.OFF)


def fresh_config(
    policy: SrtpPolicy,
    random_bytes: Callable[[int], bytes],
    suites: tuple[CryptoSuite, ...] = tuple(CryptoSuite),
) -> SrtpConfig:
    """An SrtpConfig for one negotiation over `suites` (in offer order), with a key per suite from
    `random_bytes(n)` (the caller's CSPRNG: this module reads no entropy)."""
    if policy is SrtpPolicy.OFF:
        return OFF
    return SrtpConfig(policy, tuple(random_bytes(suite.key_length) for suite in suites), suites)


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
    if len(key) != suite.key_length:
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
