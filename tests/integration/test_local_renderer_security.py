"""The local renderer as someone other than its bot would attack it, over real HTTP on 127.0.0.1.

Each test performs one attack from the security review against the real renderer (or the real
``videobot local-api`` command) and checks it no longer does harm: prompts read without a key, a
public address without a key, memory grown by bodies or queued jobs, a disk filled with renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import os
import socket
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.cli import video_api
from bot.localapi import LocalRenderer, LocalRendererConfig
from bot.settings import Settings
from tests.contract import validate_response
from tests.fakes.provider import wait_rendered

REPO = Path(__file__).resolve().parents[2]
KEY = "sk-local-security-test"
SECRET_PROMPT = "the launch codes are 0000"
FAST_CONFIG = LocalRendererConfig(generation_seconds=1.0, queue_seconds=0.25, fps=4, poll_after_ms=100)


class ManualClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.json()["error"]
        return error


class Client:
    """Raw HTTP to a renderer, every response checked against the spec (errors: ErrorResponse)."""

    def __init__(self, session: aiohttp.ClientSession, renderer: LocalRenderer, key: str | None) -> None:
        self.session = session
        self.renderer = renderer
        self.key = key

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Reply:
        url = self.renderer.base_url + path
        headers = {"Content-Type": content_type}
        if self.key is not None:
            headers["Authorization"] = f"Bearer {self.key}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
        async with self.session.request(method, url, data=body, headers=headers) as response:
            reply = Reply(response.status, response.headers, await response.read())
        validate_response(method, url, reply.status, reply.headers, reply.body)
        return reply

    async def create(self, prompt: str, **fields: Any) -> dict[str, Any]:
        reply = await self.request("POST", "/videos", json_body={"prompt": prompt, "seconds": "4", **fields})
        assert reply.status == 200, reply.body
        created: dict[str, Any] = reply.json()
        return created

    async def completed(self, clock: ManualClock, prompt: str) -> dict[str, Any]:
        created = await self.create(prompt)
        clock.advance(self.renderer.config.generation_seconds)
        await wait_rendered(self.renderer, created["id"])
        reply = await self.request("GET", f"/videos/{created['id']}")
        resource: dict[str, Any] = reply.json()
        assert resource["status"] == "completed", resource
        return resource


RendererFactory = Callable[..., Awaitable[LocalRenderer]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make_renderer(clock: ManualClock, tmp_path: Path) -> AsyncIterator[RendererFactory]:
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> LocalRenderer:
            values = {"clock": clock, "data_dir": tmp_path / "renderer", **overrides}
            return await stack.enter_async_context(LocalRenderer(replace(FAST_CONFIG, **values)))

        yield start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:  # noqa: ASYNC109
    """Wait until ``condition()`` holds, checking every 20 ms; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - files on disk have no event to wait on
            await asyncio.sleep(0.02)


def files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


def bytes_under(directory: Path) -> int:
    return sum(path.stat().st_size for path in files_under(directory))


def traced_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def noise_png(size: tuple[int, int]) -> bytes:
    """A PNG that does not compress: as large as an honest reference image of this size can be."""
    image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# ------------------------------------------------------------------------------ no key, no door


