"""What a leg is configured with and what it reports, apart from `leg.py`'s state machine: the
latching policy's knobs, the events a leg appends to the runtime's list, the runtime-wide packet
counters, and the check of negotiated media the SIP shell runs before a leg is connected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bridgeline.media import g711, g722, opus

# Where a peer is. The SDP names (host, port); an AF_INET6 socket's recvfrom gives (host, port,
# flowinfo, scope_id), kept whole so that sendto reaches a link-local peer on its interface. Hosts
# are compared as strings: the shell writes SDP hosts the way recvfrom does (rtp_udp.py).
Address = tuple[str, int] | tuple[str, int, int, int]


@dataclass(frozen=True, slots=True)
class LatchPolicy:
    """The latching rules' knobs (see `leg_latching.py`'s module docstring); from the SIP YAML's
    `rtp:` block."""

    learning_window_s: float = 2.0
    relatch_silence_s: float = 1.0
    relatch_packets: int = 10
    refused_log_interval_s: float = 10.0


DEFAULT_LATCH: Final = LatchPolicy()


@dataclass(frozen=True, slots=True)
class SourceRefused:
    """Packets from a foreign source were refused (at most one such event per policy interval)."""

    leg_id: str
    kind: str  # rtp | dtmf | rtcp
    source: Address
    latched: Address | None
    refused_since_last: int


@dataclass(frozen=True, slots=True)
class Relatched:
    """A leg's media source moved (a NAT rebinding, or the SDP address won over a learned source)."""

    leg_id: str
    source: Address
    previous: Address


@dataclass(frozen=True, slots=True)
class SrtpDropped:
    """SRTP/SRTCP packets failed authentication or the replay check (one event per policy interval)."""

    leg_id: str
    kind: str  # rtp | rtcp
    reason: str  # srtp.Refusal: auth | replay | malformed
    source: Address
    dropped_since_last: int


@dataclass(slots=True)
class Counters:
    """Runtime-wide packet counters, shared by every leg."""

    packets_in: int = 0
    packets_out: int = 0  # datagrams handed to the shell
    malformed_in: int = 0
    rtcp_in: int = 0
    ignored_in: int = 0  # valid RTP we do not use: unknown payload type, or before connect_leg
    # Packets refused because they came from another source than the leg's latched one.
    rtp_refused_foreign_source: int = 0
    dtmf_refused_foreign_source: int = 0
    rtcp_refused_foreign_source: int = 0
    relatched: int = 0  # NAT rebindings followed
    srtp_auth_failed: int = 0  # SRTP/SRTCP refused: bad tag, garbage, wrong key, too short or long
    srtp_replayed: int = 0  # SRTP/SRTCP refused by the replay window
    srtp_protect_failed: int = 0  # outgoing packets libsrtp would not protect (not sent)
    srtp_unreported: int = 0
    srtp_report_after: float = float("-inf")
    # One refusal report per interval for the whole runtime: a spray must not flood the log.
    refusals_unreported: int = 0
    refusal_report_after: float = float("-inf")


def check_media_params(payload_type: int, ptime_ms: int) -> None:
    """ValueError unless the leg's negotiated media is something the runtime can send."""
    if payload_type == opus.CODEC_ID:
        if not opus.AVAILABLE:
            raise ValueError("Opus needs libopus (Debian: libopus0), which is not installed")
    elif not (g711.is_g711(payload_type) or payload_type == g722.PAYLOAD_TYPE):
        raise ValueError(f"payload type {payload_type} is not G.711 (PCMU 0 / PCMA 8), G.722 (9) or Opus")
    if not (10 <= ptime_ms <= 120 and ptime_ms % 10 == 0):
        raise ValueError(f"unsupported ptime {ptime_ms} ms (10..120, multiple of 10)")
