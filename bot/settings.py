"""Configuration, read from the environment or ``.env`` by pydantic-settings.

Settings are built in ``cli.main`` (never at import), so importing the package needs no secrets.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.domain.errors import ConfigError

LOCAL_API = "local"
MIN_AUDIT_RETENTION_DAYS = 32
# Discord asks for a shard per ~1,000 guilds (at most 2,500); far past the largest bots.
MAX_SHARD_COUNT = 16384
MIN_JOB_LEASE_SECONDS = 1.0
_URL_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#@\s]+@")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    discord_token: SecretStr | None = None
    discord_api_base_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    # The built-in renderer by default: a fresh install makes (demo) videos before any provider is set up.
    video_api_base_url: str = LOCAL_API
    video_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    models_file: Path | None = None
    # sqlite:///path (the default) or postgresql://USER:PASS@HOST:PORT/DB; never in a repr (password).
    database_url: str = Field(default="sqlite:///data/videobot.db", repr=False)
    data_dir: Path = Path("data")
    http_port: int | None = None
    # Loopback outside containers: /healthz and webhooks are not exposed unless the admin chooses to.
    http_host: str = "127.0.0.1"
    webhook_secret: SecretStr | None = None
    public_base_url: str | None = None

    # Tuning knobs beyond the core table; documented in .env.example.
    poll_interval_seconds: float = Field(default=5.0, gt=0)
    webhook_safety_sweep_seconds: float = Field(default=60.0, gt=0)
    video_api_requests_per_minute: int = Field(default=120, ge=1)
    # Unset: submissions get half the overall budget (see ``ProviderBudget``).
    video_api_creates_per_minute: int | None = Field(default=None, ge=1)
    progress_edit_interval_seconds: float = Field(default=10.0, ge=0)
    max_concurrent_submissions: int = Field(default=4, ge=1)
    max_concurrent_deliveries: int = Field(default=32, ge=1)
    job_deadline_minutes: float = Field(default=60.0, gt=0)
    local_generation_seconds: float = Field(default=8.0, ge=0)
    # Frames per second of the built-in renderer's demo videos: fewer frames, less CPU per video.
    local_render_fps: int = Field(default=24, ge=1, le=60)
    local_api_key: SecretStr | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # More than one process (README, "Running more than one process"): the gateway shards in all,
    # the ones this process connects (comma-separated; blank = all), and how long a process owns
    # an unfinished job without renewing its lease before another process takes it over.
    shard_count: int = Field(default=1, ge=1, le=MAX_SHARD_COUNT)
    shard_ids: str | None = None
    job_lease_seconds: float = Field(default=30.0, ge=MIN_JOB_LEASE_SECONDS, le=3600)

    # Hardening: bounds on what the bot downloads and how long it keeps what members gave it.
    # Not the Discord upload limit: bigger files are re-encoded or linked, so they must download.
    max_download_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    # 0 = keep forever. Media and references of finished jobs; prompts and error texts of finished
    # jobs (the rows stay: credits, history and remix lineage read them); audit records and grants.
    media_retention_days: float = Field(default=7.0, ge=0)
    job_details_retention_days: float = Field(default=90.0, ge=0)
    audit_retention_days: float = Field(default=365.0, ge=0)

    @field_validator(
        "models_file",
        "http_port",
        "public_base_url",
        "webhook_secret",
        "video_api_key",
        "openai_api_key",
        "local_api_key",
        "shard_ids",
        "video_api_creates_per_minute",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `.env.example` lists every variable; an empty `HTTP_PORT=` means "not set", not "invalid".
        return None if value == "" else value

    @field_validator("audit_retention_days")
    @classmethod
    def _grants_outlive_a_period(cls, value: float) -> float:
        # Grants count for the period they were given in (a month at most): never prune one early.
        if 0 < value < MIN_AUDIT_RETENTION_DAYS:
            raise ValueError(
                f"must be 0 (keep forever) or at least {MIN_AUDIT_RETENTION_DAYS} days, "
                "longer than the longest credit period (a month)"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_any_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("video_api_base_url", mode="before")
    @classmethod
    def _blank_is_local(cls, value: object) -> object:
        return LOCAL_API if isinstance(value, str) and not value.strip() else value

    @field_validator("shard_ids")
    @classmethod
    def _shard_ids_listed(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = [part.strip() for part in value.split(",")]
        if not all(part.isdigit() for part in parts):
            raise ValueError("must be shard numbers separated by commas, e.g. 0,1")
        return ",".join(parts)

    @model_validator(mode="after")
    def _shards_in_range(self) -> Settings:
        ids = self.shards
        outside = sorted({i for i in ids if i >= self.shard_count})
        if outside:
            raise ValueError(
                f"SHARD_IDS lists shard {', '.join(map(str, outside))}, but SHARD_COUNT={self.shard_count} "
                f"numbers the shards 0 to {self.shard_count - 1}; fix one of the two"
            )
        if len(set(ids)) != len(ids):
            raise ValueError(f"SHARD_IDS lists a shard twice ({self.shard_ids}); list each once")
        return self

    @property
    def shards(self) -> list[int]:
        """The shards this process connects: ``SHARD_IDS``, or all of ``SHARD_COUNT``."""
        if self.shard_ids is None:
            return list(range(self.shard_count))
        return [int(part) for part in self.shard_ids.split(",")]

    @property
    def fleet_share(self) -> float:
        """This process's share of what the fleet may spend on limits shared by every process of one
        token (Discord's global and per-route buckets): its shards over all shards, so 1.0 for one
        process. The Discord write scheduler scales its own pace by this when ``SHARD_COUNT > 1``
        (README, "Running more than one process": a REST proxy shares the buckets exactly)."""
        return len(self.shards) / self.shard_count

    @property
    def api_key(self) -> SecretStr | None:
        """``VIDEO_API_KEY``, or ``OPENAI_API_KEY`` when that is unset or blank."""
        return self.video_api_key or self.openai_api_key

    @property
    def uses_local_api(self) -> bool:
        return self.video_api_base_url.strip().lower() == LOCAL_API

    @property
    def webhooks_enabled(self) -> bool:
        """Provider webhooks can reach the bot: status polling becomes a slow safety sweep."""
        return self.http_port is not None and self.webhook_secret is not None

    @property
    def database_path(self) -> Path:
        return sqlite_path(self.database_url)

    @property
    def uses_postgres(self) -> bool:
        return self.database_url.strip().lower().startswith(POSTGRES_SCHEMES)

    @property
    def database_password(self) -> str | None:
        """The password in a PostgreSQL ``DATABASE_URL`` (registered with the log redaction)."""
        return url_password(self.database_url) if self.uses_postgres else None

    def require_token(self) -> SecretStr:
        if self.discord_token is None or not self.discord_token.get_secret_value().strip():
            raise ConfigError(
                "DISCORD_TOKEN is not set. Create a bot in the Discord developer portal, copy its token "
                "and put DISCORD_TOKEN=... in .env (see README, 'Create the Discord application')."
            )
        return self.discord_token


def redact_urls(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL removed (providers and proxies accept
    credentials there, and URLs end up in logs and ``videobot check``)."""
    return _URL_CREDENTIALS.sub(r"\1", text)


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def url_password(url: str) -> str | None:
    """The password in ``scheme://user:password@host…``, decoded, or None."""
    password = urllib.parse.urlsplit(url).password
    return urllib.parse.unquote(password) if password else None


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative.db`` → ``relative.db``; ``sqlite:////abs/path.db`` → ``/abs/path.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigError(
            f"DATABASE_URL must look like sqlite:///data/videobot.db or "
            f"postgresql://USER:PASSWORD@HOST:5432/DB (got {url.split(':', 1)[0]}:…)."
        )
    rest = url[len(prefix) :]
    if not rest:
        raise ConfigError("DATABASE_URL names no file, e.g. sqlite:///data/videobot.db")
    return Path(rest)
