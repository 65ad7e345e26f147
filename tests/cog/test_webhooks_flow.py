"""Push-driven status through the whole bot (in-process, tests/inprocess.py): the local renderer signs ``video.completed`` and posts it to the real
bot's ``/webhooks/videos``; the bot delivers long before its (30 s) poll would have noticed."""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import E2E_RENDERER
from tests.fakes.discord import FakeDiscord
from tests.fakes.provider import InstrumentedRenderer
from tests.flows import embed_of, field_value, is_final, mp4_uploads
from tests.helpers import READY, free_port, wait_for
from tests.inprocess import InProcessBot

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
POLL_INTERVAL_SECONDS = 30.0
GENERATION_SECONDS = 2.0


@pytest.fixture
def webhook_port() -> int:
    return free_port()


@pytest.fixture
def renderer_settings(webhook_port: int) -> dict[str, Any]:
    """The renderer sends signed events to the bot, and suggests no poll interval
    (``openai-poll-after-ms``) so the bot's own 30 s interval is the only polling cadence."""
    return {
        **E2E_RENDERER,
        "generation_seconds": GENERATION_SECONDS,
        "poll_after_ms": None,
        "webhook_url": f"http://127.0.0.1:{webhook_port}/webhooks/videos",
        "webhook_secret": SECRET,
    }


async def healthz(port: int) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as resp,
    ):
        return resp.status, await resp.json()


async def wait_healthy(port: int, timeout: float = 15.0) -> dict[str, Any]:  # noqa: ASYNC109
    """/healthz turns ok once the gateway session is ready; bounded."""

    async def healthy() -> dict[str, Any] | None:
        status, body = await healthz(port)
        return body if status == 200 else None

    return await wait_for(healthy, f"/healthz on port {port} to answer 200", timeout=timeout, interval=0.05)


def status_requests(renderer: InstrumentedRenderer) -> list[str]:
    """GET /videos (list) and GET /videos/{id} (retrieve); downloads are not status requests."""
    return [
        r.path
        for r in renderer.requests
        if r.method == "GET" and r.path.startswith("/v1/videos") and not r.path.endswith("/content")
    ]


async def test_a_webhook_makes_delivery_prompt_without_polling(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer, webhook_port: int
) -> None:
    bot.env.update(
        {
            "HTTP_PORT": str(webhook_port),
            "WEBHOOK_SECRET": SECRET,
            "POLL_INTERVAL_SECONDS": str(POLL_INTERVAL_SECONDS),
        }
    )
    await bot.start()
    await bot.wait_log("HTTP server on port")
    health = await wait_healthy(webhook_port)
    assert [(s["id"], s["connected"]) for s in health.pop("shards")] == [(0, True)]
    assert health == {"status": "ok", "database": True, "gateway": True, "tracker": True}

    mark = fake.mark()
    invoked_at = time.monotonic()
    handle = await fake.invoke_command("video", {"prompt": "a lighthouse in a storm", "seconds": 4})
    # The wait is bounded well below one poll interval: only the webhook can finish the job in time.
    await handle.original_message(timeout=POLL_INTERVAL_SECONDS * 0.6, predicate=is_final(READY))
    elapsed = time.monotonic() - invoked_at

    assert len(mp4_uploads(fake, mark)) == 1
    await bot.wait_log("video.completed for video")  # the receiver accepted the renderer's event
    assert elapsed < GENERATION_SECONDS + 8, f"delivered {elapsed:.1f}s after the request"
    polled = status_requests(renderer)
    print(
        f"\nstatus requests for one webhook-driven job: {len(polled)} {polled}; delivered in {elapsed:.1f}s"
    )
    assert len(polled) <= 3, polled
    assert SECRET.removeprefix("whsec_") not in bot.log()


async def test_a_failure_webhook_is_explained_promptly(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer, webhook_port: int
) -> None:
    bot.env.update(
        {
            "HTTP_PORT": str(webhook_port),
            "WEBHOOK_SECRET": SECRET,
            "POLL_INTERVAL_SECONDS": str(POLL_INTERVAL_SECONDS),
        }
    )
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": "something forbidden"})
    final = await handle.original_message(
        timeout=POLL_INTERVAL_SECONDS * 0.6, predicate=is_final("❌ The video could not be made")
    )
    await bot.wait_log("video.failed for video")
    # The event says only "failed"; the reason comes from the provider, looked up once.
    assert "safety system declined" in (field_value(embed_of(final), "What happened") or "")
    assert len(status_requests(renderer)) <= 3


async def test_without_a_secret_webhooks_are_off_but_healthz_answers(
    bot: InProcessBot, webhook_port: int
) -> None:
    bot.env.update({"HTTP_PORT": str(webhook_port)})
    await bot.start()
    await bot.wait_log("webhooks are off")
    await wait_healthy(webhook_port)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{webhook_port}/webhooks/videos", data=b"{}") as resp,
    ):
        assert resp.status == 404
