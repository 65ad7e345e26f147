"""Credits and moderator commands through the fake Discord, the whole bot in-process (tests/inprocess.py)."""

from __future__ import annotations

from tests.fakes.discord import FakeDiscord
from tests.fakes.provider import InstrumentedRenderer
from tests.flows import embed_of, is_final, provider_saw_prompt
from tests.helpers import READY, wait_for
from tests.inprocess import InProcessBot


async def reply_text(handle: object) -> str:
    callback = await handle.wait_response(timeout=10)  # type: ignore[attr-defined]
    data = callback.json.get("data") or {}
    assert data.get("flags", 0) & 64, "moderator and quota replies are ephemeral"
    return str(data.get("content") or "")


async def test_moderator_limit_refuses_an_overspend_before_the_provider_sees_it(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await bot.start()
    moderator = int(fake.owner_user["id"])
    member = int(fake.default_user["id"])
    text = await reply_text(
        await fake.invoke_command("videomod setquota", {"user": member, "credits": 10}, user=moderator)
    )
    assert "set to 10 credits" in text and "**10** credits left of 10" in text

    eight = await fake.invoke_command("video", {"prompt": "eight seconds of rain", "seconds": 8}, user=member)
    await eight.original_message(timeout=30, predicate=lambda m: bool(m.embeds))
    await wait_for(lambda: provider_saw_prompt(renderer, "eight seconds of rain"), "the 8 s job to be sent")
    posts_before = sum(1 for r in renderer.requests if r.method == "POST")

    four = await fake.invoke_command("video", {"prompt": "four more", "seconds": 4}, user=member)
    refusal = await reply_text(four)
    assert refusal.startswith("This needs 4 credits; you have 2 left. Your credits reset <t:")
    assert sum(1 for r in renderer.requests if r.method == "POST") == posts_before
    assert all(
        not isinstance(r.json_body, dict) or r.json_body.get("prompt") != "four more"
        for r in renderer.requests
    )

    await eight.original_message(timeout=60, predicate=is_final(READY))

    async def settled_quota() -> str | None:
        # The bot records a delivery (the reservation becomes a charge) right after the upload the
        # member sees: /quota agrees a moment later.
        text = await reply_text(await fake.invoke_command("quota", user=member))
        return text if "reserved 0" in text else None

    quota = await wait_for(settled_quota, "/quota to show the delivery charged", interval=0.05)
    assert "**2** credits left of 10 (set by a moderator)" in quota
    assert "Used 8 · reserved 0" in quota


async def test_channel_allowlist_grant_cancel_and_usage(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    renderer.config.generation_seconds = 30  # long enough to cancel mid-flight
    await bot.start()
    moderator = int(fake.owner_user["id"])
    member = int(fake.default_user["id"])
    videos = fake.add_channel("videos")
    text = await reply_text(
        await fake.invoke_command("videomod settings", {"channels": f"<#{videos['id']}>"}, user=moderator)
    )
    assert text == ""  # the settings card is an embed
    wrong = await reply_text(await fake.invoke_command("video", {"prompt": "here?"}, user=member))
    assert wrong == f"Videos can't be made in this channel. Use <#{videos['id']}>."

    job = await fake.invoke_command(
        "video", {"prompt": "long one"}, user=member, channel_id=int(videos["id"])
    )
    card = await job.original_message(timeout=30, predicate=lambda m: bool(m.embeds))
    job_number = int(embed_of(card)["footer"]["text"].split("#")[1])
    await wait_for(lambda: provider_saw_prompt(renderer, "long one"), "the job to reach the provider")
    text = await reply_text(await fake.invoke_command("videomod cancel", {"job": job_number}, user=moderator))
    assert text == f"Cancelled job #{job_number} of <@{member}>; 4 credits refunded."
    cancelled = await job.original_message(timeout=30, predicate=is_final("⏹️ Cancelled"))
    assert "Nothing was charged" in str(embed_of(cancelled))
    # The job was deleted at the provider too, so it stops costing money.
    await wait_for(lambda: any(r.method == "DELETE" for r in renderer.requests), "a provider DELETE")

    await reply_text(
        await fake.invoke_command("videomod grant", {"user": member, "credits": 5}, user=moderator)
    )
    quota = await reply_text(await fake.invoke_command("quota", user=member))
    assert "**65** credits left of 60" in quota and "granted 5" in quota

    usage = await fake.invoke_command("videomod usage", user=moderator)
    callback = await usage.wait_response()
    assert callback.files and callback.files[0].filename.endswith(".csv")
    csv_text = callback.files[0].data.decode()
    assert "model,sora-2,cancelled,refunded,1,4,4" in csv_text
