"""Settings of the `sip` carrier, from a YAML file and flags.

```yaml
listen: 127.0.0.1:5060          # overridden by --sip-listen
public_address: 198.51.100.7    # behind NAT: Via and Contact say this (rtp.public_host for SDP)
domain: bridgeline.local        # digest realm, From host
rtp: {host: 127.0.0.1, ports: 20000-20999}   # and the limits below (docs/security.md)
#   codecs: [PCMU, PCMA, G722]   # preference order of our offers; what answers may pick from
srtp: "off"                     # SDES-SRTP for calls not covered below: required | offered | off
srtp_suites: [AEAD_AES_128_GCM, AEAD_AES_256_GCM, AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32]
#                               # ^ the default: what we offer (in this order) and accept
endpoints:                      # agents' phones: they REGISTER with these credentials
  alice: alice-secret
  bob: {password: bob-secret, srtp: required}   # calls to and from bob must be encrypted
tcp: {listen: 127.0.0.1:5060}   # SIP over TCP (RFC 3261 18); default: not listening
tls:                            # SIP over TLS; `listen` needs certificate and key (docs/sip.md)
  listen: 127.0.0.1:5061
  certificate: /etc/bridgeline/sip.crt
  key: /etc/bridgeline/sip.key
  ca_file: /etc/bridgeline/ca.crt   # checks the peers we dial (default: the system's CAs)
  verify_peers: true            # check the certificate and name of the peers we dial (the trunk)
  verify_clients: false         # require a client certificate from phones
connections: {max_connections: 1000, idle_timeout_s: 600}   # TCP/TLS limits (docs/security.md)
trunk:                          # where E.164 numbers are dialed
  proxy: 127.0.0.1:5080
  transport: tls                # udp | tcp | tls; default: a name's NAPTR/SRV records choose, else UDP
  domain: trunk.example.com
  username: bridgeline
  password: trunk-secret
  caller_id: "+14150000000"
  keepalive_s: 30               # OPTIONS to the proxy every 30 s (0: none); down after 3 misses
  srtp: offered                 # default: the top-level srtp
reliable_provisionals: true     # RFC 3262 100rel/PRACK (docs/sip.md)
session_timers: {enabled: true, session_expires_s: 1800, min_se_s: 90}   # RFC 4028
dns:                            # host names in trunk.proxy and dialled URIs (RFC 3263, docs/sip.md)
  nameservers: ["127.0.0.1:53"] # default: the system's resolv.conf
  timeout_s: 2                  # per lookup
failover: {max: 4, no_response_s: null}   # RFC 3263 4.3: next server on 503/timeout
redirects:                      # 3xx answers to our INVITEs (docs/sip.md, docs/security.md)
  max: 3                        # new INVITEs per leg; 0: never follow
  allowed_targets: [trunk.example.com, "10.0.0.7:5060"]   # default: the trunk's domain and proxy host
refer:                          # REFER from a member's phone: a cold transfer (docs/sip.md)
  enabled: true
  allowed: [endpoints, "+1415", "pbx.example.com:5060"]   # default: [endpoints]
  transferors: [endpoints]      # whose calls may REFER: endpoints, trunk, uris
inbound:                        # calls to these numbers start a PHLO run
  - number: "+14155550100"
    phlo_id: support
    auth_id: MA...                 # the PHLO's account; default: the main account
    payload: {customer: "{{from}}", agent: alice}
```

The sections live in `settings_network.py` (listeners, RTP, TLS, connections, DNS, failover) and
`settings_parties.py` (trunk, endpoints, redirects, session timers, REFER, inbound routes); this
module gathers them into `SipSettings`, with the rules that span sections (each call's SRTP policy,
the endpoint's configuration, which hosts are ours), and loads the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator

from bridgeline.adapters.carriers.sip.settings_network import (
    ConnectionSettings,
    DnsSettings,
    FailoverSettings,
    RtpSettings,
    StrictSettings,
    TcpSettings,
    TlsSettings,
    ip_version,
    parse_host_port,
    split_host_port,
)
from bridgeline.adapters.carriers.sip.settings_parties import (
    EndpointSettings,
    InboundRoute,
    RedirectSettings,
    ReferSettings,
    SessionTimerYaml,
    TrunkSettings,
    yaml_off,
)
from bridgeline.adapters.carriers.sip.shared_registrations import RegistrationSettings
from bridgeline.sip.endpoint_core import host_for_uri
from bridgeline.sip.events import EndpointConfig, FailoverPolicy, TrunkConfig
from bridgeline.sip.redirect import RedirectPolicy, parse_allowed_targets
from bridgeline.sip.refer_policy import ReferPolicy
from bridgeline.sip.sdes import CryptoSuite, SrtpPolicy
from bridgeline.sip.transaction import Address, Transport, destination

# The sections, from settings_network.py and settings_parties.py, where callers have always found them.
__all__ = [
    "ConnectionSettings",
    "DnsSettings",
    "EndpointSettings",
    "FailoverSettings",
    "InboundRoute",
    "RedirectSettings",
    "ReferSettings",
    "RtpSettings",
    "SessionTimerYaml",
    "SipSettings",
    "TcpSettings",
    "TlsSettings",
    "TrunkSettings",
    "load_sip_settings",
    "parse_host_port",
    "split_host_port",
]


class SipSettings(StrictSettings):
    listen: str = "127.0.0.1:5060"
    public_address: str | None = None  # NAT: host[:port] for Via and Contact (port: listen's)
    domain: str = "bridgeline.local"
    tcp: TcpSettings = TcpSettings()
    tls: TlsSettings = TlsSettings()
    connections: ConnectionSettings = ConnectionSettings()
    rtp: RtpSettings = RtpSettings()
    # SDES-SRTP (docs/sip.md): for calls to and from endpoints and the trunk without a setting of
    # their own, and for calls to other SIP URIs.
    srtp: SrtpPolicy = SrtpPolicy.OFF
    # The SDES suites we offer, in this order, and accept (docs/sip.md): all of them by default.
    srtp_suites: tuple[CryptoSuite, ...] = tuple(CryptoSuite)
    endpoints: dict[str, str | EndpointSettings] = Field(default_factory=dict)
    trunk: TrunkSettings | None = None
    redirects: RedirectSettings = RedirectSettings()
    reliable_provisionals: bool = True  # RFC 3262: advertise 100rel, PRACK, honour Require: 100rel
    session_timers: SessionTimerYaml = SessionTimerYaml()
    refer: ReferSettings = ReferSettings()
    dns: DnsSettings = DnsSettings()
    failover: FailoverSettings = FailoverSettings()
    inbound: list[InboundRoute] = Field(default_factory=list)
    registrations: RegistrationSettings = RegistrationSettings()  # Path, sharing (cluster mode)

    _srtp_off = field_validator("srtp", mode="before")(yaml_off)

    @field_validator("srtp_suites")
    @classmethod
    def _suites_listed_once(cls, suites: tuple[CryptoSuite, ...]) -> tuple[CryptoSuite, ...]:
        if not suites or len(set(suites)) != len(suites):
            raise ValueError("srtp_suites must name at least one suite, each once")
        return suites

    @model_validator(mode="before")
    @classmethod
    def _rtp_host_follows_listen(cls, data: Any) -> Any:
        """`rtp.host` left out, and SIP listening on IPv6: RTP on `::1`, the IPv6 loopback, as it
        is on 127.0.0.1 by default for IPv4 (one family per server, docs/sip.md "IPv6")."""
        if not isinstance(data, dict):
            return data
        try:
            listen_host = split_host_port(str(data.get("listen") or "127.0.0.1"))[0]
        except ValueError:
            return data  # the field's own validation says what is wrong
        if ip_version(listen_host) != 6:
            return data
        rtp = data.get("rtp")
        if rtp is None:
            return {**data, "rtp": {"host": "::1"}}
        if isinstance(rtp, dict) and "host" not in rtp:
            return {**data, "rtp": {**rtp, "host": "::1"}}
        if isinstance(rtp, RtpSettings) and "host" not in rtp.model_fields_set:
            return {**data, "rtp": rtp.model_copy(update={"host": "::1"})}
        return data

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_host_port(self.listen, 5060)

    @property
    def public_sip_address(self) -> tuple[str, int] | None:
        if self.public_address is None:
            return None
        return parse_host_port(self.public_address, self.listen_address[1])

    @field_validator("public_address")
    @classmethod
    def _check_public_address(cls, value: str | None) -> str | None:
        if value is not None:
            host, _ = parse_host_port(value, 5060)
            if not host or any(c in host for c in " ;,<>@"):
                raise ValueError(f"public_address {value!r} is not host[:port]")
        return value

    @property
    def stream_addresses(self) -> dict[Transport, Address]:
        """Where TCP and TLS listen, for those that do."""
        found: dict[Transport, Address] = {}
        if self.tcp.listen is not None:
            found[Transport.TCP] = parse_host_port(self.tcp.listen, 5060)
        if self.tls.listen is not None:
            found[Transport.TLS] = parse_host_port(self.tls.listen, 5061)
        return found

    @property
    def located_transports(self) -> tuple[Transport, ...]:
        """What RFC 3263 lookups may choose for a dial that names no transport, best first: TLS
        when configured, TCP when we listen on it, then UDP. A stream transport is offered only
        when a peer can reach us back over it (or, for TLS set up to dial only, when in-dialog
        requests reuse our connection, as for `trunk.transport: tls`); a transport named
        explicitly is dialled whether or not we listen."""
        found = [Transport.TLS] if self.tls.configured else []
        if self.tcp.listen is not None:
            found.append(Transport.TCP)
        return (*found, Transport.UDP)

    def endpoint_srtp(self, username: str) -> SrtpPolicy:
        entry = self.endpoints.get(username)
        own = entry.srtp if isinstance(entry, EndpointSettings) else None
        return own or self.srtp

    def trunk_srtp(self) -> SrtpPolicy:
        own = self.trunk.srtp if self.trunk is not None else None
        return own or self.srtp

    def srtp_for_dial(self, target: str) -> SrtpPolicy:
        """The policy of a dial target as the endpoint routes it (`sip/outbound.py`): an endpoint's
        name, else an E.164 number through the trunk, else the default."""
        if target in self.endpoints:
            return self.endpoint_srtp(target)
        if self.trunk is not None and not target.lower().startswith(("sip:", "sips:")):
            return self.trunk_srtp()
        return self.srtp

    def srtp_for_inbound(self, account: str | None, source_host: str) -> SrtpPolicy:
        """An inbound call's policy: the authenticated endpoint's, the trunk's, else the default."""
        if account is not None:
            return self.endpoint_srtp(account)
        if self.trunk is not None and source_host == parse_host_port(self.trunk.proxy, 5060)[0]:
            return self.trunk_srtp()
        return self.srtp

    def endpoint_config(self) -> EndpointConfig:
        trunk = None
        if self.trunk is not None:
            transport = Transport.parse(self.trunk.transport) or Transport.UDP
            host, port = parse_host_port(self.trunk.proxy, transport.default_port)
            trunk = TrunkConfig(
                proxy=destination(transport, host, port),
                domain=self.trunk.domain,
                username=self.trunk.username,
                password=self.trunk.password,
                from_user=self.trunk.caller_id,
                keepalive_interval=self.trunk.keepalive_s,
                keepalive_timeout=self.trunk.keepalive_timeout_s,
                keepalive_down_after=self.trunk.down_after,
            )
        return EndpointConfig(
            local_address=self.listen_address,
            public_address=self.public_sip_address,
            domain=self.domain,
            accounts={
                name: entry.password if isinstance(entry, EndpointSettings) else entry
                for name, entry in self.endpoints.items()
            },
            trunk=trunk,
            redirects=self.redirect_policy(),
            reliable_provisionals=self.reliable_provisionals,
            session_timers=self.session_timers.settings(),
            stream_addresses=self.stream_addresses,
            failover=FailoverPolicy(self.failover.max, self.failover.no_response_s),
            registration=self.registrations.limits(),
        )

    def redirect_policy(self) -> RedirectPolicy:
        targets = self.redirects.allowed_targets
        if targets is None:
            trunk = self.trunk
            targets = [] if trunk is None else [trunk.domain, host_for_uri(split_host_port(trunk.proxy)[0])]
        return RedirectPolicy(self.redirects.max, parse_allowed_targets(targets))

    def refer_policy(self) -> ReferPolicy:
        return self.refer.policy()

    def local_hosts(self) -> frozenset[str]:
        """The hosts that name this server in a URI (lower case): the domain and the listen host."""
        hosts = {self.domain.lower(), self.listen_address[0].strip("[]").lower()}
        if self.public_sip_address is not None:
            hosts.add(self.public_sip_address[0].strip("[]").lower())
        return frozenset(hosts)

    def route_for(self, dialed: str) -> InboundRoute | None:
        return next((r for r in self.inbound if r.number == dialed), None)


def load_sip_settings(path: Path | None, **overrides: Any) -> SipSettings:
    raw: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: the SIP configuration must be a mapping")
        raw = loaded
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return SipSettings.model_validate(raw)
