"""The sip carrier's numbers for /metrics: RTP ports and overloads, the RTP/RTCP/DTMF/SRTP packets
refused, the media tick's health, redirects, DNS, failovers, SIP extensions, TCP/TLS connections and
the trunk's keepalive. SIP_COUNTERS names the ones that only grow (exported as `_total`)."""

from __future__ import annotations

from typing import Final

from bridgeline.adapters.carriers.sip.dns_resolver import SipResolver
from bridgeline.adapters.carriers.sip.media_engine import MediaEngine
from bridgeline.adapters.carriers.sip.recovery import DialogKeeper
from bridgeline.adapters.carriers.sip.refer_transfers import ReferTransfers
from bridgeline.adapters.carriers.sip.transport_stream import SipStreamTransport
from bridgeline.sip.endpoint import SipEndpoint

SIP_COUNTERS: Final = frozenset(
    {
        "media_ticks",
        "media_late_ticks",
        "media_skipped_ticks",
        "rtp_packets_in",
        "rtp_packets_out",
        "rtp_send_dropped",
        "rtp_send_fenced",
        "rtp_ports_exhausted",
        "rtp_refused_foreign_source",
        "dtmf_refused_foreign_source",
        "rtcp_refused_foreign_source",
        "rtp_refused_malformed",
        "rtp_refused_unusable",
        "rtp_relatched",
        "srtp_auth_failed",
        "srtp_replayed",
        "redirects_followed",
        "redirects_refused",
        "session_timers_expired",
        "session_timer_refusals",
        "prack_timeouts",
        "refers_accepted",
        "refers_refused",
        "trunk_keepalives_sent",
        "trunk_keepalives_missed",
        "connections_accepted",
        "connections_dialled",
        "connections_refused",
        "connect_failures",
        "tls_handshake_failures",
        "connections_idle_closed",
        "connections_truncated",
        "stream_framing_errors",
        "flows_gone",
        "write_overflows",
        "transport_failures",
        "dns_lookups",
        "dns_cache_hits",
        "dns_failures",
        "failovers",
        "recoveries_started",
        "recoveries_succeeded",
        "recoveries_failed",
        "requests_held_for_recovery",
        "dialog_saves",
        "dialog_save_failures",
        "dialog_save_fenced",
    }
)


