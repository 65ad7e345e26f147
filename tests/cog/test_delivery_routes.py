"""Which Discord routes the bot writes through, and that it keeps within Discord's buckets: the real
bot in-process against the fake Discord with Discord's limits switched on (per channel 5 per 5 s,
per interaction token 5 per 2 s, global 50 per s for bot-token routes)."""

from __future__ import annotations

import asyncio

import pytest

from bot.discord.bot import VideoBot
from tests.fakes.discord import (
    ROUTE_CHANNEL_MESSAGE,
    ROUTE_ORIGINAL,
    FakeDiscord,
    InteractionHandle,
    RecordedRequest,
    StoredMessage,
)
from tests.helpers import READY

# A token this old is still valid for 30 s at Discord, inside the bot's safety margin: the bot must
# already have switched to the channel route.
OLD_TOKEN_SECONDS = 15 * 60 - 30


@pytest.fixture
def limited(fake: FakeDiscord) -> FakeDiscord:
    fake.channel_message_limit = (5, 5.0)
    fake.webhook_message_limit = (5, 2.0)
    fake.global_limit = (50, 1.0)
    return fake


async def start_video(fake: FakeDiscord, channel_id: int, *, token_age: float = 0.0) -> InteractionHandle:
    fake.interaction_age_seconds = token_age
    member = int(fake.add_member(name="member")["user"]["id"])
    try:
        return await fake.invoke_command(
            "video", {"prompt": "a kite over the dunes"}, user=member, channel_id=channel_id
        )
    finally:
        fake.interaction_age_seconds = 0.0


async def delivered(handle: InteractionHandle) -> StoredMessage:
    message = await handle.original_message(
        timeout=60, predicate=lambda m: bool(m.embeds) and m.embeds[0]["title"] == READY
    )
    assert any(a.filename.endswith(".mp4") for a in message.attachments)
    return message


def writes(fake: FakeDiscord) -> list[RecordedRequest]:
    return [
        r
        for r in fake.requests
        if r.method in ("PATCH", "POST") and r.route != "/interactions/{webhook_id}/{webhook_token}/callback"
    ]


async def test_edits_use_the_interaction_token_while_it_is_valid_and_the_channel_route_after(
    videobot: VideoBot, limited: FakeDiscord
) -> None:
    fake = limited
    channel = fake.channel_id
    fresh = await start_video(fake, channel)
    old = await start_video(fake, channel, token_age=OLD_TOKEN_SECONDS)
    fresh_message, old_message = await asyncio.gather(delivered(fresh), delivered(old))

    fresh_writes = [
        r
        for r in writes(fake)
        if r.params.get("webhook_token") == fresh.token or r.params.get("message_id") == str(fresh_message.id)
    ]
    assert fresh_writes and all(
        r.route == ROUTE_ORIGINAL or "webhook_token" in r.params for r in fresh_writes
    )
    assert any(r.files for r in fresh_writes)  # the video went through the interaction route too

    old_edits = [r for r in writes(fake) if r.params.get("message_id") == str(old_message.id)]
    uploads = [r for r in old_edits if r.files]
    assert uploads and all(r.route == ROUTE_CHANNEL_MESSAGE for r in uploads)
    # Past the first card, nothing more went through the old token: no edit was refused for it.
    assert not [r for r in fake.requests if r.params.get("webhook_token") == old.token and r.status == 401]
    assert fake.rate_limited_count == 0


async def test_a_busy_channel_gets_every_video_without_a_single_429(
    videobot: VideoBot, limited: FakeDiscord
) -> None:
    """Eight members in one channel at once, six of them on the shared channel bucket (old tokens),
    progress edits every 0.2 s: every video arrives, and Discord never had to refuse a request."""
    fake = limited
    channel = fake.channel_id
    handles = [await start_video(fake, channel, token_age=OLD_TOKEN_SECONDS) for _ in range(6)]
    handles += [await start_video(fake, channel) for _ in range(2)]
    messages = await asyncio.gather(*(delivered(h) for h in handles))

    assert len({m.id for m in messages}) == 8, [
        (h.id, m.id, m.interaction_id) for h, m in zip(handles, messages, strict=True)
    ]
    channel_writes = [r for r in writes(fake) if r.route == ROUTE_CHANNEL_MESSAGE]
    assert len(channel_writes) >= 6  # the old tokens' cards really shared the channel bucket
    assert fake.rate_limited_count == 0, fake.rate_limited_by_kind
    assert videobot.presenter.scheduler.stats.finals >= 8
