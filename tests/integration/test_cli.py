"""The ``videobot`` command line, run as a user would run it (a subprocess, no network)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.adapters.media import probe_video
from tests.fakes.discord import FakeDiscord

REPO = Path(__file__).resolve().parents[2]


def videobot(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "VIDEO_API", "OPENAI_"))}
    base.update(
        {
            "PYTHONPATH": str(REPO),
            "DATA_DIR": str(cwd / "data"),
            "DATABASE_URL": f"sqlite:///{cwd / 'bot.db'}",
            # The default 5 s between status checks would be most of a test's run time; the
            # renderer's own openai-poll-after-ms (1 s) still paces the polling.
            "POLL_INTERVAL_SECONDS": "0.2",
        }
    )
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=base,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_generate_with_the_local_renderer_writes_the_requested_mp4(tmp_path: Path) -> None:
    result = videobot(
        "generate",
        "a red fox in snow",
        "--seconds",
        "4",
        "--out",
        "fox.mp4",
        cwd=tmp_path,
        env={"VIDEO_API_BASE_URL": "local", "LOCAL_GENERATION_SECONDS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fox.mp4"
    assert "sora-2 · 720x1280 · 4 s · 4 credits" in result.stderr
    assert "100%" in result.stderr
    info = probe_video(tmp_path / "fox.mp4")
    assert (info.width, info.height, info.codec) == (720, 1280, "h264")
    assert info.duration == pytest.approx(4.0, abs=0.2)


def test_generate_explains_bad_input_and_moderation(tmp_path: Path) -> None:
    env = {"VIDEO_API_BASE_URL": "local", "LOCAL_GENERATION_SECONDS": "0.5"}
    bad = videobot("generate", "x", "--size", "1792x1024", cwd=tmp_path, env=env)
    assert bad.returncode == 2
    assert "error: `sora-2` can't make 1792x1024 videos. Sizes it supports: 720x1280, 1280x720." in bad.stderr
    blocked = videobot("generate", "something forbidden", cwd=tmp_path, env=env)
    assert blocked.returncode == 1
    assert "safety system declined this prompt" in blocked.stderr
    assert not (tmp_path / "video.mp4").exists()


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = videobot("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("run", "generate", "local-api", "check", "invite"):
        assert command in result.stdout


def test_run_without_a_token_says_what_to_do(tmp_path: Path) -> None:
    result = videobot("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "DISCORD_TOKEN is not set" in result.stderr and "Traceback" not in result.stderr


def test_invite_with_a_client_id(tmp_path: Path) -> None:
    result = videobot("invite", "--client-id", "123456789012345678", cwd=tmp_path)
    assert result.returncode == 0
    url = result.stdout.strip()
    assert url.startswith("https://discord.com/oauth2/authorize?client_id=123456789012345678")
    assert "scope=bot+applications.commands" in url
    assert "permissions=274878024704" in url  # view, send, threads, embed, attach, history


async def run_async(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "VIDEO_API", "OPENAI_"))}
    base.update(
        {
            "PYTHONPATH": str(REPO),
            "DATA_DIR": str(cwd / "data"),
            "DATABASE_URL": f"sqlite:///{cwd / 'bot.db'}",
        }
    )
    base.update(env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_check_reports_each_part_and_never_prints_secrets(tmp_path: Path, fake: FakeDiscord) -> None:
    env = {
        "DISCORD_TOKEN": fake.token,
        "DISCORD_API_BASE_URL": fake.api_base,
        "VIDEO_API_BASE_URL": "local",
    }
    code, out, _ = await run_async("check", cwd=tmp_path, env=env)
    assert code == 0, out
    assert "[ok] Discord" in out and "[ok] Videos API" in out and "[ok] database" in out
    assert "all checks passed" in out
    assert fake.token not in out

    invite_code, invite_out, _ = await run_async("invite", cwd=tmp_path, env=env)
    assert invite_code == 0 and f"client_id={fake.application_id}" in invite_out

    models = tmp_path / "models.toml"
    models.write_text("[[models]]\nname='x'\n", encoding="utf-8")
    env |= {
        "DISCORD_TOKEN": "wrong-secret-token",
        "MODELS_FILE": str(models),
        "VIDEO_API_BASE_URL": "http://127.0.0.1:9/v1",
        "WEBHOOK_SECRET": "not-a-whsec-secret",
        "HTTP_PORT": "8080",
    }
    code, out, _ = await run_async("check", cwd=tmp_path, env=env)
    assert code == 1
    assert "[FAIL] Discord" in out and "refused DISCORD_TOKEN" in out
    assert "[FAIL] model catalog" in out and "`seconds` must be a list" in out
    assert "[FAIL] Videos API" in out and "cannot connect" in out
    assert "[FAIL] webhooks" in out and "not a Standard Webhooks secret" in out
    assert "wrong-secret-token" not in out and "not-a-whsec-secret" not in out