def sip_stats(
    *,
    media: MediaEngine,
    endpoint: SipEndpoint,
    streams: SipStreamTransport | None,
    resolver: SipResolver,
    refers: ReferTransfers,
    ports_exhausted: int,
    keepalive: bool,
    dialogs: DialogKeeper | None = None,
) -> dict[str, int | float]:
    media_figures, sip = media.stats, endpoint.stats
    stream_figures = streams.stats if streams is not None else {}
    return {
        "media_ticks": int(media_figures["ticks"]),
        "media_late_ticks": int(media_figures["late_ticks"]),
        "media_skipped_ticks": int(media_figures["skipped_ticks"]),
        "media_max_lateness_ms": media_figures["max_lateness_ms"],
        "media_realtime": int(media_figures["realtime"]),  # 1: the media thread runs under SCHED_FIFO
        "rtp_packets_in": int(media_figures["packets_in"]),
        "rtp_packets_out": int(media_figures["packets_out"]),
        "rtp_send_dropped": int(media_figures["send_dropped"]),
        "rtp_send_fenced": int(media_figures["send_fenced"]),  # not sent: the node's lease did not hold
        "rtp_ports_capacity": media.port_capacity,
        "rtp_ports_in_use": int(media_figures["legs"]),
        "rtp_ports_exhausted": ports_exhausted,
        "rtp_refused_foreign_source": int(media_figures["rtp_refused_foreign_source"]),
        "dtmf_refused_foreign_source": int(media_figures["dtmf_refused_foreign_source"]),
        "rtcp_refused_foreign_source": int(media_figures["rtcp_refused_foreign_source"]),
        "rtp_refused_malformed": int(media_figures["malformed_in"]),
        "rtp_refused_unusable": int(
            media_figures["ignored_in"]
        ),  # unknown payload type, or before the answer
        "rtp_relatched": int(media_figures["relatched"]),
        "srtp_auth_failed": int(media_figures["srtp_auth_failed"]),  # bad tag, garbage, wrong key
        "srtp_replayed": int(media_figures["srtp_replayed"]),
        "redirects_followed": sip["redirects_followed"],  # 3xx contacts called (docs/sip.md)
        "redirects_refused": sip["redirect_targets_refused"]  # disallowed, looping, not sip:
        + sip["redirects_not_followed"]  # 305, 380
        + sip["redirect_limit_reached"]
        + sip["redirect_targets_unresolved"],  # a host name in a Contact (docs/sip.md)
        "dns_lookups": resolver.stats["lookups"],  # queries sent to a nameserver
        "dns_cache_hits": resolver.stats["cache_hits"],  # records served from the cache
        "dns_failures": resolver.stats["failures"],  # timeouts, SERVFAIL, no nameserver
        "dns_cache_entries": len(resolver),
        "failovers": sip["failovers"],  # INVITEs sent on to a dial's next server (RFC 3263 4.3)
        "session_timers_expired": sip["session_timers_expired"],  # RFC 4028: BYE sent (docs/sip.md)
        "session_timer_refusals": sip["session_timer_refusals"],  # 422 and 400 to Session-Expires/Min-SE
        "prack_timeouts": sip["prack_timeouts"],  # RFC 3262: no PRACK in 64*T1, 504 sent
        "refers_accepted": refers.stats["accepted"],  # REFERs that became cold transfers
        "refers_refused": refers.stats["refused"] + sip["refers_refused"],
        # SIP over TCP/TLS (docs/sip.md): connections and what went wrong with them
        "connections_open": streams.open_connections if streams is not None else 0,
        "connections_accepted": stream_figures.get("connections_accepted", 0),
        "connections_dialled": stream_figures.get("connections_dialled", 0),
        "connections_refused": stream_figures.get("connections_refused", 0),  # max_connections
        "connect_failures": stream_figures.get("connect_failures", 0),
        "tls_handshake_failures": stream_figures.get("tls_handshake_failures", 0),
        "connections_idle_closed": stream_figures.get("connections_idle_closed", 0),
        "connections_truncated": stream_figures.get("connections_truncated", 0),  # closed mid-message
        "stream_framing_errors": sip["stream_errors"],  # no/bad Content-Length, too large
        "flows_gone": stream_figures.get("flows_gone", 0),  # a registered phone's connection closed
        "write_overflows": stream_figures.get("write_overflows", 0),
        "transport_failures": sip["transport_failures"],  # dials failed fast with 503
        # Calls taken back after a restart or a move (docs/sip.md, "Recovering calls")
        "recoveries_started": sip["recoveries_started"],  # re-INVITEs sent for saved dialogs
        "recoveries_succeeded": sip["recoveries_succeeded"],
        "recoveries_failed": sip["recoveries_failed"],  # refused, unanswered: the member left
        "requests_held_for_recovery": sip["requests_held_for_recovery"],
        "dialog_saves": dialogs.writes if dialogs is not None else 0,  # rows written or deleted
        "dialog_save_failures": dialogs.failures if dialogs is not None else 0,
        # dropped: the process stopped while its lease did not hold (the legs may be another node's)
        "dialog_save_fenced": dialogs.fenced_drops if dialogs is not None else 0,
        **(_trunk_stats(endpoint) if keepalive else {}),
    }


def _trunk_stats(endpoint: SipEndpoint) -> dict[str, int | float]:
    sip = endpoint.stats
    return {
        "trunk_up": int(endpoint.trunk_up),  # 0 after trunk.down_after unanswered OPTIONS
        "trunk_keepalives_sent": sip["trunk_keepalives_sent"],
        "trunk_keepalives_missed": sip["trunk_keepalives_missed"],
    }
