"""What the sip carrier keeps of each leg, and how SIP reads as conference members: a leg's state
(SipLeg), an inbound call handed to the app (InboundCall), SIP failures as leave reasons, caller ids
and callers as member addresses, and fresh SDES keys for one negotiation."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridgeline.adapters.carriers.sip.media_engine import SrtpKeys
from bridgeline.app.inbound import InboundRefusal
from bridgeline.core.model import LeaveReason
from bridgeline.sip import events as sip
from bridgeline.sip.refer_policy import LegKind
from bridgeline.sip.sdes import CryptoSuite, SrtpConfig, SrtpParams, SrtpPolicy, fresh_config
from bridgeline.sip.uri import SipURI, escape_user

E164 = re.compile(r"\+?[1-9][0-9]{5,15}", re.ASCII)

FAIL_REASONS = {
    sip.FailReason.BUSY: LeaveReason.BUSY,
    sip.FailReason.REJECTED: LeaveReason.REJECTED,
    sip.FailReason.NO_ANSWER: LeaveReason.NO_ANSWER,
    sip.FailReason.UNREACHABLE: LeaveReason.FAILED,
    sip.FailReason.FAILED: LeaveReason.FAILED,
}


@dataclass(frozen=True, slots=True)
class InboundCall:
    leg_id: str
    caller: str  # the member address the caller gets: a number, an endpoint username, or a SIP URI
    dialed: str


InboundHandler = Callable[[InboundCall], Awaitable[str | InboundRefusal]]
"""Decides an inbound call: the conference id it joined, or why it is refused."""

# RFC 3261 21.4.5: nothing here answers for that number; 21.4.24: the call reached us, but a party
# it needs is in another call (never 5xx: a proxy in front would try the same call on another node).
REFUSAL_STATUS = {InboundRefusal.UNROUTABLE: 404, InboundRefusal.BUSY: 486}


@dataclass(slots=True)
class SipLeg:
    conference_id: str | None
    inbound: bool = False
    answered: bool = False
    dropped: bool = False  # the conference hung it up: do not report its end back
    awaiting_answer: bool = False  # late offer: our offer is in the 200, the answer due in the ACK
    kind: LegKind = LegKind.URI  # who is on it: may it transfer by REFER (refer.transferors)
    resolving: bool = False  # outbound: its servers are being looked up; no INVITE yet


def srtp_config(policy: SrtpPolicy, suites: tuple[CryptoSuite, ...]) -> SrtpConfig:
    """Fresh SDES keys for one negotiation, one per suite we offer, from the OS's CSPRNG."""
    return fresh_config(policy, os.urandom, suites)


def srtp_keys(params: SrtpParams | None) -> SrtpKeys | None:
    if params is None:
        return None
    return SrtpKeys(params.suite.value, params.local_key, params.remote_key)


def caller_user(caller_id: str | None) -> str | None:
    """The user part for From: a number or a name; a SIP URI contributes its user."""
    if caller_id is None:
        return None
    if caller_id.startswith(("sip:", "sips:")):
        user = caller_id.split(":", 1)[1].split("@", 1)[0]
        return user or None
    return caller_id


def address_of(uri: object) -> str:
    """A caller's member address: its number when the user part is E.164, else the SIP URI, its user
    part percent-encoded (non-ASCII, ';', '?') so that it fits the address grammar."""
    if isinstance(uri, SipURI):
        user = escape_user(uri.user or "", unreserved="&=+$,/")
        if E164.fullmatch(user):
            return user
        return f"sip:{user}@{uri.host}" if user else f"sip:{uri.host}"
    return str(uri)
