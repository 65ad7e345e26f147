"""Provider faults through the whole bot (in-process, tests/inprocess.py): rate limits, server errors, dropped connections, malformed
bodies, and an asset that expired before it was fetched."""

from __future__ import annotations

from tests.fakes.discord import FakeDiscord
from tests.fakes.provider import InstrumentedRenderer
from tests.flows import embed_of, field_value, is_final, mp4_uploads
from tests.helpers import FAILED, READY
from tests.inprocess import InProcessBot


async def test_a_flaky_provider_still_delivers_once(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    renderer.faults.add(status=429, count=2, method="POST", retry_after=0.2)
    renderer.faults.add(status=500, count=2, method="GET", path_prefix="/v1/videos/")
    renderer.faults.add(status=200, count=1, method="GET", path_prefix="/v1/videos/", body="{oops")
    renderer.faults.add(status=502, count=1, method="POST", after_processing=True)
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": "weathering the storm"})
    await handle.original_message(timeout=90, predicate=is_final(READY))
    assert len(mp4_uploads(fake)) == 1
    # The 502 came after the job was created: the bot found it instead of paying twice.
    created = [r for r in renderer.requests if r.method == "POST"]
    assert len(created) == 3  # two 429s (not processed) and the one that was
    assert renderer.faults.pending == 0


async def test_an_expired_asset_is_explained_and_refunded(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    renderer.config.asset_ttl_seconds = 0  # gone the moment it is finished
    await bot.start()
    handle = await fake.invoke_command("video", {"prompt": "too late"})
    final = await handle.original_message(timeout=60, predicate=is_final(FAILED))
    assert "deleted the video before the bot could fetch it" in (
        field_value(embed_of(final), "What happened") or ""
    )
    quota = await (await fake.invoke_command("quota")).wait_response()
    assert "**60** credits left of 60" in quota.json["data"]["content"]
