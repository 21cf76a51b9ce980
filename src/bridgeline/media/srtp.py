"""One leg's SRTP/SRTCP contexts (RFC 3711), with the SDES keys offer/answer agreed on.

libsrtp (through `pylibsrtp`) does the cryptography: AES-CM and HMAC-SHA1, or AES-GCM (RFC 7714),
over bytes we hand it, with keys that come in from the SIP layer, so a context is computation like
the jitter buffer and lives in the pure leg (`media/leg.py`): no clock, no entropy, no I/O. Each
direction has its own libsrtp session: we protect with our key and unprotect with the peer's (RFC
4568 6.1). Replay protection is libsrtp's (a 128-packet window per SSRC); a stream is only created
for an SSRC once one of its packets authenticated, so forged packets cannot use up memory.

We call libsrtp from a few lines of C (`_srtp_call.c`, built by `pip install`): the function and
the libsrtp session come as addresses from pylibsrtp's own cffi binding (the function types checked
below), and the C copies the packet into its one buffer (the GIL is held throughout), calls
libsrtp in place and returns new bytes. What a tick sends is protected at its end, every SRTP
leg's packets in one call (`protect_all`, made by the runtime), and what a read round received is
unprotected before the legs see it, every SRTP leg's RTP in one call (`unprotect_all`, made by
the runtime's `receive_all`), so libsrtp's calls run back to back, which keeps its code in the CPU's caches
(simulated L1i misses per GCM leg-tick: 1,364 -> 890 with the batched protects). libsrtp's two
calls take ~6,000 instructions per leg-tick with AEAD_AES_128_GCM and ~12,000 with
AES_CM_128_HMAC_SHA1_80, the Python and C around them ~2,000 (a cffi call wrapped in a Python
closure added 24,800; `Session.protect`, which allocates and checks types per call, more still).
The AES_CM suites' HMAC-SHA1 is ours (`_srtp_hmac.c`, `use_hmac`): libsrtp's, on OpenSSL 3's
EVP_MAC, walks a chain of small contexts per packet that is cold on a media core. The budget: SRTP
legs per core within 80% of plain ones (docs/benchmarks.md 4b, bench/srtp_engine_cost.py and
bench/bench_rtp_legs.py). Sessions are still made, owned and freed by pylibsrtp, whose wheel's
libsrtp (on OpenSSL) was measured cheaper than the other builds (4b).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import pylibsrtp
from pylibsrtp import ffi, lib  # type: ignore[attr-defined]  # its cffi module: public, not in __all__

from bridgeline.media._srtp_call import BUFFER_SIZE, Processor
from bridgeline.media._srtp_call import protect_all as protect_all  # the runtime's, at each tick's end
from bridgeline.media._srtp_call import unprotect_all as unprotect_all  # the runtime's, per read round
from bridgeline.media._srtp_hmac import install as _install_hmac

# A datagram to protect at the end of the tick: (leg id, RTP packet, destination, its leg's
# `SrtpContext.protect`). `protect_all(pending, out)` protects a list of them in one C call,
# appends (leg id, SRTP packet, destination) to `out` and returns how many libsrtp refused.
ToProtect = tuple[str, bytes, Any, Processor]
# The legs whose received RTP `unprotect_all(arrived, inbound)` checks: leg id -> the connected SRTP
# leg's `SrtpContext.unprotect`, kept by the legs themselves (media/leg.py). Each of `arrived`'s
# (leg id, kind, data, source) comes back as the unprotected packet, libsrtp's refusal status
# (`refusal(status)` says why) or None: not such a leg's RTP, or SRTCP on its RTP port.
Inbound = dict[str, Processor]

# Each suite's libsrtp profile and its master key || salt length in bytes (RFC 4568 6.2, RFC 7714 12).
_PROFILES: Final = {
    "AEAD_AES_128_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16 + 12),
    "AEAD_AES_256_GCM": (pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 32 + 12),
    "AES_CM_128_HMAC_SHA1_80": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16 + 14),
    "AES_CM_128_HMAC_SHA1_32": (pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 16 + 14),
}
SUITES: Final = frozenset(_PROFILES)
# Room for the longest trailer libsrtp may add: longer packets (we read up to 2048) are malformed.
MAX_PACKET: Final = BUFFER_SIZE - pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN
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
    """A leg's keys: `suite` (an RFC 4568/7714 name in SUITES), `local_key` protects what we send,
    `remote_key` checks what the peer sends; master key || salt each (30 bytes for AES_CM, 28 for
    AEAD_AES_128_GCM, 44 for AEAD_AES_256_GCM)."""

    suite: str
    local_key: bytes
    remote_key: bytes

    def __repr__(self) -> str:  # never a key in a log line
        return f"SrtpKeys(suite={self.suite})"


def key_length(suite: str) -> int:
    """Bytes of master key || salt that `suite` (one of SUITES) takes."""
    return _PROFILES[suite][1]


def check_keys(keys: SrtpKeys) -> None:
    """ValueError unless the runtime can use these keys."""
    if keys.suite not in _PROFILES:
        raise ValueError(f"unsupported SRTP suite {keys.suite!r}")
    length = _PROFILES[keys.suite][1]
    if len(keys.local_key) != length or len(keys.remote_key) != length:
        raise ValueError(f"{keys.suite} master key and salt must be {length} bytes")


def _session(suite: str, key: bytes, ssrc_type: int) -> pylibsrtp.Session:
    profile = _PROFILES[suite][0]
    return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile))


def _address(name: str) -> int:
    """The address of libsrtp's function `name`, once its type is the one _srtp_call.c calls."""
    function = ffi.addressof(lib, name)
    if ffi.typeof(function) != ffi.typeof("srtp_err_status_t(*)(srtp_t, void *, int *)"):
        raise ImportError(f"pylibsrtp's {name} is {ffi.typeof(function).cname}: not libsrtp 2's")
    return int(ffi.cast("uintptr_t", function))


