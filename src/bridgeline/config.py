"""Server settings, from flags and environment, and the credentials kept in the data directory."""

from __future__ import annotations

import json
import os
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = Path("data")
    carrier: str = "sim"
    database_url: str | None = None  # default: SQLite in the data directory
    auth_id: str | None = None
    auth_token: str | None = None
    sim_answer_delay_ms: int = 1000
    sim_playback_ms: int = 3000
    sip_listen: str | None = None  # host:port, overrides the SIP config file's `listen`
    sip_config: Path | None = None  # YAML: endpoints, trunk, inbound numbers, RTP ports
    log_format: str = "console"  # or "json"
    log_level: str = "info"  # "debug" adds every conference event (see logs.py)
    # --- Music and message sources (issue 9, item 8; see docs/security.md) ---------------
    media_dir: Path | None = None  # files named by music settings live here; default <data-dir>/media
    media_max_bytes: int = 10 * 1024 * 1024  # a media file or download larger than this is refused
    media_fetch_timeout_s: float = 10.0  # a music URL that takes longer to download is abandoned
    media_max_seconds: float = 300.0  # decoded audio beyond this is cut off (5 min at 8 kHz: 4.8 MB)
    media_cache_bytes: int = 64 * 1024 * 1024  # decoded samples kept, by content (sha256)

    @property
    def media_directory(self) -> Path:
        return self.media_dir if self.media_dir is not None else self.data_dir / "media"

    # --- callbacks, outbox and retention (issue 9: docs/security.md) ---------------------
    egress_profile: str = "open"  # "hosted": callbacks may reach only public addresses (adapters/egress.py)
    egress_allow: str = ""  # comma-separated CIDRs always allowed (wins over everything)
    egress_deny: str = ""  # comma-separated CIDRs always refused
    webhook_timeout: float = 5.0  # seconds for one callback attempt, connect to status line
    webhook_per_destination: int = 4  # attempts in flight per receiver (host:port)
    webhook_max_in_flight: int = 64  # attempts in flight over all receivers
    retention_days: float = 30.0  # ended conferences, their events and finished deliveries; 0 = forever
    run_retention_days: float = 30.0  # finished runs; 0 = forever
    prune_interval: float = 300.0  # seconds between background pruning passes
    prune_batch: int = 100  # conferences (or runs) deleted per pruning transaction
    # --- events and callbacks across nodes (issue #12: docs/cluster.md) -------------------
    webhook_poll_interval: float = 0.5  # s between outbox claims when no commit or NOTIFY wakes the worker
    event_feed_poll_interval: float = 1.0  # s between polls for other nodes' events (PostgreSQL)
    event_feed_max_events: int = 500  # other nodes' events read per feed round, at most

    # --- HTTP edge and authentication (issue #9, items 4-7 and 13; docs/security.md) ---
    http_max_connections: int = 1000  # open connections; one more is answered 503 and closed
    http_max_header_bytes: int = 32 * 1024  # request line + headers; past it: 431 and close
    http_max_headers: int = 100  # header fields; past it: 431 and close
    http_max_url_bytes: int = 8 * 1024  # request target; past it: 414 and close
    http_max_body_bytes: int = 1024 * 1024  # past it: 413 and close
    http_idle_timeout: float = 5.0  # s without a byte before a request (new or kept-alive): closed
    http_header_timeout: float = 10.0  # s from a request's first byte to its last header: 408
    http_request_timeout: float = 30.0  # s from a request's first byte to its last body byte: 408
    http_write_timeout: float = 30.0  # s a client may leave its answer unread (buffers full): closed
    sse_max_streams: int = 64  # open event streams on the server; past it: 503
    sse_max_streams_per_account: int = 8  # open event streams of one account; past it: 429
    auth_cache_seconds: float = 5.0  # a changed or removed account is noticed within this time
    auth_failure_rate: float = 2.0  # failed logins per second a source IP earns back
    auth_failure_burst: int = 100  # failed logins a source IP may make at once; then 429
    # --- safe retries: Idempotency-Key (issue #12; docs/semantics.md, docs/security.md) ---
    idempotency_ttl_s: float = 86_400.0  # a key and its answer are kept this long, then pruned
    idempotency_key_max_length: int = 255  # characters of a key; longer: 400
    idempotency_lock_s: float = 60.0  # an unanswered key older than this is taken for abandoned

    # --- the cluster (issue #12; docs/cluster.md "Ownership, failover and drain") -----------
    node_id: str = "local"  # this process among the nodes sharing one database
    internal_url: str | None = None  # how other nodes reach this one; default http://{host}:{port}
    node_lease_s: float = 3.0  # a node silent this long loses its conferences to the others
    node_heartbeat_s: float = 1.0  # lease renewal and takeover scan period
    drain_timeout_s: float = 10.0  # SIGTERM: at most this long handing conferences over, then exit
    forward_timeout_s: float = 10.0  # a request carried to its conference's owner: the owner's answer
    forward_retry_s: float = 10.0  # an owner unreachable this long (lease + takeover): 503 + Retry-After

    # --- recordings (issue #13; docs/security.md "Recordings", adapters/recordings) ---------
    recording_queue_frames: int = 500  # frames waiting for the writer thread per recording; past it: failed
    recording_header_interval_s: float = 1.0  # audio s between WAV header rewrites (what a crash can lose)
    recording_mp3_bitrate_kbps: int = 32  # constant MP3 bitrate (8 kHz mono speech)
    # A segment whose recorder node stays down this long is given up: Failed, "recorder node lost".
    recording_lost_after_s: float = 300.0
    recordings_retention_days: float = 0.0  # recordings older than this are deleted; 0 = kept forever
    recordings_s3_endpoint: str = ""  # S3-compatible object storage URL; empty: <data-dir>/recordings
    recordings_s3_bucket: str = ""
    recordings_s3_region: str = "us-east-1"
    recordings_s3_prefix: str = ""  # key prefix inside the bucket, e.g. "bridgeline/"
    recordings_s3_access_key_id: str = ""
    recordings_s3_secret_access_key: str = field(default="", repr=False)
    recordings_s3_timeout_s: float = 30.0  # one object store request, connect to last byte

    @property
    def recordings_directory(self) -> Path:
        return self.data_dir / "recordings"

    def __post_init__(self) -> None:
        for name in (*EDGE_SETTINGS, *FEED_SETTINGS):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} (BRIDGELINE_{name.upper()}) must be positive")
        if not NODE_ID.fullmatch(self.node_id):
            raise ValueError("node_id (BRIDGELINE_NODE_ID) must be 1-64 letters, digits, '.', '_' or '-'")
        if not 0 < self.node_heartbeat_s < self.node_lease_s:
            raise ValueError(
                "node_heartbeat_s must be positive and shorter than node_lease_s"
                " (BRIDGELINE_NODE_HEARTBEAT_S, BRIDGELINE_NODE_LEASE_S)"
            )
        if self.forward_timeout_s <= 0 or self.forward_retry_s < 0:
            raise ValueError(
                "forward_timeout_s must be positive and forward_retry_s not negative"
                " (BRIDGELINE_FORWARD_TIMEOUT_S, BRIDGELINE_FORWARD_RETRY_S)"
            )
        if self.drain_timeout_s < 0:
            raise ValueError("drain_timeout_s (BRIDGELINE_DRAIN_TIMEOUT_S) must not be negative")
        for name in (
            "recording_queue_frames",
            "recording_header_interval_s",
            "recording_lost_after_s",
            "recordings_s3_timeout_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} (BRIDGELINE_{name.upper()}) must be positive")
        if self.recordings_retention_days < 0:
            raise ValueError(
                "recordings_retention_days (BRIDGELINE_RECORDINGS_RETENTION_DAYS) must not be negative"
            )
        if self.recordings_s3_endpoint and not self.recordings_s3_bucket:
            raise ValueError(
                "recordings_s3_endpoint needs recordings_s3_bucket (BRIDGELINE_RECORDINGS_S3_BUCKET)"
            )

    @property
    def node_url(self) -> str:
        """What other nodes use to reach this one."""
        return self.internal_url or f"http://{self.host}:{self.port}"

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'bridgeline.db').resolve()}"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "database_url": env.get("DATABASE_URL") or None,
            "auth_id": env.get("BRIDGELINE_AUTH_ID") or None,
            "auth_token": env.get("BRIDGELINE_AUTH_TOKEN") or None,
            "log_format": env.get("BRIDGELINE_LOG_FORMAT", "console"),
            "log_level": env.get("BRIDGELINE_LOG_LEVEL", "info"),
        }
        values.update(settings_from_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


NODE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

# The cluster's settings; each is also a `serve` flag (cli/commands.py).
CLUSTER_SETTINGS: dict[str, type[str] | type[float]] = {
    "node_id": str,
    "internal_url": str,
    "node_lease_s": float,
    "node_heartbeat_s": float,
    "drain_timeout_s": float,
    "forward_timeout_s": float,
    "forward_retry_s": float,
}

# The limits above that must be positive; each is also a `serve` flag (cli/commands.py).
EDGE_SETTINGS: dict[str, type[int] | type[float]] = {
    "http_max_connections": int,
    "http_max_header_bytes": int,
    "http_max_headers": int,
    "http_max_url_bytes": int,
    "http_max_body_bytes": int,
    "http_idle_timeout": float,
    "http_header_timeout": float,
    "http_request_timeout": float,
    "http_write_timeout": float,
    "sse_max_streams": int,
    "sse_max_streams_per_account": int,
    "auth_cache_seconds": float,
    "auth_failure_rate": float,
    "auth_failure_burst": int,
    "idempotency_ttl_s": float,
    "idempotency_key_max_length": int,
    "idempotency_lock_s": float,
}

# The event feed's and the outbox worker's polling (cluster mode); each must be positive too.
FEED_SETTINGS: dict[str, type[int] | type[float]] = {
    "webhook_poll_interval": float,
    "event_feed_poll_interval": float,
    "event_feed_max_events": int,
}

# Recordings (adapters/recordings; docs/security.md "Recordings").
RECORDING_SETTINGS: dict[str, type[str] | type[int] | type[float]] = {
    "recording_queue_frames": int,
    "recording_header_interval_s": float,
    "recording_mp3_bitrate_kbps": int,
    "recording_lost_after_s": float,
    "recordings_retention_days": float,
    "recordings_s3_endpoint": str,
    "recordings_s3_bucket": str,
    "recordings_s3_region": str,
    "recordings_s3_prefix": str,
    "recordings_s3_access_key_id": str,
    "recordings_s3_secret_access_key": str,
    "recordings_s3_timeout_s": float,
}

# Every setting read from the environment as BRIDGELINE_<FIELD NAME IN CAPITALS>, with its type.
ENV_SETTINGS: dict[str, type[str] | type[int] | type[float] | type[Path]] = {
    **FEED_SETTINGS,
    "sim_answer_delay_ms": int,
    "sim_playback_ms": int,
    "egress_profile": str,
    "egress_allow": str,
    "egress_deny": str,
    "webhook_timeout": float,
    "webhook_per_destination": int,
    "webhook_max_in_flight": int,
    "retention_days": float,
    "run_retention_days": float,
    "prune_interval": float,
    "prune_batch": int,
    **EDGE_SETTINGS,
    **CLUSTER_SETTINGS,
    "media_dir": Path,
    "media_max_bytes": int,
    "media_fetch_timeout_s": float,
    "media_max_seconds": float,
    "media_cache_bytes": int,
    **RECORDING_SETTINGS,
}


def settings_from_env(env: Mapping[str, str]) -> dict[str, object]:
    """The settings of ENV_SETTINGS that the environment sets (an empty variable is unset)."""
    values: dict[str, object] = {}
    for name, kind in ENV_SETTINGS.items():
        variable = f"BRIDGELINE_{name.upper()}"
        raw = env.get(variable)
        if not raw:
            continue
        try:
            values[name] = kind(raw)
        except ValueError:
            raise ValueError(f"{variable}={raw!r} is not a valid {kind.__name__}") from None
    return values


@dataclass(frozen=True, slots=True)
class Credentials:
    auth_id: str
    auth_token: str


def new_auth_id(prefix: str = "MA") -> str:
    alphabet = string.ascii_uppercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(18))


def new_auth_token() -> str:
    return secrets.token_urlsafe(30)


def load_or_create_credentials(settings: Settings) -> tuple[Credentials, bool]:
    """The main account's credentials: from the environment, else the data directory, else new.

    Returns the credentials and whether they were created now.
    """
    if settings.auth_id and settings.auth_token:
        return Credentials(settings.auth_id, settings.auth_token), False
    path = settings.data_dir / CREDENTIALS_FILE
    if path.exists():
        raw = json.loads(path.read_text())
        return Credentials(raw["auth_id"], raw["auth_token"]), False
    credentials = Credentials(new_auth_id(), new_auth_token())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"auth_id": credentials.auth_id, "auth_token": credentials.auth_token}, indent=2)
    )
    path.chmod(0o600)
    return credentials, True
