"""Cancel never refunds finished work (the whole bot in-process, tests/inprocess.py): a member presses Cancel after the provider has
made the video but before the bot noticed. The bot, the fake Discord, the local
renderer with its clock held by the test (its videos finish when the test says so) and a long
``POLL_INTERVAL_SECONDS`` without a suggested interval from the renderer (the bot doesn't look on
its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from tests.e2e.conftest import eventually, renderer_config
from tests.fakes.discord import FakeDiscord
from tests.fakes.provider import InstrumentedRenderer
from tests.flows import (
    buttons,
    ephemeral_text,
    is_final,
    job_number,
    job_row,
    mp4_uploads,
    recorded_as_delivered,
)
from tests.helpers import READY, ManualClock
from tests.inprocess import InProcessBot


class AnsweredStatusChecks:
    """The paths of the status checks (``GET /v1/videos/{id}``) the renderer has answered."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "GET" and request.path.count("/") == 3:
            self.paths.append(request.path)
        return response


@pytest.fixture
def provider_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def status_checks() -> AnsweredStatusChecks:
    return AnsweredStatusChecks()


@pytest.fixture
async def renderer(
    tmp_path: Path, provider_clock: ManualClock, status_checks: AnsweredStatusChecks
) -> AsyncIterator[InstrumentedRenderer]:
    # No ``openai-poll-after-ms`` suggestion: the bot checks at POLL_INTERVAL_SECONDS, set very long.
    config = renderer_config(
        tmp_path, clock=provider_clock, generation_seconds=2.0, queue_seconds=1.0, poll_after_ms=None
    )
    async with InstrumentedRenderer(config, middlewares=[status_checks.middleware]) as server:
        yield server


async def test_cancel_pressed_after_the_provider_finished_posts_the_video_and_charges_it(
    bot: InProcessBot,
    fake: FakeDiscord,
    renderer: InstrumentedRenderer,
    provider_clock: ManualClock,
    status_checks: AnsweredStatusChecks,
) -> None:
    bot.env["POLL_INTERVAL_SECONDS"] = "600"
    await bot.start()
    mark = fake.mark()
    running = await fake.invoke_command("video", {"prompt": "done before the cancel"})
    card = await running.original_message(timeout=30, predicate=lambda m: "Cancel" in buttons(m))
    job = job_number(card)
    await eventually(lambda: job_row(bot, job)["provider_video_id"] is not None, "the provider's video id")
    video_id = str(job_row(bot, job)["provider_video_id"])
    # The create's answer ("queued") is the job's first status; its first check is ten minutes away.
    await eventually(lambda: job_row(bot, job)["status"] == "queued", "the create's answer recorded")
    await renderer.wait_rendered(video_id)
    provider_clock.advance(10)
    assert renderer.video(video_id)["status"] == "completed"
    assert job_row(bot, job)["status"] == "queued"  # the bot hasn't noticed
    assert status_checks.paths == []

    reply = await ephemeral_text(await fake.invoke_component(card, f"videobot:cancel:{job}"))
    assert reply == (
        f"Job #{job} was already finished by the provider, so it can't be cancelled: "
        "it is being posted now and will be charged (4 credits)."
    )
    final = await running.original_message(timeout=60, predicate=is_final(READY))
    await recorded_as_delivered(bot, job)
    assert job_row(bot, job)["charge_state"] == "charged"
    assert [a.filename for a in final.attachments] == [f"video-{job}.mp4"]
    assert len(mp4_uploads(fake, mark)) == 1
    assert "**56** credits left of 60" in await ephemeral_text(await fake.invoke_command("quota"))
    assert not any(r.method == "DELETE" for r in renderer.requests)  # the finished work was kept