async def test_without_the_key_no_route_answers_and_no_prompt_is_readable(
    make_renderer: RendererFactory, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    renderer = await make_renderer(api_key=KEY)
    owner = Client(session, renderer, KEY)
    video_id = (await owner.completed(clock, SECRET_PROMPT))["id"]

    for key in (None, "", "sk-guess", KEY[:-1]):
        stranger = Client(session, renderer, key)
        replies = [
            await stranger.request("GET", "/videos"),
            await stranger.request("GET", f"/videos/{video_id}"),
            await stranger.request("GET", f"/videos/{video_id}/content"),
            await stranger.request("POST", f"/videos/{video_id}/remix", json_body={"prompt": "mine now"}),
            await stranger.request("POST", "/videos", json_body={"prompt": "free renders"}),
            await stranger.request("DELETE", f"/videos/{video_id}"),
        ]
        for reply in replies:
            assert reply.status == 401, (key, reply.body)
            assert reply.error["type"] == "invalid_request_error"
            assert SECRET_PROMPT.encode() not in reply.body
            assert video_id.encode() not in reply.body

    # Nothing the strangers sent took effect.
    listing = (await owner.request("GET", "/videos")).json()
    assert [video["prompt"] for video in listing["data"]] == [SECRET_PROMPT]
    content = await owner.request("GET", f"/videos/{video_id}/content")
    assert content.status == 200 and content.headers["Content-Type"] == "video/mp4"


async def test_the_bot_runs_its_in_process_renderer_behind_a_key_of_its_own(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        video_api_base_url="local",
        data_dir=tmp_path / "data",
        local_generation_seconds=0.5,
    )
    async with video_api(settings) as api:
        created = await api.create(prompt=SECRET_PROMPT, model="sora-2", size="720x1280", seconds=4)
        assert [video.id for video in (await api.list(limit=10)).data] == [created.id]
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer local"}):
            async with session.get(f"{api.base_url}/videos", headers=headers) as response:
                body = await response.read()
                assert response.status == 401, body
                assert SECRET_PROMPT.encode() not in body


# ------------------------------------------------------------------------------ no public door without a key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def local_api_process(tmp_path: Path, *args: str, env: Mapping[str, str] = {}) -> subprocess.Popen[str]:
    """``python -m bot local-api`` as an operator starts it, in a directory with no ``.env``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DISCORD_", "VIDEO_API", "OPENAI_", "LOCAL_"))
    }
    base.update({"PYTHONPATH": str(REPO), "DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "local-api", *args],
        cwd=tmp_path,
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def accepts_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("env", [{}, {"LOCAL_API_KEY": ""}], ids=["unset", "blank"])
def test_local_api_refuses_a_public_address_without_a_key(tmp_path: Path, env: dict[str, str]) -> None:
    port = free_port()
    process = local_api_process(tmp_path, "--host", "0.0.0.0", "--port", str(port), env=env)
    try:
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 2
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: refusing to serve the local renderer on '0.0.0.0' without an API key")
    assert "LOCAL_API_KEY" in lines[0]
    assert not accepts_connections(port)
    assert not (tmp_path / "data").exists()  # it stopped before touching anything


@pytest.mark.parametrize("key_from", ["environment", "command line"])
async def test_local_api_on_a_public_address_with_a_key_requires_it(
    tmp_path: Path, session: aiohttp.ClientSession, key_from: str
) -> None:
    port = free_port()
    address = ("--host", "0.0.0.0", "--port", str(port))
    if key_from == "environment":
        process = local_api_process(tmp_path, *address, env={"LOCAL_API_KEY": KEY})
    else:
        process = local_api_process(tmp_path, *address, "--api-key", KEY)
    try:
        await wait_for(lambda: process.poll() is not None or accepts_connections(port), timeout=60)
        assert process.poll() is None, process.communicate()
        url = f"http://127.0.0.1:{port}/v1/videos"
        async with session.get(url) as anonymous:
            assert anonymous.status == 401
        async with session.get(url, headers={"Authorization": f"Bearer {KEY}"}) as keyed:
            assert keyed.status == 200
            assert (await keyed.json())["data"] == []
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert KEY not in stderr  # the key is never logged


# ------------------------------------------------------------------------------ memory


async def test_a_full_queue_answers_429_and_keeps_nothing_more(
    make_renderer: RendererFactory, session: aiohttp.ClientSession, clock: ManualClock, tmp_path: Path
) -> None:
    renderer = await make_renderer(max_active_jobs=3, max_jobs=5)
    client = Client(session, renderer, None)
    accepted = [await client.create(f"job {n}") for n in range(3)]
    # Their renders (frames held in worker threads) finish first: only the requests are measured.
    # The clock does not move, so the three stay in progress and the queue stays full.
    for job in accepted:
        await wait_rendered(renderer, job["id"])

    tracemalloc.start()
    try:
        before = traced_bytes()
        for n in range(50):
            refused = await client.request(
                "POST", "/videos", json_body={"prompt": f"flood {n} " + "x" * 30_000, "seconds": "4"}
            )
            assert refused.status == 429
            assert refused.error["code"] == "too_many_active_jobs"
            assert "3 videos queued or in progress" in refused.error["message"]
            assert int(refused.headers["Retry-After"]) >= 1
        grown = traced_bytes() - before
    finally:
        tracemalloc.stop()
    assert len(renderer.jobs.all()) == 3
    listing = (await client.request("GET", "/videos")).json()
    assert sorted(video["id"] for video in listing["data"]) == sorted(job["id"] for job in accepted)
    # 50 refused prompts of 30 kB each would be 1.5 MB if anything kept them.
    assert grown < 500_000, grown

    # Once the queue drains, creating works again; finished jobs beyond max_jobs are forgotten.
    clock.advance(renderer.config.generation_seconds)
    for job in accepted:
        await wait_rendered(renderer, job["id"])
    later = [(await client.completed(clock, f"later {n}"))["id"] for n in range(3)]
    kept = [job.id for job in renderer.jobs.all()]
    assert len(kept) == 5
    assert kept == [accepted[1]["id"], accepted[2]["id"], *later]
    forgotten = await client.request("GET", f"/videos/{accepted[0]['id']}")
    assert forgotten.status == 404
    await wait_for(lambda: not (tmp_path / "renderer" / accepted[0]["id"]).exists())


async def test_rejected_bodies_are_not_kept_in_memory(
    make_renderer: RendererFactory, session: aiohttp.ClientSession
) -> None:
    renderer = await make_renderer(api_key=KEY)
    stranger = Client(session, renderer, None)
    owner = Client(session, renderer, KEY)
    garbage = b"{" + b"x" * 1_000_000
    tracemalloc.start()
    try:
        before = traced_bytes()
        for _ in range(20):
            assert (await stranger.request("POST", "/videos", body=garbage)).status == 401
            assert (await owner.request("POST", "/videos", body=garbage)).status == 400
        grown = traced_bytes() - before
    finally:
        tracemalloc.stop()
    # 40 MB were sent; keeping even the last body of each connection would show.
    assert grown < 500_000, grown
    assert renderer.jobs.all() == []


async def test_queued_jobs_keep_their_reference_image_on_disk_not_in_memory(
    make_renderer: RendererFactory, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    renderer = await make_renderer()
    client = Client(session, renderer, None)
    reference = noise_png((720, 1280))
    assert len(reference) > 2_000_000
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in {"prompt": "a reference", "seconds": "4", "size": "720x1280"}.items():
        form.add_field(name, value)
    form.add_field("input_reference", reference, filename="ref.png", content_type="image/png")
    payload = form()
    assert isinstance(payload, aiohttp.MultipartWriter)
    body, content_type = await payload.as_bytes(), payload.content_type
    created = []
    for _ in range(6):
        reply = await client.request("POST", "/videos", body=body, content_type=content_type)
        assert reply.status == 200, reply.body
        created.append(reply.json()["id"])
    # At most two render at a time, so most of these jobs are waiting: none holds image bytes.
    for job in renderer.jobs.all():
        held = [name for name, value in vars(job).items() if isinstance(value, bytes | bytearray)]
        assert held == [], (job.id, held)
    for path in files_under(tmp_path / "renderer"):
        if path.name == "reference":
            with contextlib.suppress(FileNotFoundError):  # its render may just have taken it
                assert path.read_bytes() == reference

    for video_id in created:
        await wait_rendered(renderer, video_id)
    # Once used, the reference is deleted; what remains is what downloads serve.
    names = {path.name for path in files_under(tmp_path / "renderer")}
    assert names == {"video.mp4", "thumbnail.webp", "spritesheet.webp"}
    assert renderer.jobs.stored_bytes == bytes_under(tmp_path / "renderer")


# ------------------------------------------------------------------------------ disk


async def test_the_stored_bytes_cap_deletes_the_oldest_files_and_fails_a_render_too_large(
    make_renderer: RendererFactory, session: aiohttp.ClientSession, clock: ManualClock, tmp_path: Path
) -> None:
    renderer = await make_renderer()
    client = Client(session, renderer, None)
    first = await client.completed(clock, "first")
    one_render = bytes_under(tmp_path / "renderer")
    assert one_render == renderer.jobs.stored_bytes > 0
    renderer.config.max_stored_bytes = int(one_render * 2.5)

    second = await client.completed(clock, "second")
    assert (tmp_path / "renderer" / first["id"]).exists()
    third = await client.completed(clock, "third")
    # Three renders do not fit: the oldest finished job's files made room.
    assert not (tmp_path / "renderer" / first["id"]).exists()
    assert bytes_under(tmp_path / "renderer") <= renderer.config.max_stored_bytes
    gone = await client.request("GET", f"/videos/{first['id']}/content")
    assert (gone.status, gone.error["code"]) == (404, "video_expired")
    evicted = (await client.request("GET", f"/videos/{first['id']}")).json()
    assert evicted["expires_at"] <= clock.now
    for video in (second, third):
        assert (await client.request("GET", f"/videos/{video['id']}/content")).status == 200

    renderer.config.max_stored_bytes = one_render // 2
    created = await client.create("too big to keep")
    clock.advance(renderer.config.generation_seconds)
    await wait_rendered(renderer, created["id"])
    failed = (await client.request("GET", f"/videos/{created['id']}")).json()
    assert failed["status"] == "failed"
    assert "storage limit" in failed["error"]["message"]
    # Its files are gone; the files already kept stay (the limit was lowered under them).
    remaining = {path.parent.name for path in files_under(tmp_path / "renderer")}
    assert remaining == {second["id"], third["id"]}


async def test_expired_files_are_deleted_and_old_jobs_forgotten_by_the_cleanup(
    make_renderer: RendererFactory, session: aiohttp.ClientSession, clock: ManualClock, tmp_path: Path
) -> None:
    renderer = await make_renderer(cleanup_interval_seconds=0.05, job_retention_seconds=86_400)
    client = Client(session, renderer, None)
    expiring = await client.completed(clock, "expiring")
    deleted = await client.completed(clock, "deleted by its owner")
    directory = tmp_path / "renderer" / expiring["id"]
    assert {path.name for path in files_under(directory)} == {
        "video.mp4",
        "thumbnail.webp",
        "spritesheet.webp",
    }

    assert (await client.request("DELETE", f"/videos/{deleted['id']}")).status == 200
    assert not (tmp_path / "renderer" / deleted["id"]).exists()

    clock.advance(renderer.config.asset_ttl_seconds)
    await wait_for(lambda: not directory.exists())
    assert renderer.jobs.stored_bytes == 0
    assert files_under(tmp_path / "renderer") == []
    expired = await client.request("GET", f"/videos/{expiring['id']}/content")
    assert (expired.status, expired.error["code"]) == (404, "video_expired")
    assert (await client.request("GET", f"/videos/{expiring['id']}")).json()["status"] == "completed"

    clock.advance(86_400)
    await wait_for(lambda: renderer.jobs.get(expiring["id"]) is None)
    assert (await client.request("GET", f"/videos/{expiring['id']}")).status == 404
    assert (await client.request("GET", "/videos")).json()["data"] == []


def test_limits_that_cannot_work_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="max_active_jobs cannot exceed max_jobs"):
        LocalRendererConfig(max_jobs=10, max_active_jobs=11)
    with pytest.raises(ValueError, match="max_stored_bytes must be at least 1"):
        LocalRendererConfig(max_stored_bytes=0)
    with pytest.raises(ValueError, match="without an API key"):
        LocalRenderer(LocalRendererConfig(), host="0.0.0.0")
