"""Slash commands through the real command tree, in-process (see conftest.py): replies, refusals and
who may do what, checked on the HTTP requests discord.py sent. Much faster than a bot subprocess."""

from __future__ import annotations

from bot.discord.bot import VideoBot
from tests.fakes.discord import FakeDiscord, InteractionHandle
from tests.fakes.provider import InstrumentedRenderer
from tests.helpers import READY, ephemeral_content


async def reply(handle: InteractionHandle) -> str:
    return ephemeral_content((await handle.wait_response(timeout=10)).json)


async def test_quota_shows_the_default_allowance_privately(videobot: VideoBot, fake: FakeDiscord) -> None:
    text = await reply(await fake.invoke_command("quota"))
    assert text.splitlines()[0] == "**60** credits left of 60 (server default)"


async def test_refusals_are_ephemeral_and_nothing_reaches_the_provider(
    videobot: VideoBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    bad_combo = await fake.invoke_command("video", {"prompt": "x", "model": "sora-2", "size": "1792x1024"})
    assert "Sizes it supports: 720x1280, 1280x720" in await reply(bad_combo)

    blank = await fake.invoke_command("video", {"prompt": "   "})
    assert "The prompt is empty" in await reply(blank)

    text = await fake.invoke_command(
        "video", {"prompt": "x"}, attachments={"image": (b"hello, not an image", "notes.png", "image/png")}
    )
    assert (await text.wait_response()).json["type"] == 5  # the file is read after the acknowledgement
    refusal = await text.wait_followup(timeout=10)
    # Only the member sees it: a public refusal would fail here whatever its wording.
    assert refusal.ephemeral, "the refusal must be ephemeral (flag 64)"
    assert "isn't an image" in refusal.content.lower(), refusal.content
    assert any(r.method == "DELETE" for r in text.requests()), "the public placeholder must go away"
    assert len(renderer.requests) == 0


async def test_bad_input_gets_a_one_line_answer(videobot: VideoBot, fake: FakeDiscord) -> None:
    text = await reply(
        await fake.invoke_command("video", {"prompt": "x", "model": "sora-2", "size": "1024x1792"})
    )
    assert text == "`sora-2` can't make 1024x1792 videos. Sizes it supports: 720x1280, 1280x720."
    assert await reply(await fake.invoke_command("video", {"prompt": "x"}, dm=True)) == (
        "This command works in servers only, not in direct messages."
    )
    moderator = int(fake.owner_user["id"])
    text = await reply(await fake.invoke_command("videomod cancel", {"job": 999_999}, user=moderator))
    assert text == "There is no job #999999 in this server. `/videomod jobs` lists them."


async def test_non_moderator_is_refused_in_code(videobot: VideoBot, fake: FakeDiscord) -> None:
    member = int(fake.default_user["id"])
    # Even if an admin opened the command to everyone, the bot checks who is asking.
    handle = await fake.invoke_command(
        "videomod grant", {"user": member, "credits": 1000}, user=member, ignore_default_permissions=True
    )
    assert "Only moderators can use /videomod" in await reply(handle)
    assert "**60** credits left of 60" in await reply(await fake.invoke_command("quota", user=member))


async def test_details_button_answers_its_owner_privately_and_refuses_others(
    videobot: VideoBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    handle = await fake.invoke_command("video", {"prompt": "a lantern at dusk"})
    done = await handle.original_message(
        timeout=30, predicate=lambda m: bool(m.embeds) and m.embeds[0]["title"] == READY
    )
    job = int(done.embeds[0]["footer"]["text"].split("#")[1])

    details = await fake.invoke_component(done, f"videobot:details:{job}")
    callback = (await details.wait_response(timeout=10)).json
    ephemeral_content(callback)
    card = callback["data"]["embeds"][0]
    assert card["title"] == f"Job #{job}" and card["description"] == "a lantern at dusk"

    bob = int(fake.add_member(name="bob")["user"]["id"])
    refusal = await reply(await fake.invoke_component(done, f"videobot:details:{job}", user=bob))
    assert refusal.startswith(f"This is <@{fake.default_user['id']}>'s video: only they or a moderator")
    assert sum(1 for r in renderer.requests if r.method == "POST") == 1
