"""What a dial must look up before its INVITE (RFC 3263), mirroring how the endpoint routes it
(`sip/outbound.py` `Outbound._route`): a SIP URI is dialled at its host, account names win over
numbers, numbers go to the trunk. None when no DNS is involved: an account, an IP address, or a
trunk whose proxy is an address. The endpoint must never be handed a name to send to."""

from __future__ import annotations

from bridgeline.adapters.carriers.sip.settings import SipSettings, split_host_port
from bridgeline.sip.locate import LocateRequest, RecordType, Transport, numeric_host
from bridgeline.sip.outbound import is_trunk_number
from bridgeline.sip.syntax import SipParseError
from bridgeline.sip.uri import parse_dial_uri


def lookup_for(
    target: str,
    settings: SipSettings,
    supported: tuple[Transport, ...],
    families: tuple[RecordType, ...],
) -> LocateRequest | None:
    """`supported`: the transports we can send on; `families`: what our socket reaches (A/AAAA)."""

    def request(
        host: str, port: int | None, transport: Transport | None, usable: tuple[Transport, ...]
    ) -> LocateRequest:
        dns = settings.dns
        return LocateRequest(
            host,
            port,
            transport,
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
        if uri.secure or numeric_host(uri.host) is not None:
            return None  # sips: is refused by the endpoint (no TLS); an address needs no DNS
        usable = supported
        transport = None
        if uri.transport is not None:
            try:
                transport = Transport(uri.transport)
            except ValueError:  # sctp, ws...: nothing we can send on, so no query either
                transport, usable = Transport.UDP, ()
        return request(uri.host, uri.port, transport, usable)
    trunk = settings.trunk
    if target in settings.endpoints or trunk is None or not is_trunk_number(target):
        return None
    host, proxy_port = split_host_port(trunk.proxy)
    if numeric_host(host) is not None:
        return None
    return request(host, proxy_port, None, supported)
