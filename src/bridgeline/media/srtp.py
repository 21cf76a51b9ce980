"""One leg's SRTP/SRTCP contexts (RFC 3711), with the SDES keys offer/answer agreed on.

libsrtp (through `pylibsrtp`) does the cryptography: AES-CM and HMAC-SHA1 over bytes we hand it,
with keys that come in from the SIP layer, so a context is computation like the jitter buffer and
lives in the pure leg (`media/leg.py`): no clock, no entropy, no I/O. Each direction has its own
libsrtp session: we protect with our key and unprotect with the peer's (RFC 4568 6.1). Replay
protection is libsrtp's (a 128-packet window per SSRC); a stream is only created for an SSRC once
one of its packets authenticated, so forged packets cannot use up memory.

Per packet we call libsrtp through pylibsrtp's own cffi `lib` with a buffer and length cell
allocated once per context: `Session.protect` allocates a length cell and checks types on every
call, which cost 4.3 µs a packet against 1.2 µs this way (bench/bench_rtp_legs.py's SRTP mode is
the budget: SRTP legs per core within 80% of plain ones). Sessions are still made by pylibsrtp.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import pylibsrtp
from pylibsrtp import ffi, lib  # type: ignore[attr-defined]  # its cffi module: public, not in __all__

_PROFILES: Final = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
SUITES: Final = frozenset(_PROFILES)
_BUFFER: Final = 1500
# Room for the longest trailer libsrtp may add: longer packets (we read up to 2048) are malformed.
MAX_PACKET: Final = _BUFFER - pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN
# libsrtp's status codes, by the messages pylibsrtp lists in their order.
_AUTH_FAIL: Final = pylibsrtp.ERRORS.index("authentication failure")
_REPLAYS: Final = frozenset(i for i, text in enumerate(pylibsrtp.ERRORS) if text.startswith("replay"))


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
    """Protect what a leg sends, unprotect what it receives: `protect`, `unprotect` and
    `unprotect_rtcp` take a packet and return the result, or raise SrtpRefused (never anything else
    on bad input). Not thread-safe: one buffer serves both directions (the leg's one thread)."""

    def __init__(self, keys: SrtpKeys) -> None:
        check_keys(keys)
        self.keys = keys
        # pylibsrtp's Session owns each libsrtp context (and frees it); we call into it directly.
        self._out = _session(keys.suite, keys.local_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self._buf = ffi.new("char[]", _BUFFER)
        self.protect = self._processor(lib.srtp_protect, self._out)
        self._set_inbound(keys.remote_key)

    def _set_inbound(self, key: bytes) -> None:
        self._in = _session(self.keys.suite, key, pylibsrtp.Policy.SSRC_ANY_INBOUND)
        self.unprotect = self._processor(lib.srtp_unprotect, self._in)
        self.unprotect_rtcp = self._processor(lib.srtp_unprotect_rtcp, self._in)

    def rekey_inbound(self, keys: SrtpKeys) -> None:
        """The peer announced a new key in a re-offer (RFC 4568 7.1.4); ours and the suite stay."""
        check_keys(keys)
        if keys.remote_key != self.keys.remote_key:
            self.keys = SrtpKeys(self.keys.suite, self.keys.local_key, keys.remote_key)
            self._set_inbound(keys.remote_key)

    def _processor(self, func: Callable[..., int], session: pylibsrtp.Session) -> Callable[[bytes], bytes]:
        # A closure over everything a call needs: this runs twice per packet per leg.
        buf = self._buf
        view, length, context = ffi.buffer(buf), ffi.new("int *"), session._srtp[0]

        # `_owner` keeps the Session (which frees the libsrtp context) alive as long as the closure.
        def process(packet: bytes, _owner: pylibsrtp.Session = session) -> bytes:
            size = len(packet)
            if size > MAX_PACKET:
                raise SrtpRefused(Refusal.MALFORMED)
            view[0:size] = packet
            length[0] = size
            status = func(context, buf, length)
            if status:
                raise SrtpRefused(_refusal(status))
            result: bytes = view[0 : length[0]]
            return result

        return process


def _refusal(status: int) -> Refusal:
    if status in _REPLAYS:
        return Refusal.REPLAY
    return Refusal.AUTH if status == _AUTH_FAIL else Refusal.MALFORMED
