"""The `sip` carrier's network settings: where it listens and how it reaches peers. Host:port
parsing, RTP ports, codecs and NAT address, TCP and TLS listeners and certificates, TCP/TLS
connection limits, DNS lookups (RFC 3263) and failover between located servers.

Apart from `settings.py`, which gathers every section into `SipSettings` and loads the YAML file,
and from `settings_parties.py` (the trunk, the phones and the call rules): these sections say
nothing about who calls whom. `StrictSettings`, the base of every section, lives here.
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridgeline.media import opus
from bridgeline.sip.locate import DEFAULT_MAX_QUERIES, DEFAULT_MAX_TARGETS
from bridgeline.sip.message import MAX_MESSAGE_SIZE
from bridgeline.sip.offer_answer import codecs_by_name
from bridgeline.sip.stream_framing import FramingLimits


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


def ip_version(host: str) -> int | None:
    """4 or 6 for an IP address literal, None for a name."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


class StrictSettings(BaseModel):
    """Every section: unknown keys are refused (a typo is an error), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RtpSettings(StrictSettings):
    host: str = "127.0.0.1"
    ports: str = "20000-20999"
    # --- issue 9, media hardening: RTP source latching (media/leg_latching.py) --------------------------
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
        public = None if self.public_host is None else ip_version(self.public_host)
        if public is not None and public != ip_version(self.host):
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


class TcpSettings(StrictSettings):
    listen: str | None = None  # host:port; None: no TCP listener (dialling TCP still works)


class TlsSettings(StrictSettings):
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


class ConnectionSettings(StrictSettings):
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


class DnsSettings(StrictSettings):
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


class FailoverSettings(StrictSettings):
    """RFC 3263 4.3: a dial's INVITE moves on to the next located server on a 503, a transaction
    timeout or a transport error, at most `max` times; `no_response_s`: sooner, when the server
    has not answered anything this long (None: Timer B, 32 s)."""

    max: int = Field(default=4, ge=0, le=20)
    no_response_s: float | None = Field(default=None, gt=0, le=32)
