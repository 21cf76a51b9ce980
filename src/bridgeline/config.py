"""Server settings, from flags and environment, and the credentials kept in the data directory."""

from __future__ import annotations

import json
import os
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
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
    # --- Music and message sources (issue 9, item 8; see docs/security.d/music.md) ---------------
    media_dir: Path | None = None  # files named by music settings live here; default <data-dir>/media
    media_max_bytes: int = 10 * 1024 * 1024  # a media file or download larger than this is refused
    media_fetch_timeout_s: float = 10.0  # a music URL that takes longer to download is abandoned
    media_max_seconds: float = 300.0  # decoded audio beyond this is cut off (5 min at 8 kHz: 4.8 MB)
    media_cache_bytes: int = 64 * 1024 * 1024  # decoded samples kept, by content (sha256)

    @property
    def media_directory(self) -> Path:
        return self.media_dir if self.media_dir is not None else self.data_dir / "media"

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
        if "BRIDGELINE_SIM_ANSWER_DELAY_MS" in env:
            values["sim_answer_delay_ms"] = int(env["BRIDGELINE_SIM_ANSWER_DELAY_MS"])
        if "BRIDGELINE_SIM_PLAYBACK_MS" in env:
            values["sim_playback_ms"] = int(env["BRIDGELINE_SIM_PLAYBACK_MS"])
        values.update(_media_from_env(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


_MEDIA_ENV: dict[str, tuple[str, type[int] | type[float] | type[Path]]] = {
    "BRIDGELINE_MEDIA_DIR": ("media_dir", Path),
    "BRIDGELINE_MEDIA_MAX_BYTES": ("media_max_bytes", int),
    "BRIDGELINE_MEDIA_FETCH_TIMEOUT_S": ("media_fetch_timeout_s", float),
    "BRIDGELINE_MEDIA_MAX_SECONDS": ("media_max_seconds", float),
    "BRIDGELINE_MEDIA_CACHE_BYTES": ("media_cache_bytes", int),
}


def _media_from_env(env: Mapping[str, str]) -> dict[str, object]:
    return {field: kind(env[name]) for name, (field, kind) in _MEDIA_ENV.items() if env.get(name)}


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
