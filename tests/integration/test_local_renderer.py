"""The local Videos API renderer driven over real HTTP; every exchange is checked against the spec."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDictProxy
from PIL import Image
from standardwebhooks import Webhook

from bot.adapters.media import probe_video
from bot.localapi import LocalRenderer, LocalRendererConfig, serve_forever
from bot.localapi.protocol import ApiError, request_body
from tests.conftest import RendererFactory
from tests.contract import ContractViolation, validate_request, validate_response
from tests.fakes.provider import InstrumentedRenderer, RecordedFile
from tests.helpers import ManualClock

# Fast enough for tests, slow enough that every status can be observed. The smallest size the spec
# allows is 720x1280, so a low frame rate is what keeps renders quick.
# Timings are binary fractions so that clock arithmetic is exact.
FAST_CONFIG = LocalRendererConfig(generation_seconds=1.0, queue_seconds=0.25, fps=4, poll_after_ms=100)
PORTRAIT = "720x1280"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def multipart_body(
    fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes, str]] | None = None
) -> tuple[bytes, str]:
    """Encode a multipart/form-data body; ``files`` maps a field to (filename, content, type)."""
    # Without default_to_multipart, FormData with no files sends x-www-form-urlencoded instead.
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields.items():
        form.add_field(name, value)
    for name, (filename, content, content_type) in (files or {}).items():
        form.add_field(name, content, filename=filename, content_type=content_type)
    payload = form()
    assert isinstance(payload, aiohttp.MultipartWriter)
    return await payload.as_bytes(), payload.content_type


class CheckedApi:
    """Sends requests to a renderer and checks every request and response against the spec."""

    def __init__(
        self, session: aiohttp.ClientSession, renderer: InstrumentedRenderer, api_key: str | None = None
    ) -> None:
        self.session = session
        self.renderer = renderer
        self.api_key = api_key

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        check_request: bool = True,
    ) -> Reply:
        """Send a request; ``check_request=False`` for requests deliberately outside the spec."""
        url = self.renderer.base_url + path
        if params:
            url += "?" + "&".join(f"{name}={value}" for name, value in params.items())
        all_headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            content_type = "application/json"
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        all_headers.update(headers or {})
        if check_request:
            validate_request(method, url, all_headers, body, require_auth=self.api_key is not None)
        async with self.session.request(method, url, data=body, headers=all_headers) as response:
            reply = Reply(response.status, response.headers, await response.read())
        validate_response(method, url, reply.status, reply.headers, reply.body)
        return reply

    async def create(self, **fields: Any) -> dict[str, Any]:
        reply = await self.request("POST", "/videos", json_body={"seconds": "4", **fields})
        assert reply.status == 200, reply.body
        created: dict[str, Any] = reply.json()
        return created

    async def get(self, video_id: str) -> dict[str, Any]:
        reply = await self.request("GET", f"/videos/{video_id}")
        assert reply.status == 200, reply.body
        resource: dict[str, Any] = reply.json()
        return resource

    async def create_completed(self, clock: ManualClock, **fields: Any) -> dict[str, Any]:
        """Create a job, move the clock past its generation time and wait for its render."""
        created = await self.create(**fields)
        clock.advance(self.renderer.config.generation_seconds)
        await self.renderer.wait_rendered(created["id"])
        resource = await self.get(created["id"])
        assert resource["status"] == "completed", resource
        return resource


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def renderer_settings(clock: ManualClock) -> dict[str, Any]:
    """``FAST_CONFIG`` on the manual clock; without a data dir, each renderer cleans up after itself."""
    fast = {f.name: getattr(FAST_CONFIG, f.name) for f in fields(FAST_CONFIG)}
    return {**fast, "clock": clock, "data_dir": None}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def api(session: aiohttp.ClientSession, renderer: InstrumentedRenderer) -> CheckedApi:
    return CheckedApi(session, renderer)


def png(size: tuple[int, int], colour: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def error_of(reply: Reply) -> dict[str, Any]:
    error: dict[str, Any] = reply.json()["error"]
    return error


# ------------------------------------------------------------------------------ lifecycle


async def test_job_moves_through_queued_in_progress_completed_in_real_time(
    make_renderer: RendererFactory, session: aiohttp.ClientSession
) -> None:
    renderer = await make_renderer(clock=time.time, generation_seconds=0.6, queue_seconds=0.15)
    api = CheckedApi(session, renderer)
    created = await api.create(prompt="A calico cat playing a piano on stage", size=PORTRAIT)
    assert created["id"].startswith("video_") and len(created["id"]) == len("video_") + 32
    assert (created["status"], created["progress"]) == ("queued", 0)

    seen: list[tuple[str, int]] = []
    async with asyncio.timeout(10):
        while not seen or seen[-1][0] != "completed":
            reply = await api.request("GET", f"/videos/{created['id']}")
            assert reply.headers["openai-poll-after-ms"] == "100"
            resource = reply.json()
            seen.append((resource["status"], resource["progress"]))
            await asyncio.sleep(0.03)

    statuses = [status for status, _ in seen]
    assert statuses.index("queued") < statuses.index("in_progress") < statuses.index("completed")
    progress = [value for _, value in seen]
    assert progress == sorted(progress), "progress never goes backwards"
    assert any(0 < value < 100 for status, value in seen if status == "in_progress")
    assert seen[-1] == ("completed", 100)
    assert resource["completed_at"] >= created["created_at"]
    assert resource["expires_at"] == resource["completed_at"] + renderer.config.asset_ttl_seconds


async def test_status_follows_the_clock_and_completion_waits_for_the_render(
    api: CheckedApi, renderer: InstrumentedRenderer, clock: ManualClock
) -> None:
    created = await api.create(prompt="clockwork", size=PORTRAIT)
    video_id = created["id"]
    assert (await api.get(video_id))["status"] == "queued"

    clock.advance(0.25)
    started = await api.get(video_id)
    assert (started["status"], started["progress"]) == ("in_progress", 1)
    clock.advance(0.375)
    halfway = await api.get(video_id)
    assert (halfway["status"], halfway["progress"]) == ("in_progress", 50)

    clock.advance(0.375)
    due = await api.get(video_id)
    # Generation time is over; whether it already shows completed depends only on the render.
    assert (due["status"], due["progress"]) in {("in_progress", 99), ("completed", 100)}
    await renderer.wait_rendered(video_id)
    done = await api.get(video_id)
    assert (done["status"], done["progress"]) == ("completed", 100)
    assert done["completed_at"] == int(clock.now)
    assert done["error"] is None
    assert renderer.video(video_id) == done


async def test_moderation_blocked_prompt_fails_when_it_leaves_the_queue(
    api: CheckedApi, renderer: InstrumentedRenderer, clock: ManualClock
) -> None:
    created = await api.create(prompt="Something FORBIDDEN happens")
    assert created["status"] == "queued"
    await renderer.wait_rendered(created["id"], timeout=1)  # nothing to render

    clock.advance(0.25)
    failed = await api.get(created["id"])
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "moderation_blocked"
    assert failed["completed_at"] is None and failed["expires_at"] is None

    content = await api.request("GET", f"/videos/{created['id']}/content")
    assert content.status == 409


# ------------------------------------------------------------------------------ create validation


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        pytest.param({"prompt": "x", "size": "640x480"}, "size", id="unknown-size"),
        pytest.param({"prompt": "x", "model": "sora-2", "size": "1792x1024"}, "size", id="pro-only-size"),
        pytest.param({"prompt": "x", "seconds": "5"}, "seconds", id="seconds-not-allowed"),
        pytest.param({"prompt": "x", "seconds": 4}, "seconds", id="seconds-as-number"),
        pytest.param({"prompt": "x", "model": "sora-3"}, "model", id="unknown-model"),
        pytest.param({"seconds": "4"}, "prompt", id="missing-prompt"),
        pytest.param({"prompt": ""}, "prompt", id="empty-prompt"),
        pytest.param({"prompt": "x" * 32_001}, "prompt", id="prompt-too-long"),
        pytest.param({"prompt": "x", "quality": "hd"}, "quality", id="unknown-parameter"),
    ],
)
async def test_invalid_create_requests_get_400_naming_the_parameter(
    api: CheckedApi, renderer: InstrumentedRenderer, fields: dict[str, Any], param: str
) -> None:
    reply = await api.request("POST", "/videos", json_body=fields, check_request=False)
    assert reply.status == 400
    error = error_of(reply)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    # Also refused when it arrives as multipart.
    if all(isinstance(value, str) for value in fields.values()):
        body, content_type = await multipart_body(fields)
        reply = await api.request(
            "POST", "/videos", body=body, content_type=content_type, check_request=False
        )
        assert (reply.status, error_of(reply)["param"]) == (400, param)
    assert (await api.request("GET", "/videos")).json()["data"] == []


async def test_pro_model_accepts_its_larger_sizes(
    make_renderer: RendererFactory, session: aiohttp.ClientSession
) -> None:
    api = CheckedApi(session, await make_renderer(fps=2))  # a big frame: keep the render short
    created = await api.create(prompt="wide", model="sora-2-pro", size="1792x1024", seconds="8")
    assert (created["model"], created["size"], created["seconds"]) == ("sora-2-pro", "1792x1024", "8")


async def test_malformed_json_and_unsupported_content_type_get_400(api: CheckedApi) -> None:
    reply = await api.request(
        "POST", "/videos", body=b"{not json", content_type="application/json", check_request=False
    )
    assert reply.status == 400 and "JSON" in error_of(reply)["message"]
    reply = await api.request(
        "POST", "/videos", body=b"prompt=x", content_type="text/plain", check_request=False
    )
    assert reply.status == 400 and "Content-Type" in error_of(reply)["message"]


async def test_unknown_route_gets_openai_style_404(api: CheckedApi, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{api.renderer.base_url}/files") as response:
        assert response.status == 404
        assert (await response.json())["error"]["message"] == "Invalid URL (GET /v1/files)"


# ------------------------------------------------------------------------------ input_reference


async def test_multipart_input_reference_becomes_the_first_frame(
    api: CheckedApi, renderer: InstrumentedRenderer, clock: ManualClock, tmp_path: Path
) -> None:
    reference = png((720, 1280), (255, 0, 0))
    body, content_type = await multipart_body(
        {"prompt": "from a red picture", "size": PORTRAIT, "seconds": "4"},
        {"input_reference": ("red.png", reference, "image/png")},
    )
    reply = await api.request("POST", "/videos", body=body, content_type=content_type)
    assert reply.status == 200, reply.body
    video_id = reply.json()["id"]
    recorded = renderer.requests[-1].form
    assert recorded is not None
    assert recorded["input_reference"] == RecordedFile("red.png", "image/png", len(reference))
    assert recorded["prompt"] == "from a red picture"

    clock.advance(renderer.config.generation_seconds)
    await renderer.wait_rendered(video_id)
    content = await api.request("GET", f"/videos/{video_id}/content")
    (tmp_path / "video.mp4").write_bytes(content.body)
    with av.open(str(tmp_path / "video.mp4")) as container:
        first = next(container.decode(video=0)).to_image()
    red, green, blue = first.getpixel((360, 640))[:3]
    assert red > 200 and green < 50 and blue < 50


async def test_json_input_reference_accepts_a_base64_data_url(api: CheckedApi) -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png((720, 1280))).decode()
    created = await api.create(
        prompt="from a data url", size=PORTRAIT, input_reference={"image_url": data_url}
    )
    assert created["status"] == "queued"


async def test_input_reference_of_another_size_is_refused(api: CheckedApi) -> None:
    body, content_type = await multipart_body(
        {"prompt": "mismatch", "size": PORTRAIT},
        {"input_reference": ("wide.png", png((1280, 720)), "image/png")},
    )
    reply = await api.request("POST", "/videos", body=body, content_type=content_type)
    assert reply.status == 400
    assert error_of(reply)["message"] == "Inpaint image must match the requested width and height"
    assert error_of(reply)["param"] == "input_reference"


async def test_input_reference_that_is_not_an_image_is_refused(api: CheckedApi) -> None:
    body, content_type = await multipart_body(
        {"prompt": "not a picture"}, {"input_reference": ("notes.png", b"hello, world\n" * 20, "image/png")}
    )
    reply = await api.request("POST", "/videos", body=body, content_type=content_type)
    assert reply.status == 400
    assert error_of(reply)["message"].startswith("That file isn't an image")


# ------------------------------------------------------------------------------ content


async def test_content_variants_are_real_media_of_the_requested_size(
    api: CheckedApi, clock: ManualClock, tmp_path: Path
) -> None:
    video = await api.create_completed(clock, prompt="previews", size=PORTRAIT, seconds="4")
    path = f"/videos/{video['id']}/content"

    mp4 = await api.request("GET", path)
    assert mp4.headers["Content-Type"] == "video/mp4"
    (tmp_path / "video.mp4").write_bytes(mp4.body)
    info = probe_video(tmp_path / "video.mp4")
    assert (info.width, info.height, info.codec) == (720, 1280, "h264")
    assert info.duration == pytest.approx(4.0, abs=1 / 4)

    thumbnail = await api.request("GET", path, params={"variant": "thumbnail"})
    assert thumbnail.headers["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(thumbnail.body)) as image:
        assert (image.format, image.size) == ("WEBP", (720, 1280))

    spritesheet = await api.request("GET", path, params={"variant": "spritesheet"})
    assert spritesheet.headers["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(spritesheet.body)) as image:
        assert image.format == "WEBP"

    reply = await api.request("GET", path, params={"variant": "poster"}, check_request=False)
    assert (reply.status, error_of(reply)["param"]) == (400, "variant")


async def test_content_is_refused_before_completion_for_unknown_ids_and_after_expiry(
    api: CheckedApi, renderer: InstrumentedRenderer, clock: ManualClock
) -> None:
    created = await api.create(prompt="not yet")
    assert (await api.request("GET", f"/videos/{created['id']}/content")).status == 409
    assert (await api.request("GET", "/videos/video_unknown/content")).status == 404

    clock.advance(renderer.config.generation_seconds)
    await renderer.wait_rendered(created["id"])
    assert (await api.request("GET", f"/videos/{created['id']}/content")).status == 200

    clock.advance(renderer.config.asset_ttl_seconds)
    expired = await api.request("GET", f"/videos/{created['id']}/content")
    assert (expired.status, error_of(expired)["code"]) == (404, "video_expired")
    resource = await api.get(created["id"])
    assert resource["status"] == "completed" and resource["expires_at"] <= clock.now


# ------------------------------------------------------------------------------ list, remix, delete


async def test_list_paginates_with_after_limit_and_has_more(api: CheckedApi) -> None:
    ids = [(await api.create(prompt=f"clip {n}"))["id"] for n in range(5)]

    async def page(**params: str) -> dict[str, Any]:
        reply = await api.request("GET", "/videos", params=params)
        assert reply.status == 200 and reply.headers["openai-poll-after-ms"] == "100"
        listed: dict[str, Any] = reply.json()
        return listed

    first = await page(limit="2")
    assert [video["id"] for video in first["data"]] == [ids[4], ids[3]]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[4], ids[3], True)
    second = await page(limit="2", after=first["last_id"])
    assert [video["id"] for video in second["data"]] == [ids[2], ids[1]]
    last = await page(limit="2", after=second["last_id"])
    assert [video["id"] for video in last["data"]] == [ids[0]]
    assert last["has_more"] is False

    ascending = await page(order="asc", limit="3")
    assert [video["id"] for video in ascending["data"]] == ids[:3]
    assert [video["id"] for video in (await page())["data"]] == ids[::-1]
    empty = await page(limit="0")
    assert (empty["data"], empty["first_id"], empty["last_id"], empty["has_more"]) == ([], None, None, True)

    for params, param in [
        ({"limit": "101"}, "limit"),
        ({"order": "up"}, "order"),
        ({"after": "video_x"}, "after"),
    ]:
        reply = await api.request("GET", "/videos", params=params, check_request=False)
        assert (reply.status, error_of(reply)["param"]) == (400, param)


async def test_remix_makes_a_new_job_like_its_source(
    make_renderer: RendererFactory, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    api = CheckedApi(session, await make_renderer(fps=2))  # big frames: keep the renders short
    source = await api.create_completed(
        clock, prompt="a cat", model="sora-2-pro", size="1024x1792", seconds="8"
    )

    reply = await api.request(
        "POST", f"/videos/{source['id']}/remix", json_body={"prompt": "a cat taking a bow"}
    )
    assert reply.status == 200, reply.body
    remix = reply.json()
    assert remix["id"] != source["id"]
    assert remix["remixed_from_video_id"] == source["id"]
    assert (remix["model"], remix["size"], remix["seconds"]) == ("sora-2-pro", "1024x1792", "8")
    assert (remix["status"], remix["prompt"]) == ("queued", "a cat taking a bow")

    body, content_type = await multipart_body({"prompt": "a cat leaving the stage"})
    reply = await api.request("POST", f"/videos/{source['id']}/remix", body=body, content_type=content_type)
    assert reply.status == 200 and reply.json()["remixed_from_video_id"] == source["id"]


async def test_remix_is_refused_for_unknown_unfinished_and_expired_sources(
    api: CheckedApi, renderer: InstrumentedRenderer, clock: ManualClock
) -> None:
    assert (await api.request("POST", "/videos/video_nope/remix", json_body={"prompt": "x"})).status == 404

    pending = await api.create(prompt="still going")
    reply = await api.request("POST", f"/videos/{pending['id']}/remix", json_body={"prompt": "x"})
    assert reply.status == 400 and "only completed videos" in error_of(reply)["message"]

    clock.advance(renderer.config.generation_seconds)
    await renderer.wait_rendered(pending["id"])
    reply = await api.request(
        "POST", f"/videos/{pending['id']}/remix", json_body={"prompt": ""}, check_request=False
    )
    assert (reply.status, error_of(reply)["param"]) == (400, "prompt")

    clock.advance(renderer.config.asset_ttl_seconds)
    reply = await api.request("POST", f"/videos/{pending['id']}/remix", json_body={"prompt": "x"})
    assert reply.status == 400 and "expired" in error_of(reply)["message"]


async def test_delete_removes_finished_jobs_only(
    api: CheckedApi, renderer: InstrumentedRenderer, clock: ManualClock
) -> None:
    created = await api.create(prompt="short-lived")
    video_id = created["id"]
    refused = await api.request("DELETE", f"/videos/{video_id}")
    assert refused.status == 400 and "queued" in error_of(refused)["message"]

    clock.advance(renderer.config.generation_seconds)
    await renderer.wait_rendered(video_id)
    deleted = await api.request("DELETE", f"/videos/{video_id}")
    assert deleted.json() == {"id": video_id, "object": "video.deleted", "deleted": True}

    assert (await api.request("GET", f"/videos/{video_id}")).status == 404
    assert (await api.request("GET", f"/videos/{video_id}/content")).status == 404
    assert (await api.request("DELETE", f"/videos/{video_id}")).status == 404
    assert (await api.request("GET", "/videos")).json()["data"] == []


# ------------------------------------------------------------------------------ auth


async def test_api_key_is_required_when_configured(
    make_renderer: RendererFactory, session: aiohttp.ClientSession
) -> None:
    renderer = await make_renderer(api_key="sk-local-test")
    anonymous = await CheckedApi(session, renderer).request("GET", "/videos", check_request=False)
    assert anonymous.status == 401 and "didn't provide an API key" in error_of(anonymous)["message"]

    wrong = await CheckedApi(session, renderer, api_key="sk-wrong").request("GET", "/videos")
    assert (wrong.status, error_of(wrong)["code"]) == (401, "invalid_api_key")

    assert (
        await CheckedApi(session, renderer, api_key="sk-local-test").request("GET", "/videos")
    ).status == 200


# ------------------------------------------------------------------------------ extension point


async def test_extension_middlewares_see_every_request_with_its_body_before_auth(
    clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    seen: list[tuple[str, str, Any, int]] = []

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request_body(request)
        try:
            response = await handler(request)
        except ApiError as error:
            seen.append((request.method, request.path, body.json, error.status))
            raise
        seen.append((request.method, request.path, body.json, response.status))
        return response

    config = replace(FAST_CONFIG, clock=clock, api_key="sk-local-test")
    async with LocalRenderer(config, middlewares=[observe]) as renderer:
        anonymous = await CheckedApi(session, renderer).request(
            "POST", "/videos", json_body={"prompt": "who am I"}, check_request=False
        )
        assert anonymous.status == 401
        created = await CheckedApi(session, renderer, api_key="sk-local-test").create(prompt="a key")
    assert seen == [
        ("POST", "/v1/videos", {"prompt": "who am I"}, 401),
        ("POST", "/v1/videos", {"seconds": "4", "prompt": "a key"}, 200),
    ]
    # The product renderer keeps no request log of its own: a long-running `videobot local-api`
    # does not grow with its traffic.
    assert not hasattr(renderer, "requests") and not hasattr(renderer, "faults")
    assert created["status"] == "queued"


# ------------------------------------------------------------------------------ fault injection


async def test_injected_rate_limit_carries_retry_after_then_clears(
    api: CheckedApi, renderer: InstrumentedRenderer
) -> None:
    renderer.faults.add(status=429, count=2, method="POST", path_prefix="/v1/videos", retry_after=0.25)

    for _ in range(2):
        limited = await api.request("POST", "/videos", json_body={"prompt": "x"})
        assert limited.status == 429
        assert (limited.headers["Retry-After"], limited.headers["retry-after-ms"]) == ("1", "250")
        assert error_of(limited)["code"] == "rate_limit_exceeded"
    assert (await api.request("POST", "/videos", json_body={"prompt": "x"})).status == 200
    assert renderer.faults.pending == 0

    creates = [r for r in renderer.requests if (r.method, r.path) == ("POST", "/v1/videos")]
    assert len(creates) == 3
    assert all(r.json_body == {"prompt": "x"} for r in creates)
    assert len((await api.request("GET", "/videos")).json()["data"]) == 1


async def test_injected_server_error_only_hits_matching_requests(
    api: CheckedApi, renderer: InstrumentedRenderer
) -> None:
    created = await api.create(prompt="x")
    renderer.faults.add(status=500, method="GET", path_prefix="/v1/videos/")

    assert (await api.request("GET", "/videos")).status == 200  # "/v1/videos" lacks the trailing slash
    failed = await api.request("GET", f"/videos/{created['id']}")
    assert (failed.status, error_of(failed)["type"]) == (500, "server_error")
    assert (await api.request("GET", f"/videos/{created['id']}")).status == 200

    renderer.faults.add(status=503, count=3)
    renderer.faults.clear()
    assert renderer.faults.pending == 0
    assert (await api.request("GET", f"/videos/{created['id']}")).status == 200


async def test_lost_create_response_still_creates_the_job(
    api: CheckedApi, renderer: InstrumentedRenderer, session: aiohttp.ClientSession
) -> None:
    renderer.faults.add(status=502, method="POST", after_processing=True)
    lost = await api.request("POST", "/videos", json_body={"prompt": "first"})
    assert lost.status == 502

    renderer.faults.add(method="POST", drop_connection=True, after_processing=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.request("POST", "/videos", json_body={"prompt": "second"})

    listed = (await api.request("GET", "/videos", params={"order": "asc"})).json()["data"]
    assert [video["prompt"] for video in listed] == ["first", "second"]


async def test_dropped_connection_without_processing_creates_nothing(
    api: CheckedApi, renderer: InstrumentedRenderer
) -> None:
    renderer.faults.add(method="POST", drop_connection=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.request("POST", "/videos", json_body={"prompt": "never"})
    assert (await api.request("GET", "/videos")).json()["data"] == []


async def test_injected_raw_body_is_served_verbatim(api: CheckedApi, renderer: InstrumentedRenderer) -> None:
    created = await api.create(prompt="x")
    renderer.faults.add(status=200, method="GET", body='{"id": "video_')
    with pytest.raises(ContractViolation):
        await api.request("GET", f"/videos/{created['id']}")
    async with api.session.get(f"{renderer.base_url}/videos/{created['id']}") as response:
        assert response.status == 200  # the fault was used up by the previous request


async def test_latency_is_added_to_every_response(
    make_renderer: RendererFactory, session: aiohttp.ClientSession
) -> None:
    renderer = await make_renderer(latency_seconds=0.2)
    started = time.monotonic()
    assert (await CheckedApi(session, renderer).request("GET", "/videos")).status == 200
    assert time.monotonic() - started >= 0.2


# ------------------------------------------------------------------------------ webhooks


async def test_outcome_webhooks_are_signed_standard_webhooks_events(
    make_renderer: RendererFactory, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    received: asyncio.Queue[tuple[dict[str, str], str]] = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        await received.put((dict(request.headers), await request.text()))
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    runner = web.AppRunner(receiver)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        secret = "whsec_" + base64.b64encode(b"local renderer test secret").decode()
        renderer = await make_renderer(webhook_url=f"http://127.0.0.1:{port}/hook", webhook_secret=secret)
        api = CheckedApi(session, renderer)
        completed = await api.create(prompt="worth announcing")
        blocked = await api.create(prompt="forbidden")
        clock.advance(renderer.config.generation_seconds)

        events: dict[str, dict[str, Any]] = {}
        async with asyncio.timeout(10):
            for _ in range(2):
                headers, body = await received.get()
                event = Webhook(secret).verify(body, headers)
                events[event["data"]["id"]] = event
                assert headers["webhook-id"] == event["id"]
        assert events[completed["id"]]["type"] == "video.completed"
        assert events[blocked["id"]]["type"] == "video.failed"
        for event in events.values():
            assert event["object"] == "event" and event["id"].startswith("evt_")
            assert event["created_at"] == int(clock.now)
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------------------ CLI entry point


class _ListeningLogCatcher(logging.Handler):
    """Resolves ``base_url`` with the address serve_forever logs once it is listening."""

    def __init__(self) -> None:
        super().__init__()
        self.base_url: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"listening on (\S+)", record.getMessage())
        if found and not self.base_url.done():
            self.base_url.set_result(found.group(1))


async def test_serve_forever_serves_until_cancelled(session: aiohttp.ClientSession) -> None:
    catcher = _ListeningLogCatcher()
    logger = logging.getLogger("bot.localapi.server")
    logger.addHandler(catcher)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    server = asyncio.create_task(serve_forever(replace(FAST_CONFIG), host="127.0.0.1", port=0))
    try:
        base_url = await asyncio.wait_for(catcher.base_url, timeout=5)
        async with session.get(f"{base_url}/videos") as response:
            assert response.status == 200
    finally:
        logger.removeHandler(catcher)
        logger.setLevel(previous_level)
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
