"""Limits are checked when Remix is pressed, before the form opens: nobody types a prompt only to be
refused. With the default settings (no cooldown) a member can remix right after a delivery."""

from __future__ import annotations

from bot.localapi import LocalRenderer
from tests.fakes.discord import FakeDiscord
from tests.flows import (
    MODAL,
    READY,
    buttons,
    creates,
    embed_of,
    ephemeral_text,
    is_final,
    job_number,
    job_row,
    make_video,
    recorded_as_delivered,
)
from tests.inprocess import InProcessBot


async def test_remix_right_after_a_delivery_with_default_settings_opens_the_form(
    bot: InProcessBot, fake: FakeDiscord, renderer: LocalRenderer
) -> None:
    await bot.start()
    source = await make_video(fake, "a kite over dunes")
    await recorded_as_delivered(bot, job_number(source))

    pressed = await fake.invoke_component(source, buttons(source)["Remix"]["custom_id"])
    form = await pressed.modal()
    assert pressed.callback_type == MODAL
    submitted = await fake.submit_modal(form["custom_id"], {"prompt": "the kite at sunset"})
    remix = await submitted.original_message(timeout=60, predicate=is_final(READY))
    assert embed_of(remix)["description"] == "the kite at sunset"
    assert [p for p in creates(renderer) if p.endswith("/remix")] == [
        f"/v1/videos/{job_row(bot, job_number(source))['provider_video_id']}/remix"
    ]


async def test_remix_pressed_without_credits_is_refused_on_the_press_with_no_form(
    bot: InProcessBot, fake: FakeDiscord, renderer: LocalRenderer
) -> None:
    await bot.start()
    moderator = int(fake.owner_user["id"])
    member = int(fake.default_user["id"])
    assert "set to 4 credits" in await ephemeral_text(
        await fake.invoke_command("videomod setquota", {"user": member, "credits": 4}, user=moderator)
    )
    source = await make_video(fake, "one video's worth")
    await recorded_as_delivered(bot, job_number(source))

    pressed = await fake.invoke_component(source, buttons(source)["Remix"]["custom_id"])
    refusal = await ephemeral_text(pressed)
    assert refusal.startswith("This needs 4 credits; you have 0 left.")
    assert pressed.callback_type == 4  # an answer, not a form (9)
    assert creates(renderer) == ["/v1/videos"]
