"""Remix, history and the buttons on results: the whole bot in-process (tests/inprocess.py), the fake
Discord over its gateway and the local renderer. Buttons are pressed and forms submitted the way
Discord would send them. (That the buttons survive a restart of the process: tests/e2e.)"""

from __future__ import annotations

import aiohttp

from bot.domain.jobs import JobStatus
from tests.fakes.discord import FakeDiscord, StoredMessage
from tests.fakes.provider import InstrumentedRenderer
from tests.flows import (
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
from tests.helpers import CANCELLED, EPHEMERAL, FAILED, READY, wait_for
from tests.inprocess import InProcessBot


async def test_remix_button_opens_a_form_and_the_remix_links_to_its_source(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await bot.start()
    assert {c["name"] for c in fake.commands()} >= {"remix", "videos"}
    await allow_back_to_back_requests(fake)
    mark = fake.mark()
    source = await make_video(fake, "a red fox in snow")
    source_job = job_number(source)
    assert list(buttons(source)) == ["Remix", "Extend", "Edit", "Again", "Details"]
    source_video = job_row(bot, source_job)["provider_video_id"]

    pressed = await fake.invoke_component(source, buttons(source)["Remix"]["custom_id"])
    form = await pressed.modal()
    assert form["title"] == f"Remix video #{source_job}"
    submitted = await fake.submit_modal(form["custom_id"], {"prompt": "the fox turns blue"})
    assert (await submitted.wait_response()).json["type"] == 5  # acknowledged publicly, like /video
    remix = await submitted.original_message(timeout=60, predicate=is_final(READY))

    # The provider was asked to remix exactly the source video, with the new prompt.
    remixes = [r for r in renderer.requests if r.method == "POST" and r.path.endswith("/remix")]
    assert [(r.path, r.json_body) for r in remixes] == [
        (f"/v1/videos/{source_video}/remix", {"prompt": "the fox turns blue"})
    ]
    # The card shows where the remix came from, linking to the source's message.
    embed = embed_of(remix)
    assert embed["description"] == "the fox turns blue"
    lineage = field_value(embed, "Remix of") or ""
    link = f"https://discord.com/channels/{fake.guild_id}/{fake.channel_id}/{source.id}"
    assert lineage.startswith(f"[Job #{source_job}]({link})") and "a red fox in snow" in lineage
    assert field_value(embed, "Cost") == "4 credits"
    await recorded_as_delivered(bot, job_number(remix))
    row = job_row(bot, job_number(remix))
    assert (row["source_job_id"], row["remixed_from_video_id"]) == (source_job, source_video)
    assert (row["model"], row["size"], row["seconds"], row["charge_state"]) == (
        "sora-2",
        "720x1280",
        4,
        "charged",
    )
    assert [a.filename for a in remix.attachments] == [f"video-{row['id']}.mp4"]
    assert len(mp4_uploads(fake, mark)) == 2
    no_pings(fake, mark)


async def test_remix_autocomplete_offers_only_the_members_own_finished_videos(
    bot: InProcessBot, fake: FakeDiscord
) -> None:
    alice = int(fake.default_user["id"])
    bob = int(fake.add_member(name="bob")["user"]["id"])
    alices = await seed_jobs(bot, fake, alice, [f"alice clip {i}" for i in range(26)] + ["a fox on ice"])
    await seed_jobs(bot, fake, alice, ["a fox that failed"], status=JobStatus.FAILED)
    bobs = await seed_jobs(bot, fake, bob, ["bob's fox", "bob's boat"])
    await bot.start()

    offered = await (await fake.autocomplete("remix", {"video": ""}, user=alice)).choices()
    assert [c["value"] for c in offered] == sorted(alices, reverse=True)[:25]  # newest first, at most 25
    assert offered[0]["name"] == f"#{alices[-1]} · 4 s · a fox on ice"
    foxes = await (await fake.autocomplete("remix", {"video": "FOX"}, user=alice)).choices()
    assert [c["value"] for c in foxes] == [alices[-1]]
    theirs = await (await fake.autocomplete("remix", {"video": ""}, user=bob)).choices()
    assert sorted(c["value"] for c in theirs) == sorted(bobs)

    # Typing another member's job number by hand doesn't get around it.
    refusal = await ephemeral_text(
        await fake.invoke_command("remix", {"video": alices[0], "prompt": "mine now"}, user=bob)
    )
    assert refusal == (
        f"This is <@{alice}>'s video: only they or a moderator can remix it. "
        "Use `/remix` on one of your own videos."
    )


async def test_only_the_owner_or_a_moderator_can_use_the_buttons(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    renderer.config.generation_seconds = 30  # long enough to press Cancel mid-flight
    await bot.start()
    await allow_back_to_back_requests(fake)
    alice = int(fake.default_user["id"])
    bob = int(fake.add_member(name="bob")["user"]["id"])
    moderator = int(fake.owner_user["id"])
    mark = fake.mark()

    running = await fake.invoke_command("video", {"prompt": "a very long take"})
    card = await running.original_message(timeout=30, predicate=lambda m: "Cancel" in buttons(m))
    job = job_number(card)
    await wait_for(lambda: provider_saw_prompt(renderer, "a very long take"), "the job to reach the provider")

    refusal = await ephemeral_text(await fake.invoke_component(card, f"videobot:cancel:{job}", user=bob))
    assert refusal == f"This is <@{alice}>'s video: only they or a moderator can cancel it."
    assert job_row(bot, job)["status"] not in ("cancelled", "failed", "completed")
    assert not any(r.method == "DELETE" for r in renderer.requests)

    confirmation = await ephemeral_text(
        await fake.invoke_component(card, f"videobot:cancel:{job}", user=moderator)
    )
    assert confirmation == f"Cancelled job #{job} of <@{alice}>; 4 credits refunded."
    cancelled = await running.original_message(timeout=30, predicate=is_final(CANCELLED))
    assert "Nothing was charged" in str(embed_of(cancelled)) and buttons(cancelled) == {}
    await wait_for(lambda: any(r.method == "DELETE" for r in renderer.requests), "a provider DELETE")

    renderer.config.generation_seconds = 2
    done = await make_video(fake, "a short one")
    done_job = job_number(done)
    posts = len(creates(renderer))
    for label, verb in [("Remix", "remix it"), ("Again", "make it again"), ("Details", "see its details")]:
        pressed = await fake.invoke_component(done, buttons(done)[label]["custom_id"], user=bob)
        text = await ephemeral_text(pressed)  # an answer, not a form and not a new job
        assert text.startswith(f"This is <@{alice}>'s video: only they or a moderator can {verb}")
        assert pressed.callback_type == 4
    assert len(creates(renderer)) == posts
    assert job_row(bot, done_job)["status"] == "completed"
    # Bob's balance is untouched; Alice paid only for the delivered video.
    assert "**60** credits left of 60" in await ephemeral_text(await fake.invoke_command("quota", user=bob))
    assert "**56** credits left of 60" in await ephemeral_text(await fake.invoke_command("quota", user=alice))
    no_pings(fake, mark)  # the refusals name the owner, and must not ping her


async def test_videos_pages_with_buttons_only_its_owner_can_press(
    bot: InProcessBot, fake: FakeDiscord
) -> None:
    alice = int(fake.default_user["id"])
    bob = int(fake.add_member(name="bob")["user"]["id"])
    alices = await seed_jobs(bot, fake, alice, [f"alice video {i}" for i in range(11)])
    alices += await seed_jobs(bot, fake, alice, ["alice failure"], status=JobStatus.FAILED)
    await seed_jobs(bot, fake, bob, ["bob video"])
    await bot.start()
    mark = fake.mark()

    opened = await fake.invoke_command("videos", user=alice)
    assert (await opened.wait_response()).json["data"]["flags"] & EPHEMERAL
    listing = await opened.original_message()
    first = embed_of(listing)
    assert first["title"] == "Your videos · page 1 of 2 · 12 in all"
    lines = first["description"].splitlines()
    assert len(lines) == 10 and lines[0].startswith(f"`#{alices[-1]}` Failed · 4 credits, not charged")
    assert all("bob" not in line for line in lines)
    newest_done = job_row(bot, alices[-2])
    assert lines[1] == (
        f"`#{alices[-2]}` Done · 4 credits · alice video 10 · [open](https://discord.com/channels/"
        f"{fake.guild_id}/{fake.channel_id}/{newest_done['reply_message_id']})"
    )
    assert buttons(listing)["◀ Previous"].get("disabled") is True
    next_id = buttons(listing)["Next ▶"]["custom_id"]

    refusal = await ephemeral_text(await fake.invoke_component(listing, next_id, user=bob))
    assert refusal == "Only the member who opened this list can page through it. `/videos` shows yours."
    assert embed_of(listing)["title"].startswith("Your videos · page 1 of 2")

    paged = await fake.invoke_component(listing, next_id, user=alice)
    assert (await paged.wait_response()).json["type"] == UPDATE_MESSAGE  # the list itself changes
    second = embed_of(listing)
    assert second["title"] == "Your videos · page 2 of 2 · 12 in all"
    assert [line.split("`")[1] for line in second["description"].splitlines()] == [
        f"#{job_id}" for job_id in alices[1::-1]
    ]
    assert buttons(listing)["Next ▶"].get("disabled") is True
    back = await fake.invoke_component(listing, buttons(listing)["◀ Previous"]["custom_id"], user=alice)
    await back.wait_response()
    assert embed_of(listing)["title"].startswith("Your videos · page 1 of 2")
    no_pings(fake, mark)


async def test_a_remix_of_an_expired_or_deleted_source_is_refused_plainly_and_free(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await bot.start()
    await allow_back_to_back_requests(fake)
    source = await make_video(fake, "a paper boat on a stream")
    source_job = job_number(source)
    source_video = job_row(bot, source_job)["provider_video_id"]

    async def remix_refused(prompt: str) -> StoredMessage:
        handle = await fake.invoke_command("remix", {"video": source_job, "prompt": prompt})
        card = await handle.original_message(timeout=30, predicate=is_final(FAILED))
        embed = embed_of(card)
        assert field_value(embed, "What happened") == (
            "The provider no longer has the source video, so it can't be remixed."
        )
        assert field_value(embed, "Credits") == "Nothing was charged for this video."
        assert list(buttons(card)) == ["Details"]  # "Again" would only fail the same way
        assert job_row(bot, job_number(card))["charge_state"] == "refunded"
        return card

    renderer.config.asset_ttl_seconds = 0  # the provider's copy of the source has expired (400)
    await remix_refused("the boat in autumn")
    renderer.config.asset_ttl_seconds = 3600
    async with (  # deleted at the provider (404)
        aiohttp.ClientSession() as session,
        session.delete(f"{renderer.base_url}/videos/{source_video}") as response,
    ):
        assert response.status == 200
    await remix_refused("the boat at night")

    remix_paths = [p for p in creates(renderer) if p.endswith("/remix")]
    assert remix_paths == [f"/v1/videos/{source_video}/remix"] * 2
    quota = await ephemeral_text(await fake.invoke_command("quota"))
    assert "**56** credits left of 60" in quota  # only the source video was charged
