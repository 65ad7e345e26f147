from __future__ import annotations

from pathlib import Path

import pytest

from bot.domain.errors import ConfigError
from bot.settings import Settings, sqlite_path


def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    for key in ("VIDEO_API_KEY", "OPENAI_API_KEY", "DISCORD_TOKEN", "HTTP_PORT", "WEBHOOK_SECRET"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_blank_video_api_key_falls_back_to_openai_api_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = settings(monkeypatch, tmp_path, VIDEO_API_KEY="", OPENAI_API_KEY="sk-fallback")
    assert s.api_key is not None and s.api_key.get_secret_value() == "sk-fallback"
    s = settings(monkeypatch, tmp_path, VIDEO_API_KEY="sk-video", OPENAI_API_KEY="sk-fallback")
    assert s.api_key is not None and s.api_key.get_secret_value() == "sk-video"
    assert settings(monkeypatch, tmp_path).api_key is None


def test_secrets_never_show_in_repr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = settings(
        monkeypatch, tmp_path, DISCORD_TOKEN="tok-123", VIDEO_API_KEY="sk-456", WEBHOOK_SECRET="whsec_789"
    )
    text = repr(s) + str(s)
    assert "tok-123" not in text and "sk-456" not in text and "whsec_789" not in text


def test_blank_optional_values_mean_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = settings(monkeypatch, tmp_path, HTTP_PORT="", WEBHOOK_SECRET="")
    assert s.http_port is None and s.webhook_secret is None and not s.webhooks_enabled


def test_missing_token_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DISCORD_TOKEN is not set"):
        settings(monkeypatch, tmp_path).require_token()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/videobot.db", Path("data/videobot.db")),
        ("sqlite:////var/lib/v.db", Path("/var/lib/v.db")),
    ],
)
def test_database_urls(url: str, path: Path) -> None:
    assert sqlite_path(url) == path


def test_other_databases_are_refused_plainly() -> None:
    with pytest.raises(ConfigError, match="SQLite is the only store"):
        sqlite_path("postgresql://localhost/videobot")
