"""The `sip` carrier's parties and call rules: the trunk, the endpoints (phones) and their
passwords, the SRTP policy each may override, which 3xx targets are followed, session timers, which
REFER transfers are allowed, and the inbound routes from dialed numbers to PHLO runs.

Apart from `settings.py`, which gathers every section into `SipSettings`, and from
`settings_network.py` (listeners, TLS, connections, DNS): these sections are about who calls and
is called, not about sockets.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from bridgeline.adapters.carriers.sip.settings_network import StrictSettings
from bridgeline.core.identifiers import check_id
from bridgeline.core.model import Role
from bridgeline.sip.events import SessionTimerSettings
from bridgeline.sip.redirect import DEFAULT_MAX_REDIRECTS, parse_allowed_targets
from bridgeline.sip.refer_policy import LegKind, ReferPolicy
from bridgeline.sip.sdes import SrtpPolicy


def yaml_off(value: Any) -> Any:
    """YAML 1.1 reads an unquoted `off` as false: take it as the policy meant."""
    return SrtpPolicy.OFF.value if value is False else value


class TrunkSettings(StrictSettings):
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

    _srtp_off = field_validator("srtp", mode="before")(yaml_off)

    @model_validator(mode="after")
    def _check_keepalive(self) -> TrunkSettings:
        if self.keepalive_s and self.keepalive_timeout_s > self.keepalive_s:
            raise ValueError("trunk.keepalive_timeout_s must not exceed trunk.keepalive_s")
        return self


class EndpointSettings(StrictSettings):
    """An endpoint given as a mapping rather than just its password."""

    password: str
    srtp: SrtpPolicy | None = None  # None: SipSettings.srtp

    _srtp_off = field_validator("srtp", mode="before")(yaml_off)


class RedirectSettings(StrictSettings):
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


class SessionTimerYaml(StrictSettings):
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


class ReferSettings(StrictSettings):
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


class InboundRoute(StrictSettings):
    number: str = Field(description="the dialed number or user")
    phlo_id: str
    auth_id: str | None = Field(default=None, description="the PHLO's account; None: the main account")
    role: Role = Role.CUSTOMER
    payload: dict[str, str] = Field(default_factory=dict, description="run payload; {{from}} is the caller")

    @field_validator("phlo_id", "auth_id")
    @classmethod
    def _check_ids(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else check_id(str(info.field_name), value)
