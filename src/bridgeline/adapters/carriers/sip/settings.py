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
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from bridgeline.adapters.carriers.sip.shared_registrations import RegistrationSettings
from bridgeline.core.identifiers import check_id
from bridgeline.core.model import Role
from bridgeline.media import opus
from bridgeline.sip.endpoint_core import host_for_uri
from bridgeline.sip.events import EndpointConfig, FailoverPolicy, SessionTimerSettings, TrunkConfig
from bridgeline.sip.locate import DEFAULT_MAX_QUERIES, DEFAULT_MAX_TARGETS
from bridgeline.sip.message import MAX_MESSAGE_SIZE
from bridgeline.sip.offer_answer import codecs_by_name
from bridgeline.sip.redirect import DEFAULT_MAX_REDIRECTS, RedirectPolicy, parse_allowed_targets
from bridgeline.sip.refer_policy import LegKind, ReferPolicy
from bridgeline.sip.sdes import CryptoSuite, SrtpPolicy
from bridgeline.sip.stream_framing import FramingLimits
from bridgeline.sip.transaction import Address, Transport, destination


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    host, port = split_host_port(text)
    return host, default_port if port is None else port


def split_host_port(text: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port` -> (host without brackets, port or None)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1 :] and not text[end + 1 :].startswith(":")):
            raise ValueError(f"invalid IPv6 reference in {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        port = rest[1:] if rest else None
    else:
        host, sep, after = text.rpartition(":")
        if not sep or ":" in host:  # no port, or a bare IPv6 address
            return text, None
        port = after
    if port is None:
        return host, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid port in {text!r}")
    return host, int(port)


def _ip_version(host: str) -> int | None:
    """4 or 6 for an IP address literal, None for a name."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _yaml_off(value: Any) -> Any:
    """YAML 1.1 reads an unquoted `off` as false: take it as the policy meant."""
    return SrtpPolicy.OFF.value if value is False else value


class RtpSettings(_Strict):
    host: str = "127.0.0.1"
    ports: str = "20000-20999"
    # --- issue 9, media hardening: RTP source latching (media/leg.py) -----------------------------------
    learning_window_ms: int = Field(default=2000, ge=0, le=60_000)  # any first source may latch
    relatch_silence_ms: int = Field(default=1000, ge=20, le=60_000)  # NAT rebinding: old source quiet
    relatch_packets: int = Field(default=10, ge=1, le=1000)  # NAT rebinding: packets from the new one
    refused_log_interval_s: float = Field(default=10.0, ge=0.1, le=3600)  # one refusal log line per
    # --- issue 9: a full port range is an overload: inbound INVITEs get 503 with this Retry-After
    overload_retry_after_s: int = Field(default=5, ge=1, le=3600)
    # --- issue 10: the media thread's SCHED_FIFO priority (0: normal scheduling); refused by the OS
    # without CAP_SYS_NICE or RLIMIT_RTPRIO, then it runs at normal priority (media_thread.py)
    realtime_priority: int = Field(default=10, ge=0, le=99)
    # --- issue 11: audio codecs in preference order (our offers; answers follow the offerer's order,
    # RFC 3264 6.1), telephone-event always added. G.711 first: G.711-only conferences keep the cheap
    # 8 kHz paths, and a G.722 phone that prefers G.722 still gets it (docs/sip.md). "OPUS" is
    # opt-in: a leg costs several times a G.722 one (docs/benchmarks.md), and phones that list Opus
    # first would all move to it.
    codecs: tuple[str, ...] = ("PCMU", "PCMA", "G722")

    @field_validator("codecs")
    @classmethod
    def _check_codecs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        codecs_by_name(value)  # ValueError names the bad one
        names = tuple(name.upper() for name in value)
        if "OPUS" in names and not opus.AVAILABLE:
            raise ValueError("OPUS needs libopus (Debian: libopus0, `make deps-codecs`)")
        return names

    # NAT: the address put in SDP (c=, o=) when peers reach us at another one than `host`, which
    # stays the address bound (docs/sip.md "Behind NAT")
    public_host: str | None = None

    @model_validator(mode="after")
    def _one_family(self) -> RtpSettings:
        """Our RTP sockets speak `host`'s family only: the SDP must not name the other one."""
        public = None if self.public_host is None else _ip_version(self.public_host)
        if public is not None and public != _ip_version(self.host):
            raise ValueError(
                f"rtp.public_host {self.public_host} and rtp.host {self.host} are of different IP "
                "families: RTP speaks host's only"
            )
        return self

    @property
    def sdp_host(self) -> str:
        return self.public_host or self.host

    @property
    def port_range(self) -> tuple[int, int]:
        low, _, high = self.ports.partition("-")
        return int(low), int(high or low)

    @field_validator("ports")
    @classmethod
    def _check_ports(cls, value: str) -> str:
        low, _, high = value.partition("-")
        if not (low.isdigit() and (not high or high.isdigit())):
            raise ValueError("ports must look like 20000-20999")
        if int(high or low) - int(low) < 1:
            raise ValueError("the RTP port range needs at least two ports")
        return value


class TcpSettings(_Strict):
    listen: str | None = None  # host:port; None: no TCP listener (dialling TCP still works)


class TlsSettings(_Strict):
    listen: str | None = None  # host:port (default port 5061); needs certificate and key
    certificate: str | None = None  # PEM certificate chain
    key: str | None = None  # PEM private key
    ca_file: str | None = None  # CAs for the peers we dial (and clients, with verify_clients)
    verify_peers: bool = True  # the trunk's certificate must chain to ca_file and name its host
    verify_clients: bool = False  # phones must present a certificate from ca_file

    @property
    def configured(self) -> bool:
        """TLS was set up (a listener, our certificate, or the CAs to check peers with): DNS may
        then choose TLS for a dial (NAPTR SIPS+D2T, SRV _sips._tcp)."""
        return self.listen is not None or self.certificate is not None or self.ca_file is not None

    @model_validator(mode="after")
    def _check_listen(self) -> TlsSettings:
        if self.listen is not None and (self.certificate is None or self.key is None):
            raise ValueError("tls.listen needs tls.certificate and tls.key")
        if self.verify_clients and self.ca_file is None:
            raise ValueError("tls.verify_clients needs tls.ca_file")
        return self


class ConnectionSettings(_Strict):
    """Limits on TCP/TLS connections (docs/security.md)."""

    max_connections: int = Field(default=1000, ge=1, le=100_000)  # beyond: refused, counted
    idle_timeout_s: float = Field(default=600.0, ge=1, le=86_400)  # nothing received: closed
    connect_timeout_s: float = Field(default=5.0, ge=0.1, le=60)  # dialling, TLS handshake included
    handshake_timeout_s: float = Field(default=5.0, ge=0.1, le=60)  # accepted TLS connections
    max_header_bytes: int = Field(default=16384, ge=1024, le=MAX_MESSAGE_SIZE)  # larger: closed
    max_body_bytes: int = Field(default=32768, ge=0, le=MAX_MESSAGE_SIZE)  # larger: 400, closed
    max_write_buffer_bytes: int = Field(default=1 << 20, ge=65536, le=64 << 20)  # unread: closed

    @model_validator(mode="after")
    def _check_sizes(self) -> ConnectionSettings:
        if self.max_header_bytes + self.max_body_bytes > MAX_MESSAGE_SIZE:
            raise ValueError(f"max_header_bytes + max_body_bytes must be at most {MAX_MESSAGE_SIZE}")
        return self

    @property
    def framing(self) -> FramingLimits:
        return FramingLimits(self.max_header_bytes, self.max_body_bytes)


class TrunkSettings(_Strict):
    proxy: str
    # Pinned: only this transport is looked up and dialled. None: for a proxy named by host,
    # NAPTR/SRV choose among `SipSettings.located_transports`; for an address, UDP.
    transport: Literal["udp", "tcp", "tls"] | None = None
    domain: str
    username: str | None = None
    password: str | None = None
    caller_id: str = "bridgeline"
    # OPTIONS pings of the proxy (sip/keepalive.py): every keepalive_s (0: none), a miss when unanswered
    # for keepalive_timeout_s, down after down_after misses in a row; dials through a down trunk fail
    keepalive_s: float = Field(default=30.0, ge=0, le=3600)
    keepalive_timeout_s: float = Field(default=5.0, gt=0, le=30)
    down_after: int = Field(default=3, ge=1, le=100)
    srtp: SrtpPolicy | None = None  # None: SipSettings.srtp

    _srtp_off = field_validator("srtp", mode="before")(_yaml_off)

    @model_validator(mode="after")
    def _check_keepalive(self) -> TrunkSettings:
        if self.keepalive_s and self.keepalive_timeout_s > self.keepalive_s:
            raise ValueError("trunk.keepalive_timeout_s must not exceed trunk.keepalive_s")
        return self


class DnsSettings(_Strict):
    """RFC 3263 lookups for a trunk proxy or dialled URI given by host name (docs/sip.md)."""

    nameservers: list[str] | None = None  # "ip[:port]"; None: the system's resolv.conf
    timeout_s: float = Field(default=2.0, gt=0, le=30)  # per lookup: the dial fails after it
    cache_max: int = Field(default=1000, ge=0, le=1_000_000)  # records kept (least recently used out)
    negative_ttl_s: float = Field(default=30.0, ge=0, le=3600)  # NXDOMAIN / no data kept this long
    max_ttl_s: float = Field(default=3600.0, ge=0, le=86_400)  # a longer TTL is shortened to it
    max_targets: int = Field(default=DEFAULT_MAX_TARGETS, ge=1, le=20)  # servers tried per dial
    max_queries: int = Field(default=DEFAULT_MAX_QUERIES, ge=1, le=100)  # DNS queries per dial

    @field_validator("nameservers")
    @classmethod
    def _check_nameservers(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            host, _ = split_host_port(entry)
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"nameserver {entry!r} is not ip[:port]") from None
        return value

    def nameserver_addresses(self) -> tuple[tuple[str, int], ...] | None:
        if self.nameservers is None:
            return None
        return tuple(parse_host_port(entry, 53) for entry in self.nameservers)


class FailoverSettings(_Strict):
    """RFC 3263 4.3: a dial's INVITE moves on to the next located server on a 503, a transaction
    timeout or a transport error, at most `max` times; `no_response_s`: sooner, when the server
    has not answered anything this long (None: Timer B, 32 s)."""

    max: int = Field(default=4, ge=0, le=20)
    no_response_s: float | None = Field(default=None, gt=0, le=32)


class EndpointSettings(_Strict):
    """An endpoint given as a mapping rather than just its password."""

    password: str
    srtp: SrtpPolicy | None = None  # None: SipSettings.srtp

    _srtp_off = field_validator("srtp", mode="before")(_yaml_off)


class RedirectSettings(_Strict):
    """Which 3xx targets a dial follows. A redirect makes us call somewhere the network chose, so
    only hosts (any port) or host:port entries listed here; None: the trunk's domain and proxy host."""

    max: int = Field(default=DEFAULT_MAX_REDIRECTS, ge=0, le=10)
    allowed_targets: list[str] | None = None

    @field_validator("allowed_targets")
    @classmethod
    def _check_targets(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            parse_allowed_targets(value)
        return value


class SessionTimerYaml(_Strict):
    """RFC 4028 session timers. RFC 4028 4 puts the floor of Min-SE at 90 s: a lower `min_se_s` is
    for tests that want an expiry within seconds, not for production."""

    enabled: bool = True
    session_expires_s: int = Field(default=1800, ge=1, le=86_400)  # asked for, and the most granted
    min_se_s: int = Field(default=90, ge=1, le=86_400)  # shorter intervals get 422

    @model_validator(mode="after")
    def _check_order(self) -> SessionTimerYaml:
        if self.session_expires_s < self.min_se_s:
            raise ValueError("session_expires_s must be at least min_se_s")
        return self

    def settings(self) -> SessionTimerSettings:
        return SessionTimerSettings(self.enabled, self.session_expires_s, self.min_se_s)


class ReferSettings(_Strict):
    """Transfers members' phones ask for with REFER (sip/refer_policy.py). A REFER makes us dial where a
    phone says, so targets are allow-listed: `endpoints` (ours), number prefixes (`+1415`; `+`: any
    number), `host` / `host:port` for SIP URIs; `transferors` says whose calls may ask."""

    enabled: bool = True
    allowed: list[str] = Field(default_factory=lambda: ["endpoints"], max_length=1000)
    transferors: list[LegKind] = Field(default_factory=lambda: [LegKind.ENDPOINT])

    @field_validator("allowed")
    @classmethod
    def _check_allowed(cls, value: list[str]) -> list[str]:
        ReferPolicy.from_entries(enabled=True, allowed=value, transferors=())
        return value

    def policy(self) -> ReferPolicy:
        return ReferPolicy.from_entries(
            enabled=self.enabled, allowed=self.allowed, transferors=self.transferors
        )


class InboundRoute(_Strict):
    number: str = Field(description="the dialed number or user")
    phlo_id: str
    auth_id: str | None = Field(default=None, description="the PHLO's account; None: the main account")
    role: Role = Role.CUSTOMER
    payload: dict[str, str] = Field(default_factory=dict, description="run payload; {{from}} is the caller")

    @field_validator("phlo_id", "auth_id")
    @classmethod
    def _check_ids(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_id(str(info.field_name), value)


class SipSettings(_Strict):
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

    _srtp_off = field_validator("srtp", mode="before")(_yaml_off)

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
        if _ip_version(listen_host) != 6:
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
