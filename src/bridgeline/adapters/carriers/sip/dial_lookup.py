"""What a dial must look up before its INVITE (RFC 3263), mirroring how the endpoint routes it
(`sip/outbound.py` `Outbound._route`): a SIP URI is dialled at its host, account names win over
numbers, numbers go to the trunk. None when no DNS is involved: an account, an IP address, or a
trunk whose proxy is an address. The endpoint must never be handed a name to send to.

A transport named explicitly (a URI's `transport` parameter, `sips:`, `trunk.transport`) is the
only one looked up, and used whether or not we listen on it; otherwise DNS (NAPTR, SRV) picks
among `supported`, the transports the carrier offers (SipSettings.located_transports)."""

from __future__ import annotations

from bridgeline.adapters.carriers.sip.settings import SipSettings, split_host_port
from bridgeline.sip.endpoint_core import uri_transport
from bridgeline.sip.locate import LocateRequest, RecordType, numeric_host
from bridgeline.sip.outbound import is_trunk_number
from bridgeline.sip.syntax import SipParseError
from bridgeline.sip.transaction import Transport
from bridgeline.sip.uri import parse_dial_uri


def lookup_for(
    target: str,
    settings: SipSettings,
    supported: tuple[Transport, ...],
    families: tuple[RecordType, ...],
) -> LocateRequest | None:
    """`supported`: the transports we can send on; `families`: what our socket reaches (A/AAAA)."""

    def request(
        host: str, port: int | None, transport: Transport | None, *, secure: bool = False
    ) -> LocateRequest:
        dns = settings.dns
        usable = (Transport.TLS,) if secure else supported if transport is None else (transport,)
        return LocateRequest(
            host,
            port,
            transport,
            secure=secure,
            supported=usable,
            families=families,
            max_targets=dns.max_targets,
            max_queries=dns.max_queries,
        )

    if target.lower().startswith(("sip:", "sips:")):
        try:
            uri = parse_dial_uri(target)
        except SipParseError:
            return None  # the endpoint refuses it
        if numeric_host(uri.host) is not None:
            return None  # an address needs no DNS
        explicit = uri.secure or uri.transport is not None
        transport = uri_transport(uri) if explicit else None
        if explicit and transport is None:  # sctp, ws...: nothing we can send on, so no query either
            return LocateRequest(uri.host, uri.port, Transport.UDP, supported=(), families=families)
        # sips: without a parameter still asks NAPTR (RFC 3263 4.1), keeping SIPS+D2T only
        return request(uri.host, uri.port, transport if uri.transport else None, secure=uri.secure)
    if target in settings.endpoints or not is_trunk_number(target):
        return None
    return trunk_lookup(settings, supported, families)


def trunk_lookup(
    settings: SipSettings, supported: tuple[Transport, ...], families: tuple[RecordType, ...]
) -> LocateRequest | None:
    """The lookup of the trunk's proxy (its calls and its OPTIONS keepalive), or None when there is
    no trunk or its proxy is an address."""
    trunk = settings.trunk
    if trunk is None:
        return None
    host, port = split_host_port(trunk.proxy)
    if numeric_host(host) is not None:
        return None
    transport = Transport.parse(trunk.transport) if trunk.transport else None
    dns = settings.dns
    return LocateRequest(
        host,
        port,
        transport,
        supported=supported if transport is None else (transport,),
        families=families,
        max_targets=dns.max_targets,
        max_queries=dns.max_queries,
    )
