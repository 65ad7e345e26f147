"""Nothing is lost on a crash: SIGKILL the real bot at the worst moments, restart it, and check that
every job is delivered exactly once and charged exactly once."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.e2e.conftest import BotProcess, hold, is_final, mp4_uploads, provider_saw_prompt, release
from tests.fakes.discord import FakeDiscord
from tests.fakes.provider import InstrumentedRenderer
from tests.helpers import READY


async def wait_exit(bot: BotProcess, timeout: float = 60) -> int:  # noqa: ASYNC109
    assert bot.proc is not None
    async with asyncio.timeout(timeout):
        return await bot.proc.wait()


async def credits_left(fake: FakeDiscord) -> str:
    reply = await (await fake.invoke_command("quota")).wait_response()
    return str(reply.json["data"]["content"]).splitlines()[0]


@pytest.mark.parametrize(
    "crash_at",
    ["before_create", "after_create_before_store", "during_download", "after_upload_before_record"],
)
async def test_sigkill_at_a_crash_point_then_restart_delivers_once(
    bot: BotProcess, fake: FakeDiscord, renderer: InstrumentedRenderer, crash_at: str
) -> None:
    bot.env["VIDEOBOT_CRASH_AT"] = crash_at
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": f"crash {crash_at}"})
    await handle.original_message(timeout=30, predicate=lambda m: bool(m.embeds))
    assert await wait_exit(bot) == -signal.SIGKILL
    assert f"crash point '{crash_at}' reached" in bot.log()

    del bot.env["VIDEOBOT_CRASH_AT"]
    await bot.start(expect_sync=False)
    final = await handle.original_message(timeout=60, predicate=is_final(READY))
    assert len(mp4_uploads(fake)) == 1
    assert final.attachments[0].filename.endswith(".mp4")
    creates = [r for r in renderer.requests if r.method == "POST" and r.path == "/v1/videos"]
    assert len(creates) == 1, [r.path for r in renderer.requests]
    assert await credits_left(fake) == "**56** credits left of 60 (server default)"


async def test_sigkill_mid_generation_then_restart_delivers_once(
    bot: BotProcess, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    hold(renderer)
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": "killed while generating"})
    await handle.original_message(
        timeout=30, predicate=lambda m: "Generating" in str(m.embeds[0]) if m.embeds else False
    )
    assert bot.proc is not None
    bot.proc.kill()
    assert await wait_exit(bot) == -signal.SIGKILL
    mark = fake.mark()
    await bot.start(expect_sync=False)
    release(renderer)
    await handle.original_message(timeout=60, predicate=is_final(READY))
    assert len(mp4_uploads(fake)) == 1
    # Same command definitions: the restart did not spend Discord's sync rate limit.
    assert not any(r.method == "PUT" and "commands" in (r.route or "") for r in fake.requests[mark:])
    assert "application commands unchanged; not syncing" in bot.log()
    assert provider_saw_prompt(renderer, "killed while generating")
    assert sum(1 for r in renderer.requests if r.method == "POST") == 1
    assert await credits_left(fake) == "**56** credits left of 60 (server default)"


async def test_sigterm_shuts_down_gracefully_and_the_job_resumes(
    bot: BotProcess, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    hold(renderer)
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": "interrupted politely"})
    await handle.original_message(timeout=30, predicate=lambda m: bool(m.embeds))
    started = time.monotonic()
    code = await bot.stop(signal.SIGTERM, timeout=15)
    assert code == 0
    assert time.monotonic() - started < 10
    assert "shutting down" in bot.log()
    mark = fake.mark()
    await bot.start(expect_sync=False)
    release(renderer)
    await handle.original_message(timeout=60, predicate=is_final(READY))
    assert len(mp4_uploads(fake)) == 1
    # Same command definitions: the restart did not spend Discord's sync rate limit.
    assert not any(r.method == "PUT" and "commands" in (r.route or "") for r in fake.requests[mark:])
    assert "application commands unchanged; not syncing" in bot.log()
