"""``ReferenceImages`` on the real adapter: downloads through aiohttp from the fake Discord's CDN
route, fits on a real ``ImageFitGate``, writes a real PNG."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from PIL import Image

from bot.adapters.media import ImageFitGate
from bot.adapters.reference_images import AttachmentImages
from bot.domain.errors import UserError
from bot.services.references import ReferenceImages
from tests.fakes.discord import FakeDiscord

MEMBER, OTHER = 101, 202


def jpeg(size: tuple[int, int] = (600, 900)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (20, 160, 40)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@contextlib.asynccontextmanager
async def references(folder: Path) -> AsyncIterator[tuple[FakeDiscord, ReferenceImages, ImageFitGate]]:
    gate = ImageFitGate()
    images = AttachmentImages(extra_origin=None, gate=gate)
    async with FakeDiscord() as fake:
        images.extra_origin = fake.api_base  # as bot.app wires it: DISCORD_API_BASE_URL
        try:
            yield fake, ReferenceImages(images, images, folder), gate
        finally:
            await images.close()


async def test_an_attachment_is_downloaded_fitted_and_written(tmp_path: Path) -> None:
    async with references(tmp_path / "references") as (fake, refs, _):
        url = fake.add_attachment(jpeg(), "meadow.jpg")["url"]
        path = await refs.prepare(url, MEMBER, 1280, 720)
    assert path.parent == tmp_path / "references" and path.suffix == ".png"
    with Image.open(path) as fitted:
        assert fitted.format == "PNG" and fitted.size == (1280, 720)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no .part left behind


async def test_a_url_on_another_port_is_refused_before_any_request(tmp_path: Path) -> None:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(body=jpeg(), content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with references(tmp_path / "references") as (_, refs, _):
            with pytest.raises(UserError) as refused:
                await refs.prepare(f"http://127.0.0.1:{port}/meadow.jpg", MEMBER, 1280, 720)
    finally:
        await runner.cleanup()
    assert (
        refused.value.user_message == "That attachment isn't hosted on Discord, so the bot won't download it."
    )
    assert seen == []
    assert not (tmp_path / "references").exists()


async def test_a_members_second_image_while_the_first_is_in_the_gate_is_refused(tmp_path: Path) -> None:
    async with references(tmp_path / "references") as (fake, refs, gate):
        url = fake.add_attachment(jpeg(), "meadow.jpg")["url"]
        # Another member's fit occupies the gate's one slot and worker thread until released.
        release = threading.Event()
        entered = asyncio.Event()

        async def other_members_fit() -> None:
            async with gate.slot(OTHER):
                entered.set()
                await gate.run(release.wait, 30)

        other = asyncio.create_task(other_members_fit())
        await entered.wait()
        first = asyncio.create_task(refs.prepare(url, MEMBER, 1280, 720))
        async with asyncio.timeout(10):
            # The first has downloaded and is queued for the slot (the gate has no event for it).
            while gate.waiting == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        with pytest.raises(UserError) as busy:
            await refs.prepare(url, MEMBER, 1280, 720)
        assert busy.value.user_message == (
            "Your previous image is still being prepared; wait for it to finish, then try again."
        )
        # Another member is not refused for it: they queue behind the first.
        third = asyncio.create_task(refs.prepare(url, OTHER + 1, 1280, 720))
        async with asyncio.timeout(10):
            while gate.waiting < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        release.set()
        await other
        path = await first
        await third
    with Image.open(path) as fitted:
        assert fitted.size == (1280, 720)
    assert len(list((tmp_path / "references").glob("*.png"))) == 2  # the first's and the third's
