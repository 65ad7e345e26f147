"""Configuration, read from the environment or ``.env`` by pydantic-settings.

Settings are built in ``cli.main`` (never at import), so importing the package needs no secrets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.domain.errors import ConfigError

LOCAL_API = "local"
MIN_AUDIT_RETENTION_DAYS = 32
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
    database_url: str = "sqlite:///data/videobot.db"
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
    # Unset: submissions are limited by the overall budget alone (after downloads and status).
    video_api_creates_per_minute: int | None = Field(default=None, ge=1)
    progress_edit_interval_seconds: float = Field(default=3.0, ge=0)
    max_concurrent_submissions: int = Field(default=4, ge=1)
    max_concurrent_deliveries: int = Field(default=32, ge=1)
    job_deadline_minutes: float = Field(default=60.0, gt=0)
    local_generation_seconds: float = Field(default=8.0, ge=0)
    # Frames per second of the built-in renderer's demo videos: fewer frames, less CPU per video.
    local_render_fps: int = Field(default=24, ge=1, le=60)
    local_api_key: SecretStr | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

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


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative.db`` → ``relative.db``; ``sqlite:////abs/path.db`` → ``/abs/path.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigError(
            f"DATABASE_URL must look like sqlite:///data/videobot.db (got {url.split(':', 1)[0]}:…); "
            "SQLite is the only store this version supports."
        )
    rest = url[len(prefix) :]
    if not rest:
        raise ConfigError("DATABASE_URL names no file, e.g. sqlite:///data/videobot.db")
    return Path(rest)
