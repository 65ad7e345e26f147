"""The Videos API client against the local renderer over real HTTP.

A small recording proxy sits between them and validates every request the client sends and every
response the renderer returns against the OpenAPI contract, in both directions.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from PIL import Image
from pydantic import SecretStr

from bot.adapters.media import probe_video
from bot.adapters.videoapi.client import VideoAPIClient
from bot.domain.provider import Video
from bot.domain.provider_errors import (
    AuthenticationError,
    BadRequest,
    NotFound,
    SubmitUncertain,
    VideoAPIError,
)
from tests.conftest import RendererFactory
from tests.contract import validate_request, validate_response
from tests.fakes.provider import InstrumentedRenderer

FAST: dict[str, Any] = {"generation_seconds": 0.6, "queue_seconds": 0.1, "fps": 8, "poll_after_ms": 50}


@dataclass
class ContractProxy:
    """Forwards to the renderer; checks both directions against the spec."""

    upstream: str
    exchanges: list[tuple[str, str, int]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    base_url: str = ""
    # Responses a test broke on purpose (fault injection) are not the renderer's to answer for.
    tolerate: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        target = self.upstream.removesuffix("/v1") + str(request.rel_url)
        try:
            validate_request(
                request.method, str(request.rel_url), request.headers, body or None, require_auth=False
            )
        except AssertionError as exc:
            self.violations.append(f"request: {exc}")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with aiohttp.ClientSession() as session:
            try:
                async with session.request(
                    request.method, target, data=body or None, headers=headers
                ) as upstream:
                    payload = await upstream.read()
                    status, up_headers = upstream.status, upstream.headers
            except aiohttp.ServerDisconnectedError:
                # The renderer dropped the connection on purpose (fault injection): do the same.
                assert request.transport is not None
                request.transport.close()
                raise
        self.exchanges.append((request.method, request.path, status))
        try:
            validate_response(request.method, str(request.rel_url), status, up_headers, payload)
        except AssertionError as exc:
            if not any(marker in str(exc) for marker in self.tolerate):
                self.violations.append(f"response: {exc}")
        passed = {
            k: v
            for k, v in up_headers.items()
            if k.lower() in ("content-type", "retry-after", "retry-after-ms", "openai-poll-after-ms")
        }
        return web.Response(body=payload, status=status, headers=passed)


@pytest.fixture
def renderer_settings() -> dict[str, Any]:
    return dict(FAST)


@pytest.fixture
async def proxy(renderer: InstrumentedRenderer) -> AsyncIterator[ContractProxy]:
    proxy = ContractProxy(upstream=renderer.base_url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    proxy.base_url = f"http://127.0.0.1:{port}/v1"
    yield proxy
    await runner.cleanup()
    assert proxy.violations == []


@pytest.fixture
async def client(proxy: ContractProxy) -> AsyncIterator[VideoAPIClient]:
    async with VideoAPIClient(proxy.base_url, SecretStr("sk-test-secret"), backoff_initial=0.01) as api:
        yield api


async def wait_done(client: VideoAPIClient, video_id: str) -> list[Video]:
    seen = []
    async with asyncio.timeout(30):
        while True:
            video = await client.retrieve(video_id)
            seen.append(video)
            if video.is_terminal:
                return seen
            await asyncio.sleep(client.last_poll_after or 0.05)  # the server's own suggestion


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


async def test_create_poll_download_a_real_mp4(client: VideoAPIClient, tmp_path: Path) -> None:
    video = await client.create(prompt="a red fox in snow", model="sora-2", size="720x1280", seconds=4)
    assert (video.status, video.model, video.size, video.seconds) == ("queued", "sora-2", "720x1280", "4")
    history = await wait_done(client, video.id)
    assert history[-1].status == "completed"
    progress = [v.progress for v in history if v.progress is not None]
    assert progress == sorted(progress) and progress[-1] == 100
    assert client.last_poll_after == pytest.approx(0.05)
    out = tmp_path / "fox.mp4"
    size = await client.download(video.id, out)
    assert size == out.stat().st_size > 0
    info = probe_video(out)
    assert (info.width, info.height, info.codec) == (720, 1280, "h264")
    assert info.duration == pytest.approx(4.0, abs=0.2)
    thumb = tmp_path / "thumb.webp"
    await client.download(video.id, thumb, variant="thumbnail")
    assert Image.open(thumb).format == "WEBP"


async def test_multipart_create_with_reference_image(
    client: VideoAPIClient, renderer: InstrumentedRenderer
) -> None:
    video = await client.create(
        prompt="start here", model="sora-2", size="1280x720", seconds=4, input_reference=png(1280, 720)
    )
    form = renderer.requests[-1].form
    assert form is not None and set(form) == {"model", "prompt", "seconds", "size", "input_reference"}
    assert (await wait_done(client, video.id))[-1].status == "completed"


async def test_reference_of_the_wrong_size_is_refused_with_the_providers_words(
    client: VideoAPIClient,
) -> None:
    with pytest.raises(BadRequest, match="Inpaint image must match the requested width and height"):
        await client.create(
            prompt="x", model="sora-2", size="1280x720", seconds=4, input_reference=png(100, 100)
        )


async def test_bad_size_is_a_typed_error_with_param(client: VideoAPIClient) -> None:
    with pytest.raises(BadRequest) as info:
        await client.create(prompt="x", model="sora-2", size="1792x1024", seconds=4)
    assert info.value.status == 400 and info.value.param == "size"


async def test_list_pages_and_remix(client: VideoAPIClient, renderer: InstrumentedRenderer) -> None:
    ids = [
        (await client.create(prompt=f"clip {n}", model="sora-2", size="720x1280", seconds=4)).id
        for n in range(3)
    ]
    first = await client.list(limit=2)
    assert [v.id for v in first.data] == ids[::-1][:2] and first.has_more
    rest = await client.list(limit=2, after=first.last_id)
    assert [v.id for v in rest.data] == ids[:1] and not rest.has_more
    assert client.supports_list is True
    await wait_done(client, ids[0])
    remix = await client.remix(ids[0], "same, but at night")
    assert remix.remixed_from_video_id == ids[0]
    assert (await wait_done(client, remix.id))[-1].status == "completed"
    assert await client.delete(ids[0]) is True
    with pytest.raises(NotFound):
        await client.retrieve(ids[0])


async def test_moderation_block_ends_failed_with_its_code(client: VideoAPIClient) -> None:
    video = await client.create(prompt="something forbidden", model="sora-2", size="720x1280", seconds=4)
    final = (await wait_done(client, video.id))[-1]
    assert final.status == "failed" and final.error is not None and final.error.code == "moderation_blocked"


async def test_429_is_retried_after_retry_after(
    client: VideoAPIClient, renderer: InstrumentedRenderer
) -> None:
    renderer.faults.add(status=429, count=2, method="POST", retry_after=0.05)
    video = await client.create(prompt="busy", model="sora-2", size="720x1280", seconds=4)
    posts = [r for r in renderer.requests if r.method == "POST"]
    assert len(posts) == 3 and video.id.startswith("video_")


async def test_500_and_malformed_json_on_reads_are_retried(
    client: VideoAPIClient, renderer: InstrumentedRenderer, proxy: ContractProxy
) -> None:
    proxy.tolerate.append("{not json")
    video = await client.create(prompt="flaky", model="sora-2", size="720x1280", seconds=4)
    renderer.faults.add(status=500, count=2, method="GET")
    renderer.faults.add(status=200, count=1, method="GET", body="{not json")
    assert (await client.retrieve(video.id)).id == video.id
    gets = [r for r in renderer.requests if r.method == "GET"]
    assert len(gets) == 4


async def test_retries_give_up_with_a_typed_error(renderer: InstrumentedRenderer) -> None:
    renderer.faults.add(status=503, count=10, method="GET")
    async with VideoAPIClient(renderer.base_url, max_attempts=3, backoff_initial=0.01) as api:
        with pytest.raises(VideoAPIError) as info:
            await api.retrieve("video_x")
    assert info.value.status == 503
    assert len(renderer.requests) == 3


async def test_lost_create_on_a_provider_without_list_fails_visibly(renderer: InstrumentedRenderer) -> None:
    renderer.faults.add(drop_connection=True, method="POST", after_processing=True)
    renderer.faults.add(status=404, count=5, method="GET", path_prefix="/v1/videos")
    async with VideoAPIClient(renderer.base_url, backoff_initial=0.01) as api:
        with pytest.raises(SubmitUncertain, match="not retrying to avoid paying twice"):
            await api.create(prompt="maybe", model="sora-2", size="720x1280", seconds=4)
    assert len([r for r in renderer.requests if r.method == "POST"]) == 1


async def test_wrong_key_is_an_authentication_error(make_renderer: RendererFactory) -> None:
    server = await make_renderer(api_key="right")
    async with VideoAPIClient(server.base_url, SecretStr("wrong-key-123")) as api:
        with pytest.raises(AuthenticationError) as info:
            await api.list()
        assert "wrong-key-123" not in str(info.value) and "wrong-key-123" not in repr(api)
    async with VideoAPIClient(server.base_url, SecretStr("right")) as api:
        assert (await api.list()).data == []


def test_lenient_parsing_of_what_real_servers_return() -> None:
    video = Video.model_validate(
        {"id": "x" * 300, "status": "PROCESSING", "size": "832x480", "seconds": 5, "extra": {"a": 1}}
    )
    assert (video.status, video.progress, video.size, video.seconds) == ("processing", None, "832x480", "5")
    assert not video.is_terminal
    assert Video.model_validate({"id": "v", "progress": 140.7, "prompt": None}).progress == 100
