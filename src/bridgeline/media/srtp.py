"""One leg's SRTP/SRTCP contexts (RFC 3711), with the SDES keys offer/answer agreed on.

libsrtp (through `pylibsrtp`) does the cryptography: AES-CM and HMAC-SHA1 over bytes we hand it,
with keys that come in from the SIP layer, so a context is computation like the jitter buffer and
lives in the pure leg (`media/leg.py`): no clock, no entropy, no I/O. Each direction has its own
libsrtp session: we protect with our key and unprotect with the peer's (RFC 4568 6.1). Replay
protection is libsrtp's (a 128-packet window per SSRC); a stream is only created for an SSRC once
one of its packets authenticated, so forged packets cannot use up memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import pylibsrtp

_PROFILES: Final = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
SUITES: Final = frozenset(_PROFILES)
# libsrtp works in a 1500-byte buffer: longer packets (we read up to 2048) are refused as malformed.
MAX_PACKET: Final = 1500 - pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN


class Refusal(StrEnum):
    """Why an SRTP or SRTCP packet was dropped."""

    AUTH = "auth"  # authentication failed: forged, corrupted, or keyed otherwise
    REPLAY = "replay"  # a packet index already seen, or too old for the window
    MALFORMED = "malformed"  # too short or too long to be SRTP


class SrtpRefused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """A leg's keys: `suite` (an RFC 4568 name in SUITES), `local_key` protects what we send,
    `remote_key` checks what the peer sends; master key || salt, 30 bytes each."""

    suite: str
    local_key: bytes
    remote_key: bytes

    def __repr__(self) -> str:  # never a key in a log line
        return f"SrtpKeys(suite={self.suite})"


def check_keys(keys: SrtpKeys) -> None:
    """ValueError unless the runtime can use these keys."""
    if keys.suite not in _PROFILES:
        raise ValueError(f"unsupported SRTP suite {keys.suite!r}")
    if len(keys.local_key) != 30 or len(keys.remote_key) != 30:
        raise ValueError("SRTP master key and salt must be 30 bytes")


def _session(suite: str, key: bytes, ssrc_type: int) -> pylibsrtp.Session:
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=_PROFILES[suite]))


class SrtpContext:
    """Protect what a leg sends, unprotect what it receives. Raises SrtpRefused, never anything else
    on bad input."""

    def __init__(self, keys: SrtpKeys) -> None:
        check_keys(keys)
        self.keys = keys
        self._out = _session(keys.suite, keys.local_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self._in = _session(keys.suite, keys.remote_key, pylibsrtp.Policy.SSRC_ANY_INBOUND)

    def rekey_inbound(self, keys: SrtpKeys) -> None:
        """The peer announced a new key in a re-offer (RFC 4568 7.1.4); ours and the suite stay."""
        check_keys(keys)
        if keys.remote_key != self.keys.remote_key:
            self._in = _session(keys.suite, keys.remote_key, pylibsrtp.Policy.SSRC_ANY_INBOUND)
        self.keys = SrtpKeys(self.keys.suite, self.keys.local_key, keys.remote_key)

    def protect(self, packet: bytes) -> bytes:
        try:
            return self._out.protect(packet)
        except (pylibsrtp.Error, ValueError) as exc:
            raise SrtpRefused(Refusal.MALFORMED) from exc

    def unprotect(self, packet: bytes) -> bytes:
        return _unprotect(self._in.unprotect, packet)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        return _unprotect(self._in.unprotect_rtcp, packet)


def _unprotect(func: Callable[[bytes], bytes], packet: bytes) -> bytes:
    if len(packet) > MAX_PACKET:
        raise SrtpRefused(Refusal.MALFORMED)
    try:
        return func(packet)
    except pylibsrtp.Error as exc:
        text = str(exc)
        if text.startswith("replay"):
            raise SrtpRefused(Refusal.REPLAY) from exc
        if text.startswith("authentication"):
            raise SrtpRefused(Refusal.AUTH) from exc
        raise SrtpRefused(Refusal.MALFORMED) from exc
    except ValueError as exc:
        raise SrtpRefused(Refusal.MALFORMED) from exc
