"""Member addresses: E.164 phone numbers, SIP URIs, or bare endpoint usernames.

An address is the member's identity in the API, compared as written (after trimming
whitespace): `+14155550100` and `14155550100` are different members, as they are different
strings in Plivo's API. Validation only rejects what can never be dialed.
"""

from __future__ import annotations

import re
from enum import StrEnum

MAX_ADDRESS_LENGTH = 256

# Explicit ASCII grammars, used with fullmatch: `\d` would take digits of any script and `$` a final
# newline. Non-ASCII in a SIP URI's user part must come percent-encoded (`sip:zo%C3%AB@host`).
_E164 = re.compile(r"\+?[1-9][0-9]{5,15}", re.ASCII)
# The user part: RFC 3261's `user` characters but ';' and '?' (which start an address's parameters), plus
# printable ASCII that the wire form percent-encodes (sip.uri.escape_user); never '@ : < > "' or space.
_SIP_USER = r"[A-Za-z0-9\-_.!~*'()&=+$,/%#\[\]{}|\\^`]+"
_SIP_HOST = r"[A-Za-z0-9.\-\[\]:]+"
_SIP_PARAMS = r"(?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$%=;]*)?"
_SIP_URI = re.compile(rf"sips?:(?:{_SIP_USER}@)?{_SIP_HOST}{_SIP_PARAMS}", re.ASCII)
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9._\-]{0,63}", re.ASCII)


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
    if _E164.fullmatch(address):
        return AddressKind.PHONE_NUMBER
    if _SIP_URI.fullmatch(address):
        return AddressKind.SIP_URI
    if _USERNAME.fullmatch(address):
        return AddressKind.ENDPOINT
    raise InvalidAddress(
        f"{address[:80]!r} is not a phone number (E.164, e.g. +14155550100), a SIP URI "
        "(sip:user@host) or an endpoint username"
    )
