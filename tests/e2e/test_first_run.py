"""A new admin's first minutes: the real ``videobot`` process, the fake Discord, nothing else.

A wrong token or an unreachable Discord must end the process at once with one line saying what to
fix; a bot started with nothing but a token makes demo videos with the built-in renderer and says
so on the card; the Docker health check answers for a running bot and fails plainly without one.
"""

from __future__ import annotations

import asyncio
import re
import socket
import sys
import time
from pathlib import Path

from tests.e2e.conftest import BotProcess, embed_of, is_final
from tests.fakes.discord import FakeDiscord

LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


async def videobot(
    *args: str,
    env: dict[str, str],
    cwd: Path,
    timeout: float = 30,  # noqa: ASYNC109 - the subprocess is killed when it expires
) -> tuple[int, str, str, float]:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"`videobot {' '.join(args)}` still running after {timeout}s") from None
    return proc.returncode or 0, out.decode(), err.decode(), time.monotonic() - started


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def not_logging(stderr: str) -> list[str]:
    """The lines on stderr that are not log records: what the command itself said."""
    return [line for line in stderr.splitlines() if line.strip() and not LOG_RECORD.match(line)]


async def test_a_refused_token_ends_run_with_one_line_naming_discord_token(
    bot: BotProcess, fake: FakeDiscord, tmp_path: Path
) -> None:
    env = bot.environment() | {"DISCORD_TOKEN": "not-the-right-token"}
    code, out, err, took = await videobot("run", env=env, cwd=tmp_path)

    assert code != 0 and took < 20, (code, took, err)
    assert "Traceback" not in err and out == ""
    said = not_logging(err)
    assert len(said) == 1, err
    assert "DISCORD_TOKEN" in said[0] and "Reset Token" in said[0] and said[0].startswith("error: ")
    # Nothing alarming around it: no voice-library warnings, no error records.
    assert not re.search(r" (WARNING|ERROR) ", err), err
    assert "not-the-right-token" not in err
    assert any(r.path.endswith("/users/@me") and r.status == 401 for r in fake.requests)


async def test_an_unreachable_discord_ends_run_with_one_line(bot: BotProcess, tmp_path: Path) -> None:
    port = closed_port()
    env = bot.environment() | {
        "DISCORD_API_BASE_URL": f"http://127.0.0.1:{port}/api/v10",
        "LOG_LEVEL": "warning",  # any case; at WARNING the one line is all there is
    }
    code, out, err, took = await videobot("run", env=env, cwd=tmp_path)

    assert code != 0 and took < 20 and out == "", (code, took, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: cannot reach Discord at http://127.0.0.1:{port}/api/v10 (")
    assert lines[0].endswith("check the network (and DISCORD_API_BASE_URL, if you set it).")
    assert "Traceback" not in err


async def test_with_only_a_token_the_bot_makes_demo_videos_and_says_so(
    bot: BotProcess, fake: FakeDiscord, tmp_path: Path
) -> None:
    # What a fresh .env gives: no VIDEO_API_BASE_URL, no MODELS_FILE.
    bot.env = {"VIDEO_API_BASE_URL": "", "MODELS_FILE": "", "LOCAL_GENERATION_SECONDS": "1"}
    await bot.start()
    await bot.wait_log(
        "videos from the built-in local renderer (demo renders; set VIDEO_API_BASE_URL for a real "
        "provider); built-in catalog (sora-2, sora-2-pro)"
    )
    assert "PyNaCl" not in bot.log() and "davey" not in bot.log()

    handle = await fake.invoke_command("video", {"prompt": "a lighthouse at dusk", "seconds": 4})
    final = await handle.original_message(timeout=60, predicate=is_final("🎬 Your video is ready"))
    footer = embed_of(final)["footer"]["text"]
    assert footer.startswith("Job #")
    assert "Demo render by the built-in renderer" in footer and "set VIDEO_API_BASE_URL" in footer
    assert final.attachments  # a real MP4, made locally


async def test_a_real_provider_is_named_without_its_credentials_and_cards_carry_no_demo_note(
    bot: BotProcess, fake: FakeDiscord, tmp_path: Path
) -> None:
    base = bot.renderer.base_url.replace("http://", "http://user:s3cret@")
    models = tmp_path / "models.toml"
    models.write_text(
        '[[models]]\nname = "sora-2"\nseconds = [4]\n[[models.rates]]\nsizes = ["720x1280"]\n'
        "credits_per_second = 1\n",
        encoding="utf-8",
    )
    bot.env = {"VIDEO_API_BASE_URL": base, "MODELS_FILE": str(models)}
    await bot.start()
    await bot.wait_log(f"videos from {bot.renderer.base_url}; MODELS_FILE {models} (sora-2)")
    assert "s3cret" not in bot.log()

    handle = await fake.invoke_command("video", {"prompt": "a lighthouse at dusk"})
    final = await handle.original_message(timeout=60, predicate=is_final("🎬 Your video is ready"))
    assert "Demo render" not in embed_of(final)["footer"]["text"]


async def test_healthcheck_answers_for_a_running_bot_and_fails_in_one_line_without_one(
    bot: BotProcess, tmp_path: Path
) -> None:
    bot.env = {"HTTP_PORT": str(closed_port())}
    await bot.start()
    await bot.wait_log("HTTP server on port")
    env = bot.environment()

    # /healthz turns ok once the gateway session is ready: what Docker's retries wait for, bounded.
    deadline = time.monotonic() + 30
    while True:
        code, out, err, _ = await videobot("healthcheck", env=env, cwd=tmp_path)
        if code == 0 or time.monotonic() > deadline:
            break
        assert code == 1 and len(err.splitlines()) == 1 and "HTTP 503 (not ok: gateway" in err, err
    assert code == 0, err
    assert out.splitlines() == [f"healthy: http://127.0.0.1:{env['HTTP_PORT']}/healthz answered HTTP 200"]

    assert await bot.stop() == 0
    code, out, err, _ = await videobot("healthcheck", env=env, cwd=tmp_path)
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("unhealthy: cannot reach http://127.0.0.1:"), err

    code, _, err, _ = await videobot("healthcheck", env=env | {"HTTP_PORT": ""}, cwd=tmp_path)
    assert code == 1 and err.strip() == (
        "unhealthy: HTTP_PORT is not set, so the bot serves no /healthz to check"
    )
