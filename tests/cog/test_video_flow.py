"""``/video`` through the whole bot in-process (tests/inprocess.py): real discord.py over the fake
Discord's gateway, the local renderer."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from PIL import Image

from bot.adapters.media import probe_video
from tests.fakes.discord import FakeDiscord
from tests.fakes.provider import InstrumentedRenderer
from tests.flows import embed_of, field_value, is_final, mp4_uploads
from tests.helpers import READY
from tests.inprocess import InProcessBot


def probe_bytes(data: bytes, tmp_path: Path, name: str) -> tuple[int, int, float]:
    path = tmp_path / name
    path.write_bytes(data)
    info = probe_video(path)
    return info.width, info.height, info.duration


async def test_video_is_acknowledged_tracked_and_delivered_once(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    renderer.config.generation_seconds = 2.0  # long enough for the card to show the bar moving
    await bot.start()
    assert {c["name"] for c in fake.commands()} >= {"video", "quota", "videomod"}
    mark = fake.mark()
    handle = await fake.invoke_command("video", {"prompt": "a red fox in snow <@&1> @everyone", "seconds": 4})

    callback = await handle.wait_response(timeout=10)
    assert callback.json["type"] == 5  # deferred: acknowledged before any slow work
    final = await handle.original_message(timeout=60, predicate=is_final(READY))

    embed = embed_of(final)
    # Shown as typed, inert: the mention escaped, @everyone broken by a zero-width space.
    assert embed["description"] == "a red fox in snow \\<@&1\\> @\u200beveryone"
    assert field_value(embed, "Model") == "`sora-2`" and field_value(embed, "Duration") == "4 s"
    # Exactly one MP4 was uploaded, on the reply itself, and it is the requested video.
    uploads = mp4_uploads(fake, mark)
    assert len(uploads) == 1
    assert [a.filename for a in final.attachments] == [uploads[0][0].files[0].filename]
    width, height, duration = probe_bytes(uploads[0][1], tmp_path, "delivered.mp4")
    assert (width, height) == (720, 1280)
    assert duration == pytest.approx(4.0, abs=0.2)

    # Live progress: the card was edited while the job ran, with a bar that moved forward.
    bars = [
        field_value(edit.changes["embeds"][0], "Progress")
        for edit in final.edits
        if edit.changes.get("embeds")
    ]
    shown = [int(b.rsplit(" ", 1)[1].rstrip("%")) for b in bars if b]
    assert len(shown) >= 2 and shown == sorted(shown)
    # Nothing the bot posted can ping anyone.
    sent = [r for r in fake.requests[mark:] if isinstance(r.json, dict) and "allowed_mentions" in r.json]
    assert sent and all(r.json["allowed_mentions"]["parse"] == [] for r in sent)

    api_calls = [(r.method, r.path) for r in renderer.requests]
    discord_calls = [
        r
        for r in fake.requests[mark:]
        if (r.method in ("POST", "PATCH") and "messages" in (r.route or ""))
        or (r.route and "callback" in r.route)
    ]
    print(f"\nVideos API requests for one 4 s job: {len(api_calls)} {api_calls}")
    print(f"Discord requests (callback + message writes) for one job: {len(discord_calls)}")
    assert sum(1 for m, _ in api_calls if m == "POST") == 1


async def test_image_attachment_is_fitted_and_becomes_the_first_frame(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    await bot.start()
    # A portrait photo for a landscape video: it must be cropped to exactly 1280x720.
    image = Image.new("RGB", (600, 900), (20, 160, 40))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95)
    mark = fake.mark()
    handle = await fake.invoke_command(
        "video",
        {"prompt": "the meadow comes alive", "size": "1280x720"},
        attachments={"image": (buf.getvalue(), "meadow.jpg", "image/jpeg")},
    )
    final = await handle.original_message(timeout=60, predicate=is_final(READY))
    create = next(r for r in renderer.requests if r.method == "POST")
    assert create.form is not None
    reference = create.form["input_reference"]
    assert not isinstance(reference, str) and reference.content_type == "image/png"
    (upload,) = mp4_uploads(fake, mark)
    path = tmp_path / "with-image.mp4"
    path.write_bytes(upload[1])
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0)).to_image()
    assert frame.size == (1280, 720)
    r, g, b = frame.resize((1, 1)).getpixel((0, 0))  # type: ignore[misc]
    assert g > 120 and r < 70 and b < 90, (r, g, b)
    assert final.attachments and final.attachments[0].filename.endswith(".mp4")


async def test_provider_failure_is_explained_and_refunded(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": "something forbidden"})
    final = await handle.original_message(timeout=60, predicate=is_final("❌ The video could not be made"))
    embed = embed_of(final)
    assert "safety system declined" in (field_value(embed, "What happened") or "")
    assert "Nothing was charged" in (field_value(embed, "Credits") or "")
    quota = await fake.invoke_command("quota")
    reply = await quota.wait_response()
    assert "**60** credits left of 60" in reply.json["data"]["content"]
