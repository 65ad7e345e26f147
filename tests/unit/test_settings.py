from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.domain.errors import ConfigError
from bot.settings import Settings, redact_urls, sqlite_path


def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> Settings:
    monkeypatch.chdir(tmp_path)  # no .env from the developer's checkout
    for key in (
        "VIDEO_API_KEY",
        "OPENAI_API_KEY",
        "DISCORD_TOKEN",
        "HTTP_PORT",
        "WEBHOOK_SECRET",
        "LOG_LEVEL",
    ):
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
    with pytest.raises(ConfigError, match="postgresql://USER:PASSWORD@HOST:5432/DB"):
        sqlite_path("mysql://localhost/videobot")


def test_a_postgresql_url_selects_postgresql_and_its_password_stays_out_of_the_repr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot:s3cret-pw%21@db:5432/videobot")
    chosen = settings(monkeypatch, tmp_path)
    assert chosen.uses_postgres and chosen.database_password == "s3cret-pw!"
    assert "s3cret" not in repr(chosen) and "s3cret" not in str(chosen)


def test_a_fresh_install_uses_the_built_in_renderer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VIDEO_API_BASE_URL", raising=False)
    assert settings(monkeypatch, tmp_path).uses_local_api
    assert settings(monkeypatch, tmp_path, VIDEO_API_BASE_URL="").uses_local_api
    assert settings(monkeypatch, tmp_path, VIDEO_API_BASE_URL=" Local ").uses_local_api
    assert not settings(monkeypatch, tmp_path, VIDEO_API_BASE_URL="http://litellm:4000/v1").uses_local_api


def test_http_server_listens_on_loopback_unless_told(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HTTP_HOST", raising=False)
    assert settings(monkeypatch, tmp_path).http_host == "127.0.0.1"
    assert settings(monkeypatch, tmp_path, HTTP_HOST="0.0.0.0").http_host == "0.0.0.0"


@pytest.mark.parametrize(("given", "level"), [("info", "INFO"), ("Debug", "DEBUG"), (" warning ", "WARNING")])
def test_log_level_in_any_case(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, given: str, level: str
) -> None:
    assert settings(monkeypatch, tmp_path, LOG_LEVEL=given).log_level == level


def test_a_wrong_log_level_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="log_level"):
        settings(monkeypatch, tmp_path, LOG_LEVEL="loud")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://user:pw@litellm:4000/v1", "http://litellm:4000/v1"),
        (
            "cannot connect to https://sk-abc@api.example/v1: refused",
            "cannot connect to https://api.example/v1: refused",
        ),
        ("https://example.com/a@b and wss://x:y@gw/", "https://example.com/a@b and wss://gw/"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ],
)
def test_credentials_are_stripped_from_urls(text: str, shown: str) -> None:
    assert redact_urls(text) == shown


def test_the_docker_images_data_paths_win_over_the_example_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The image's ENV plus `--env-file .env` (a copy of .env.example): Docker puts both in the
    environment, the file's values last; what the file leaves out keeps the image's value."""
    repo = Path(__file__).resolve().parents[2]
    dockerfile = (repo / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    for line in dockerfile.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                monkeypatch.setenv(key, value)
    example = (repo / ".env.example").read_text(encoding="utf-8")
    for line in example.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # the image has no .env file of its own
    s = Settings()
    assert s.database_path == Path("/data/videobot.db") and s.data_dir == Path("/data")
    assert s.http_port == 8080 and s.http_host == "0.0.0.0"
    assert s.uses_local_api and s.log_level == "INFO"
