"""The Videos API client against the local renderer over real HTTP.

A small recording proxy sits between them and validates every request the client sends and every
response the renderer returns against the OpenAPI contract, in both directions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from PIL import Image
from pydantic import SecretStr

from bot.adapters.media import probe_video, render_video
from bot.adapters.videoapi.client import VideoAPIClient
from bot.domain.provider import Video
from bot.domain.provider_errors import (
    AuthenticationError,
    BadRequest,
    NotFound,
    SubmitUncertain,
    UnsupportedEndpoint,
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


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """Serve ``handler`` for every path on a free loopback port; yields the ``/v1`` base URL."""
    app = web.Application(client_max_size=64 * 1024 * 1024)  # uploads pass through
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    finally:
        await runner.cleanup()


@pytest.fixture
async def proxy(renderer: InstrumentedRenderer) -> AsyncIterator[ContractProxy]:
    proxy = ContractProxy(upstream=renderer.base_url)
    async with serving(proxy.handle) as base_url:
        proxy.base_url = base_url
        yield proxy
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
    # A page after a video the provider no longer has is refused, but the list still works.
    with pytest.raises(BadRequest):
        await client.list(limit=2, after=ids[0])
    assert client.supports_list is True
    assert [v.id for v in (await client.list(limit=5)).data][-2:] == ids[2:0:-1]


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


# --------------------------------------------------------------------------- extensions, edits, characters


def clip_file(tmp_path: Path, seconds: float = 2.0) -> Path:
    path = tmp_path / "clip.mp4"
    render_video(path, prompt="an uploaded clip", width=640, height=360, seconds=seconds, fps=6)
    return path


async def test_extend_edit_and_characters_round_trip(
    client: VideoAPIClient, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    source = await client.create(prompt="a paper boat", model="sora-2", size="720x1280", seconds=4)
    await wait_done(client, source.id)

    extension = await client.extend(source.id, "it sails into a storm", 8)
    assert renderer.requests[-1].json_body == {
        "video": {"id": source.id},
        "prompt": "it sails into a storm",
        "seconds": "8",
    }
    assert extension.seconds == "12"  # the stitched total
    assert (await wait_done(client, extension.id))[-1].status == "completed"
    out = tmp_path / "extended.mp4"
    await client.download(extension.id, out)
    assert probe_video(out).duration == pytest.approx(12, abs=0.3)
    assert client.supports_extend is True

    edit = await client.edit("make it night", video_id=source.id)
    assert renderer.requests[-1].json_body == {"video": {"id": source.id}, "prompt": "make it night"}
    assert (await wait_done(client, edit.id))[-1].status == "completed"

    upload = clip_file(tmp_path)
    edit = await client.edit("add snow", clip=upload)
    form = renderer.requests[-1].form
    assert form is not None and set(form) == {"prompt", "video"}
    assert (edit.size, edit.seconds) == ("1280x720", "2")
    assert (await wait_done(client, edit.id))[-1].status == "completed"
    assert client.supports_edit is True

    character = await client.create_character("Captain Boat", upload.read_bytes())
    assert character.id.startswith("char_") and character.name == "Captain Boat"
    assert await client.get_character(character.id) == character
    with pytest.raises(NotFound):
        await client.get_character("char_missing")
    assert client.supports_characters is True
    assert {"POST videos/extensions", "POST videos/edits", "GET videos/characters/{id}"} <= set(
        client.request_counts
    )


async def test_extension_body_refusals_and_a_gone_source_are_typed(
    client: VideoAPIClient, proxy: ContractProxy
) -> None:
    with pytest.raises(NotFound, match="video_gone"):
        await client.extend("video_gone", "more", 4)
    assert client.supports_extend is True, "a missing video is not a missing endpoint"
    # 6 is outside the contract's list too: checked by the renderer, not sent past the proxy's eyes.
    proxy.tolerate.append("seconds")
    with pytest.raises(BadRequest) as info:
        await client.extend("video_gone", "more", 6)
    assert info.value.param == "seconds"
    proxy.violations.clear()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            404,
            '{"error": {"message": "Invalid URL (POST /v1/videos/extensions)", "type": "invalid_request_error"}}',
        ),
        (404, '{"detail": "Not Found"}'),
        (405, '{"detail": "Method Not Allowed"}'),
    ],
)
async def test_providers_without_the_endpoints_are_discovered(
    renderer: InstrumentedRenderer, tmp_path: Path, status: int, body: str
) -> None:
    for path in ("/v1/videos/extensions", "/v1/videos/edits", "/v1/videos/characters"):
        renderer.faults.add(status=status, path_prefix=path, body=body, count=2)
    async with VideoAPIClient(renderer.base_url, backoff_initial=0.01) as api:
        with pytest.raises(UnsupportedEndpoint, match="not supported by this provider"):
            await api.extend("video_x", "more", 4)
        with pytest.raises(UnsupportedEndpoint):
            await api.edit("night", video_id="video_x")
        with pytest.raises(UnsupportedEndpoint):
            await api.create_character("n", clip_file(tmp_path))
        with pytest.raises(UnsupportedEndpoint):
            await api.get_character("char_x")
        assert (api.supports_extend, api.supports_edit, api.supports_characters) == (False, False, False)
    # Each was tried once: a missing endpoint is not retried.
    assert len(renderer.requests) == 4


async def test_a_gateway_whose_upstream_lacks_the_operation_is_discovered(
    renderer: InstrumentedRenderer,
) -> None:
    # What LiteLLM answers when the provider behind a model has no extensions (its docs: "External
    # providers receive NotImplementedError").
    body = (
        '{"error": {"message": "litellm.NotImplementedError: video extension is not supported for '
        'runwayml", "type": null, "param": null, "code": "500"}}'
    )
    renderer.faults.add(status=500, path_prefix="/v1/videos/extensions", body=body)
    async with VideoAPIClient(renderer.base_url, backoff_initial=0.01) as api:
        with pytest.raises(UnsupportedEndpoint, match="NotImplementedError"):
            await api.extend("video_x", "more", 4)
        assert api.supports_extend is False
    assert len(renderer.requests) == 1


def test_edit_needs_exactly_one_source() -> None:
    client = VideoAPIClient("http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="exactly one"):
        asyncio.run(client.edit("x"))
    with pytest.raises(ValueError, match="exactly one"):
        asyncio.run(client.edit("x", video_id="v", clip=b"data"))


@dataclass
class LiteLLMLikeGateway:
    """What LiteLLM's proxy does to the Videos API: ids become long encoded strings naming the
    upstream (``video_`` + base64 of ``litellm:...;video_id:...``), and upstream errors come back
    wrapped inside the message text."""

    upstream: str
    base_url: str = ""

    @staticmethod
    def encode(upstream_id: str) -> str:
        raw = f"litellm:custom_llm_provider:openai;model_id:{'m' * 64};video_id:{upstream_id}"
        return "video_" + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def decode(long_id: str) -> str:
        encoded = long_id.removeprefix("video_")
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        return raw.rsplit("video_id:", 1)[1]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.removeprefix("/v1")
        parts = path.split("/")
        if len(parts) >= 3 and parts[2].startswith("video_"):
            parts[2] = self.decode(parts[2])
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        if body and headers["Content-Type"].startswith("application/json"):
            document = json.loads(body)
            if isinstance(document.get("video"), dict):
                document["video"]["id"] = self.decode(document["video"]["id"])
            body = json.dumps(document).encode()
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                self.upstream + "/".join(parts),
                data=body or None,
                headers=headers,
                params=request.query,
            ) as upstream,
        ):
            payload, status = await upstream.read(), upstream.status
            content_type = upstream.content_type
        if status >= 400:
            wrapped = {
                "error": {
                    "message": f"litellm.APIError: OpenAIException - {payload.decode()}",
                    "type": None,
                    "param": None,
                    "code": str(status),
                }
            }
            return web.json_response(wrapped, status=status)
        if content_type == "application/json":
            document = json.loads(payload)
            if isinstance(document, dict) and str(document.get("id", "")).startswith("video_"):
                document["id"] = self.encode(document["id"])
            return web.json_response(document)
        return web.Response(body=payload, content_type=content_type)


async def test_through_a_litellm_like_gateway_long_ids_and_wrapped_errors(
    renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    gateway = LiteLLMLikeGateway(upstream=renderer.base_url)
    async with (
        serving(gateway.handle) as base_url,
        VideoAPIClient(base_url, backoff_initial=0.01) as api,
    ):
        source = await api.create(prompt="boat", model="sora-2", size="720x1280", seconds=4)
        assert len(source.id) > 200
        await wait_done(api, source.id)
        extension = await api.extend(source.id, "storm", 4)
        assert len(extension.id) > 200 and extension.seconds == "8"
        await wait_done(api, extension.id)
        await api.download(extension.id, tmp_path / "e.mp4")
        assert probe_video(tmp_path / "e.mp4").duration == pytest.approx(8, abs=0.3)
        edit = await api.edit("night", video_id=source.id)
        assert len(edit.id) > 200
        # The upstream's code survives inside the wrapped message.
        running = await api.create(prompt="still running", model="sora-2", size="720x1280", seconds=4)
        with pytest.raises(BadRequest) as info:
            await api.extend(running.id, "too soon", 4)
        assert info.value.code == "invalid_video_status"
        assert api.supports_extend is True
