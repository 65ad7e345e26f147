"""Discord faults (the whole bot in-process, tests/inprocess.py): expired interaction tokens, deleted replies, rate limits, server
errors, a channel the bot can no longer post in, and a video over the upload limit."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from bot.adapters.media import probe_video
from tests.e2e.conftest import hold, release
from tests.fakes.discord import (
    ROUTE_CHANNEL_MESSAGE,
    ROUTE_CHANNEL_MESSAGES,
    ROUTE_WEBHOOK_MESSAGE,
    FakeDiscord,
)
from tests.fakes.provider import InstrumentedRenderer
from tests.flows import embed_of, field_value, is_final, mp4_uploads
from tests.helpers import READY, free_port
from tests.inprocess import InProcessBot


def probe(data: bytes, tmp_path: Path) -> tuple[int, int, float]:
    path = tmp_path / "delivered.mp4"
    path.write_bytes(data)
    info = probe_video(path)
    return info.width, info.height, info.duration


async def test_expired_token_switches_to_the_channel_route(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    hold(renderer)
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": "a long render"})
    await handle.original_message(timeout=30, predicate=lambda m: bool(m.embeds))
    # Discord: tokens last 15 minutes; generations can take longer.
    fake.expire_token(handle.token)
    release(renderer)
    final = await handle.original_message(timeout=60, predicate=is_final(READY))
    refused = [r for r in handle.requests() if r.status == 401]
    assert 1 <= len(refused) <= 2  # bounded: the bot stops using the token after it is refused
    (upload,) = mp4_uploads(fake)
    assert upload[0].route == ROUTE_CHANNEL_MESSAGE  # delivered through the bot's own route
    assert final.attachments[0].filename.endswith(".mp4")


async def test_deleted_reply_gets_a_new_message(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    hold(renderer)
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": "a moderator deletes the card"})
    card = await handle.original_message(timeout=30, predicate=lambda m: bool(m.embeds))
    fake.delete_message(card.id)
    release(renderer)
    replacement = await fake.wait_for_message(
        lambda m: m.id != card.id and bool(m.embeds) and m.embeds[0].get("title") == READY, timeout=60
    )
    assert replacement.channel_id == card.channel_id
    assert len(mp4_uploads(fake)) == 1
    assert replacement.allowed_mentions == {"parse": []}


async def test_rate_limits_and_server_errors_are_retried_without_piling_up(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await bot.start()
    fake.faults.add(method="PATCH", route=ROUTE_WEBHOOK_MESSAGE, status=429, count=2, retry_after=0.2)
    fake.faults.add(method="PATCH", route=ROUTE_WEBHOOK_MESSAGE, status=502, count=1)
    handle = await fake.invoke_command("video", {"prompt": "through the storm"})
    final = await handle.original_message(timeout=60, predicate=is_final(READY))
    assert len(mp4_uploads(fake)) == 1
    edits = [r for r in handle.requests() if r.method == "PATCH"]
    assert len(edits) <= 15, len(edits)
    assert final.attachments


async def test_lost_channel_access_delivers_by_direct_message(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    hold(renderer)
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": "the channel gets locked"})
    card = await handle.original_message(timeout=30, predicate=lambda m: bool(m.embeds))
    for route in (ROUTE_CHANNEL_MESSAGE, ROUTE_CHANNEL_MESSAGES):
        fake.faults.add(
            route=route,
            status=403,
            count=None,
            json={"message": "Missing Access", "code": 50001},
            predicate=lambda r, c=card.channel_id: r.params.get("channel_id") == str(c),
        )
    fake.expire_token(handle.token)  # the interaction webhook is no way around the lock either
    release(renderer)
    dm = await fake.wait_for_message(lambda m: m.guild_id is None and bool(m.attachments), timeout=60)
    assert dm.attachments[0].filename.endswith(".mp4")
    assert "couldn't post in" in dm.content and dm.allowed_mentions == {"parse": []}
    assert len(mp4_uploads(fake)) == 1


async def test_nowhere_to_deliver_refunds_and_records(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    hold(renderer)
    member = int(fake.default_user["id"])
    fake.dm_closed_users.add(member)
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": "nowhere to go"})
    card = await handle.original_message(timeout=30, predicate=lambda m: bool(m.embeds))
    fake.faults.add(
        status=403,
        count=None,
        json={"message": "Missing Access", "code": 50001},
        predicate=lambda r, c=card.channel_id: r.params.get("channel_id") == str(c),
    )
    fake.expire_token(handle.token)
    release(renderer)
    await bot.wait_log("job 1 failed: undeliverable", timeout=60)
    fake.faults.clear()
    quota = await (await fake.invoke_command("quota")).wait_response()
    assert "**60** credits left of 60" in quota.json["data"]["content"]
    assert mp4_uploads(fake) == []


async def test_a_video_over_the_upload_limit_is_reencoded_to_fit(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    limit = 10 * 1024 * 1024
    fake.attachment_size_limit = limit
    renderer.config.noise = True
    renderer.config.target_bitrate = 30_000_000  # about 14 MiB for 4 s
    renderer.config.fps = 6  # size comes from the bitrate; fewer frames only make encoding quicker
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": "grainy and huge"})
    final = await handle.original_message(timeout=120, predicate=is_final(READY))
    served = renderer.requests[-1]
    assert served.path.endswith("/content")
    assert renderer.config.data_dir is not None
    (original,) = renderer.config.data_dir.glob("*/video.mp4")
    assert original.stat().st_size > limit  # so the fit below took a re-encode
    (upload,) = mp4_uploads(fake)
    assert len(upload[1]) <= limit
    width, height, duration = probe(upload[1], tmp_path)
    assert (width, height) == (720, 1280)
    assert duration == pytest.approx(4.0, abs=0.2)
    assert "re-encoded" in str(embed_of(final)).lower()


async def test_a_video_that_cannot_fit_is_linked_with_a_signed_expiring_url(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    # Too small for a watchable 12 s video even re-encoded (about 60 kbit/s), big enough for a thumbnail.
    fake.attachment_size_limit = 100_000
    port = free_port()
    bot.env.update({"HTTP_PORT": str(port), "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": "too big for this server", "seconds": 12})
    final = await handle.original_message(timeout=120, predicate=is_final(READY))
    embed = embed_of(final)
    watch = field_value(embed, "Watch") or ""
    url = watch.split("](", 1)[1].split(")", 1)[0]
    assert url.startswith(f"http://127.0.0.1:{port}/media/")
    assert [a.filename for a in final.attachments] == ["video-1.thumb.webp"]
    assert mp4_uploads(fake) == []
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200 and response.content_type == "video/mp4"
            body = await response.read()
        tampered = url.replace("/media/1/", "/media/2/")
        async with session.get(tampered) as response:
            assert response.status == 404
    path = Path(bot.workdir) / "linked.mp4"
    path.write_bytes(body)
    assert probe_video(path).duration == pytest.approx(12.0, abs=0.2)
    quota = await (await fake.invoke_command("quota")).wait_response()
    assert "**48** credits left" in quota.json["data"]["content"]  # delivered by link, so charged
