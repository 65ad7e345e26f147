"""Remix, history and the buttons on results, end to end: the buttons on a card keep working after
the real bot process restarts. The rest of the remix flow runs in-process: tests/cog/test_remix_flow.py."""

from __future__ import annotations

from tests.e2e.conftest import BotProcess
from tests.fakes.discord import FakeDiscord
from tests.fakes.provider import InstrumentedRenderer
from tests.flows import (  # re-exported: other tests import these helpers from here
    MODAL,
    UPDATE_MESSAGE,
    allow_back_to_back_requests,
    buttons,
    creates,
    embed_of,
    ephemeral_text,
    field_value,
    is_final,
    job_number,
    job_row,
    make_video,
    mp4_uploads,
    no_pings,
    provider_saw_prompt,
    recorded_as_delivered,
    seed_jobs,
)
from tests.helpers import EPHEMERAL, READY

__all__ = [
    "MODAL",
    "UPDATE_MESSAGE",
    "allow_back_to_back_requests",
    "buttons",
    "creates",
    "embed_of",
    "ephemeral_text",
    "field_value",
    "is_final",
    "job_number",
    "job_row",
    "make_video",
    "mp4_uploads",
    "no_pings",
    "provider_saw_prompt",
    "recorded_as_delivered",
    "seed_jobs",
]


async def test_buttons_keep_working_after_a_restart(
    bot: BotProcess, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await bot.start()
    await allow_back_to_back_requests(fake)
    old = await make_video(fake, "lanterns over a harbour")
    old_job = job_number(old)
    await recorded_as_delivered(bot, old_job)
    await bot.stop()
    await bot.start(expect_sync=False)  # the command hash matches, so nothing is re-synced

    details = await fake.invoke_component(old, f"videobot:details:{old_job}")
    callback = await details.wait_response(timeout=10)
    assert callback.json["type"] == 4 and callback.json["data"]["flags"] & EPHEMERAL
    card = callback.json["data"]["embeds"][0]
    assert card["title"] == f"Job #{old_job}" and card["description"] == "lanterns over a harbour"
    assert (field_value(card, "Provider video id") or "").startswith("`video_")
    assert field_value(card, "Cost") == "4 credits (~$0.40)"
    assert "Requested: <t:" in (field_value(card, "Timings") or "")

    again = await fake.invoke_component(old, f"videobot:again:{old_job}")
    fresh = await again.original_message(timeout=60, predicate=is_final(READY))
    assert embed_of(fresh)["description"] == "lanterns over a harbour"
    assert job_number(fresh) != old_job
    assert creates(renderer) == ["/v1/videos", "/v1/videos"]
    quota = await ephemeral_text(await fake.invoke_command("quota"))
    assert "**52** credits left of 60" in quota  # 4 for each video, charged as usual

    # Again goes through the same limits as /video: without credits it is refused, privately.
    await recorded_as_delivered(bot, job_number(fresh))
    moderator = int(fake.owner_user["id"])
    member = int(fake.default_user["id"])
    assert "set to 8 credits" in await ephemeral_text(
        await fake.invoke_command("videomod setquota", {"user": member, "credits": 8}, user=moderator)
    )
    refusal = await ephemeral_text(await fake.invoke_component(fresh, f"videobot:again:{job_number(fresh)}"))
    assert refusal.startswith("This needs 4 credits; you have 0 left.")
    assert creates(renderer) == ["/v1/videos", "/v1/videos"]
