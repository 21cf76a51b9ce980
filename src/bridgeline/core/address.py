"""Member addresses: E.164 phone numbers, SIP URIs, or bare endpoint usernames.

An address is the member's identity in the API, compared as written (after trimming
whitespace): `+14155550100` and `14155550100` are different members, as they are different
strings in Plivo's API. Validation only rejects what can never be dialed.
"""

from __future__ import annotations

import re
from enum import StrEnum

MAX_ADDRESS_LENGTH = 256

_E164 = re.compile(r"^\+?[1-9]\d{5,15}$")
_SIP_URI = re.compile(r"^sips?:(?:[^@\s;?<>\"]+@)?[A-Za-z0-9.\-\[\]:]+(?:;[^\s<>\"]*)?$")
_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9._\-]{0,63}$")


class AddressKind(StrEnum):
    PHONE_NUMBER = "phone_number"
    SIP_URI = "sip_uri"
    ENDPOINT = "endpoint"


class InvalidAddress(ValueError):
    pass


def classify(address: str) -> AddressKind:
    """The kind of a (trimmed) address; raises InvalidAddress for anything undialable."""
    if len(address) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(f"an address can be at most {MAX_ADDRESS_LENGTH} characters long")
    if _E164.match(address):
        return AddressKind.PHONE_NUMBER
    if _SIP_URI.match(address):
        return AddressKind.SIP_URI
    if _USERNAME.match(address):
        return AddressKind.ENDPOINT
    raise InvalidAddress(
        f"'{address}' is not a phone number (E.164, e.g. +14155550100), a SIP URI "
        "(sip:user@host) or an endpoint username"
    )