_PROTECT: Final = _address("srtp_protect")
_UNPROTECT: Final = _address("srtp_unprotect")
_UNPROTECT_RTCP: Final = _address("srtp_unprotect_rtcp")


class HmacSha1(StrEnum):
    """Whose HMAC-SHA1 the AES_CM suites' sessions use (`_srtp_hmac.c` says why ours exists)."""

    COMPACT = "compact"  # ours: OpenSSL's SHA-1, one allocation per session
    LIBSRTP = "libsrtp"  # libsrtp's, on OpenSSL's EVP_MAC


def use_hmac(kind: HmacSha1) -> HmacSha1:
    """Make `kind` the HMAC-SHA1 of the sessions made from now on; returns the one in use, which is
    libsrtp's own when the binding lacks what ours needs (the same bytes on the wire either way).
    Done at import; call it again only while no other thread makes sessions (the benchmarks do,
    between runs)."""
    global _hmac_in_use
    try:
        if _install_hmac(pylibsrtp._binding.__file__, kind is HmacSha1.COMPACT) == 0:
            _hmac_in_use = kind
    except OSError:
        pass
    return _hmac_in_use


def hmac_in_use() -> HmacSha1:
    return _hmac_in_use


_hmac_in_use = HmacSha1.LIBSRTP
use_hmac(HmacSha1.COMPACT)

_OUTBOUND: Final = pylibsrtp.Policy.SSRC_ANY_OUTBOUND
_INBOUND: Final = pylibsrtp.Policy.SSRC_ANY_INBOUND


class SrtpContext:
    """Protect what a leg sends, unprotect what it receives: `protect`, `unprotect` and
    `unprotect_rtcp` take a packet and return the result, or raise SrtpRefused (never anything else
    on bad input). Calls from several threads are safe: each holds the GIL from start to end."""

    def __init__(self, keys: SrtpKeys) -> None:
        check_keys(keys)
        self.keys = keys
        # pylibsrtp's Session owns each libsrtp context (and frees it); the processors keep it alive.
        self.protect = _processor(_PROTECT, _session(keys.suite, keys.local_key, _OUTBOUND))
        self._set_inbound(keys.remote_key)

    def _set_inbound(self, key: bytes) -> None:
        inbound = _session(self.keys.suite, key, _INBOUND)
        self.unprotect = _processor(_UNPROTECT, inbound)
        self.unprotect_rtcp = _processor(_UNPROTECT_RTCP, inbound)

    def rekey_inbound(self, keys: SrtpKeys) -> None:
        """The peer announced a new key in a re-offer (RFC 4568 7.1.4); ours and the suite stay."""
        check_keys(keys)
        if keys.remote_key != self.keys.remote_key:
            self.keys = SrtpKeys(self.keys.suite, self.keys.local_key, keys.remote_key)
            self._set_inbound(keys.remote_key)


def _processor(function: int, session: pylibsrtp.Session) -> Processor:
    context = int(ffi.cast("uintptr_t", session._srtp[0]))
    return Processor(function, context, session, _refused, MAX_PACKET)


def _refused(status: int) -> SrtpRefused:
    return SrtpRefused(refusal(status))


def refusal(status: int) -> Refusal:
    """Why libsrtp refused a packet, from its status code."""
    if status in _REPLAYS:
        return Refusal.REPLAY
    return Refusal.AUTH if status == _AUTH_FAIL else Refusal.MALFORMED
