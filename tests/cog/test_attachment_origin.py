"""A forged attachment (the whole bot in-process, tests/inprocess.py): its URL points the bot at another local server.

An attachment's URL is part of the interaction payload, so whoever forges the payload picks where
the bot connects. The bot downloads only from Discord's CDN or its configured API origin (here the
fake Discord's): the request is refused with one clear line, that other server never sees a request,
and nothing is reserved or sent to the provider.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator

from aiohttp import web
from PIL import Image

from tests.fakes.discord import FakeDiscord
from tests.fakes.provider import InstrumentedRenderer
from tests.inprocess import InProcessBot

REFUSAL = "That attachment isn't hosted on Discord, so the bot won't download it."


@contextlib.asynccontextmanager
async def recording_server(body: bytes) -> AsyncIterator[tuple[str, list[str]]]:
    """A real aiohttp server on 127.0.0.1 serving ``body`` at every path; yields its origin and the
    paths it was asked for."""
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(body=body, content_type="image/png")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (640, 360), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


async def test_an_attachment_url_elsewhere_is_refused_without_a_request(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await bot.start()
    picture = png()
    async with recording_server(picture) as (origin, seen):
        payload = fake.add_attachment(picture, "photo.png", "image/png", width=640, height=360)
        # The same attachment, its URLs swapped for the other server's (same host, another port).
        forged = {**payload, "url": f"{origin}/photo.png", "proxy_url": f"{origin}/photo.png"}
        handle = await fake.invoke_command(
            "video", {"prompt": "a red door", "size": "1280x720"}, attachments={"image": forged}
        )
        refusal = await handle.wait_followup(timeout=20)
        assert refusal.ephemeral and refusal.content == REFUSAL
        assert any(r.method == "DELETE" for r in handle.requests()), "the public placeholder goes away"
        assert seen == []

    quota = await fake.invoke_command("quota")
    content = (await quota.wait_response()).json["data"]["content"]
    assert content.startswith("**60** credits left of 60") and "reserved 0" in content
    assert renderer.requests == []
    references = bot.workdir / "data" / "references"
    assert not references.exists() or not any(references.iterdir())
