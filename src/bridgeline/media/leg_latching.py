"""A leg's source latching, kept apart from `leg.py` (the packet paths) as `Leg`'s base class: who
may feed a leg, where its media goes, and the reports of datagrams it refuses. A base class rather
than an object the leg holds, so the receive fast lane and the send path keep reading `_latched`
and `dest` as the leg's own attributes: no extra call or lookup per packet.

Symmetric RTP sends back to where the peer's media comes from, but following every packet would let
one datagram from anywhere take the call over ("RTP bleed"). So a leg latches once, and packets from
any other source are refused (counted, and reported as a `SourceRefused` event at most once per
`LatchPolicy.refused_log_interval_s` for the whole runtime, never played or taken as DTMF):
- a usable packet (the leg's audio codec or the negotiated telephone-event) from exactly the SDP
  address and port (an IPv6 source's flow label and scope aside: the SDP has neither) latches at
  once, and for good: it even replaces a source learned earlier (so an attacker
  racing a peer that is not behind NAT loses as soon as the peer speaks);
- until then, within `learning_window_s` of connect, the first usable packet's source latches (a
  peer behind NAT sends from another address than its SDP names);
- a re-INVITE with a different routable SDP address reopens learning, as at connect;
- NAT rebinding: a source carrying the latched SSRC takes over after `relatch_packets` packets while
  the latched source has been silent for `relatch_silence_s`.
RTCP latches on its own: to the first RTCP source on the latched RTP host (before latching, the SDP
host), any port, since NATs map the RTCP port apart; RTCP from elsewhere is refused the same way.
"""

from __future__ import annotations

from typing import Any, Final

from bridgeline.media.leg_types import Address, Counters, LatchPolicy, Relatched, SourceRefused, SrtpDropped
from bridgeline.media.srtp import Refusal

_UNROUTABLE: Final = frozenset({"0.0.0.0", "::"})  # RFC 2543-style hold address: send nothing


class SourceLatching:
    """The latching state and rules of a `Leg` (its subclass, which applies them to packets)."""

    def __init__(
        self,
        leg_id: str,
        counters: Counters,
        events: list[Any],  # the runtime's event list (runtime.MediaEvent values)
        policy: LatchPolicy,
    ) -> None:
        self.leg_id = leg_id
        self.counters = counters
        self._events = events
        self.policy = policy
        self.dest: Address | None = None  # where we send: the latched source, else the SDP address
        self._sdp_remote: Address | None = None
        self._unroutable = False  # the SDP address is 0.0.0.0 or port 0 (RFC 2543 hold): send nothing
        self._latched: Address | None = None
        self._learn_until = float("-inf")
        self._heard_at = float("-inf")  # the latched source's last usable packet
        self._ssrc: int | None = None  # the latched source's SSRC
        self._candidate: Address | None = None  # a source that may be the peer after a NAT rebinding
        self._candidate_packets = 0
        self._rtcp_source: Address | None = None  # RTCP's own latch, on the RTP source's host

    def _take_sdp_address(self, remote: Address, now: float) -> None:
        """The SDP's address, at connect or in a re-INVITE."""
        self._unroutable = remote[0] in _UNROUTABLE or not remote[1]
        if not self._unroutable and remote != self._sdp_remote:
            # Only a changed SDP address reopens learning: re-INVITEs for hold/resume repeat the
            # old address, which behind NAT is not where the media comes from.
            self._sdp_remote = remote
            self._latched, self._ssrc, self._rtcp_source = None, None, None
            self._learn_until = now + self.policy.learning_window_s
        self._aim()

    def _aim(self) -> None:
        self.dest = None if self._unroutable else self._latched or self._sdp_remote

    def _latch(self, addr: Address) -> None:
        if self._latched is not None:
            self.counters.relatched += 1
            self._events.append(Relatched(self.leg_id, addr, self._latched))
        self._latched = addr
        self._candidate, self._candidate_packets = None, 0
        if self._rtcp_source is not None and self._rtcp_source[0] != addr[0]:
            self._rtcp_source = None
        self._aim()

    def _admit(self, addr: Address, ssrc: int, now: float) -> bool:
        """Whether a usable packet from `addr`, which is not the latched source, may be used; it
        latches (or re-latches) when the rules in the module docstring allow."""
        if self._from_sdp_address(addr) or (self._latched is None and now <= self._learn_until):
            self._latch(addr)
            return True
        if self._latched is None or ssrc != self._ssrc:
            return False  # (not resetting the candidate: other sources must not block a rebinding)
        if now - self._heard_at < self.policy.relatch_silence_s:
            self._candidate_packets = 0  # the latched source still speaks: start counting afresh
            return False
        if addr != self._candidate:
            self._candidate, self._candidate_packets = addr, 0
        self._candidate_packets += 1
        if self._candidate_packets < self.policy.relatch_packets:
            return False
        self._latch(addr)
        return True

    def _from_sdp_address(self, addr: Address) -> bool:
        """The source is the SDP's host and port (an IPv6 source is a 4-tuple, the SDP's a pair)."""
        sdp = self._sdp_remote
        return sdp is not None and addr[1] == sdp[1] and addr[0] == sdp[0]

    def _refuse(self, kind: str, addr: Address, now: float) -> None:
        counters = self.counters
        if kind == "rtcp":
            counters.rtcp_refused_foreign_source += 1
        elif kind == "dtmf":
            counters.dtmf_refused_foreign_source += 1
        else:
            counters.rtp_refused_foreign_source += 1
        counters.refusals_unreported += 1
        if now >= counters.refusal_report_after:
            self._events.append(
                SourceRefused(self.leg_id, kind, addr, self._latched, counters.refusals_unreported)
            )
            counters.refusals_unreported = 0
            counters.refusal_report_after = now + self.policy.refused_log_interval_s

    def srtp_refused(self, kind: str, refusal: Refusal, addr: Address, now: float) -> None:
        """libsrtp refused a packet the leg received (its RTP unprotected by the runtime's batch
        comes here too): counted, and reported at most once per refusal interval. Such a packet
        never reaches the rules above: it can neither latch nor move the latch."""
        counters = self.counters
        if refusal is Refusal.REPLAY:
            counters.srtp_replayed += 1
        else:
            counters.srtp_auth_failed += 1
        counters.srtp_unreported += 1
        if now >= counters.srtp_report_after:
            self._events.append(SrtpDropped(self.leg_id, kind, refusal.value, addr, counters.srtp_unreported))
            counters.srtp_unreported = 0
            counters.srtp_report_after = now + self.policy.refused_log_interval_s
