"""At ``LOG_LEVEL=DEBUG`` the real bot process logs everything discord.py, aiosqlite and aiohttp
have to say, and still no credential: a whole job (slash command, deferred answer, progress edits,
a provider webhook, upload) and a second command, then the entire log is searched for every secret
the run involved."""

from __future__ import annotations

import base64
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.http.links import KEY_META
from bot.localapi import LocalRenderer
from tests.e2e.conftest import BotProcess, is_final, mp4_uploads, renderer_config
from tests.fakes.discord import FakeDiscord
from tests.helpers import READY, free_port

WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
PROVIDER_KEY = "sk-proj-" + secrets.token_urlsafe(32)
# Shaped like a real bot token (base64 user id . timestamp . HMAC), unlike the fake's default.
BOT_TOKEN = f"MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.{secrets.token_urlsafe(4)}.{secrets.token_urlsafe(27)}"


@pytest.fixture
def http_port() -> int:
    return free_port()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=BOT_TOKEN) as server:
        yield server
        assert server.internal_errors == []


@pytest.fixture
async def renderer(tmp_path: Path, http_port: int) -> AsyncIterator[LocalRenderer]:
    """Requires the provider key, and signs a webhook to the bot for each finished video."""
    config = renderer_config(
        tmp_path,
        api_key=PROVIDER_KEY,
        webhook_url=f"http://127.0.0.1:{http_port}/webhooks/videos",
        webhook_secret=WEBHOOK_SECRET,
    )
    async with LocalRenderer(config) as server:
        yield server


async def test_a_debug_log_of_a_whole_job_contains_no_secret(
    bot: BotProcess, fake: FakeDiscord, http_port: int
) -> None:
    bot.env.update(
        {
            "LOG_LEVEL": "DEBUG",
            "VIDEO_API_KEY": PROVIDER_KEY,
            "HTTP_PORT": str(http_port),
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{http_port}",  # makes the bot create its link key
        }
    )
    await bot.start()
    mark = fake.mark()
    video = await fake.invoke_command("video", {"prompt": "a paper boat on a river", "seconds": 4})
    await video.original_message(timeout=60, predicate=is_final(READY))
    assert len(mp4_uploads(fake, mark)) == 1
    await bot.wait_log("video.completed for video")  # the signed webhook was received and verified
    quota = await fake.invoke_command("quota")
    await quota.wait_response()
    await bot.stop()

    with sqlite3.connect(bot.database) as db:
        (link_key,) = db.execute("SELECT value FROM meta WHERE key = ?", (KEY_META,)).fetchone()
    log = bot.log()
    # The log really is a DEBUG log of this run: the places the secrets used to show up are in it.
    for evidence in ("WebSocket Event", "INTERACTION_CREATE", "executing", "INSERT INTO jobs"):
        assert evidence in log, f"no {evidence!r} in the DEBUG log"
    leaks = {
        "the bot token": BOT_TOKEN,
        "the provider key": PROVIDER_KEY,
        "the webhook secret": WEBHOOK_SECRET,
        "the webhook secret's key": WEBHOOK_SECRET.removeprefix("whsec_"),
        "the media-link key": link_key,
        "the /video interaction token": video.token,
        "the /quota interaction token": quota.token,
    }
    found = {name: log.count(value) for name, value in leaks.items() if value in log}
    print(f"\nDEBUG log: {len(log.splitlines())} lines, {log.count('***')} masked values, leaks: {found}")
    assert found == {}
    assert "aW50ZXJhY3Rpb246" not in log  # no interaction token at all, not only these two
