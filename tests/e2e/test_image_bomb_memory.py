"""Five members attach hostile images at the same moment: the real bot's memory stays bounded.

Each image is about 40 megapixels (just under the bot's pixel cap) yet only kilobytes on the wire:
three 1-bit PNGs and two flat baseline JPEGs. The bot process's resident set, plus any children, is
sampled with psutil every 5 ms from before the five ``/video`` requests until every member has an
answer, and cross-checked with the kernel's high-water mark. The bound is generous (the target is
under 150 MB; ``python bench/image_memory.py --modes naive,bot_process`` reports the figure), so load
on the machine cannot make it flaky, while the old full decode (about 1.4 GB) would fail it.
"""

from __future__ import annotations

from bench.image_memory import TARGET, bomb_the_bot, hostile_images
from tests.e2e.conftest import BotProcess, hold, release
from tests.fakes.discord import FakeDiscord
from tests.fakes.provider import InstrumentedRenderer
from tests.helpers import wait_for

BOUND_MB = 300
MAKING = "⏳ Making your video…"


async def test_five_hostile_images_at_once_keep_the_bot_under_the_bound(
    bot: BotProcess, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    # Renders wait, so what the bot holds during the measurement is the images and nothing else.
    hold(renderer)
    await bot.start()
    assert bot.proc is not None
    images = hostile_images()
    assert len(images) == 5
    assert all(len(data) < 1_000_000 for _, data in images), "hostile means small on the wire"

    figures = await bomb_the_bot(fake, bot.proc.pid, images, TARGET, timeout=150)
    print(f"\nthe bot, five hostile images at once: {figures}")

    # Every member sees either their job's card or one clear line; here the fit gate queues the
    # five and each image fits within the decode budget, so all five jobs start.
    assert figures["outcomes"] == [f"card: {MAKING}"] * 5, figures

    def creates() -> list:  # type: ignore[type-arg]
        return [r for r in renderer.requests if r.method == "POST" and r.path.endswith("/videos")]

    # A card is posted before its create is sent: the fifth may still be on its way.
    await wait_for(lambda: len(creates()) == 5, "five creates at the provider")
    created = creates()
    for request in created:
        assert request.form is not None
        reference = request.form["input_reference"]
        assert not isinstance(reference, str) and reference.content_type == "image/png"
    assert figures["samples"] > 10, figures
    assert figures["peak_rss_raise_mb"] < BOUND_MB, figures

    # Still healthy: one more small request is accepted and finished.
    release(renderer)
    handle = await fake.invoke_command("video", {"prompt": "a calm lake", "size": "1280x720"})
    final = await handle.original_message(
        timeout=90,
        predicate=lambda m: bool(m.embeds) and m.embeds[0].get("title") == "🎬 Your video is ready",
    )
    assert final.attachments and final.attachments[0].filename.endswith(".mp4")
