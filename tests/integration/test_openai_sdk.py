"""The official ``openai`` Python SDK (a test-only dependency) as an outside client of the local
renderer, over real HTTP: every ``client.videos.*`` method, sync and async, and the Python examples of
the contract's seed document run unchanged. A contract proxy sits between them and checks every
request and response against the spec; results are checked with PyAV.

The SDK's video methods carry a ``deprecated`` marker (OpenAI retired its own endpoint); the
warnings are expected here. openai 3.51.0 (the newest release the registry serves) sends ``extend``
and ``edit`` only with an uploaded video: given ``video={"id": ...}`` it refuses before sending
("Expected entry at `video` to be bytes..."). Those two by id go through the SDK's own
``client.post``, as the project's DECISIONS say for what a release lacks.
"""

from __future__ import annotations

import asyncio
import io
import re
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from PIL import Image

from bot.adapters.media import probe_video, render_video
from tests.contract import SPEC_PATH
from tests.fakes.provider import InstrumentedRenderer
from tests.integration.test_videoapi_client import ContractProxy, serving

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KEY = "sk-local-sdk-test"

# Every method the installed SDK has on client.videos, besides its raw/streaming wrappers.
SDK_METHODS = {
    name
    for name in dir(openai.resources.videos.Videos)
    if not name.startswith("_") and name not in ("with_raw_response", "with_streaming_response")
}


@pytest.fixture
def renderer_settings() -> dict[str, Any]:
    return {"generation_seconds": 0.5, "queue_seconds": 0.1, "fps": 2, "poll_after_ms": 50, "api_key": KEY}


@pytest.fixture
async def proxy(renderer: InstrumentedRenderer) -> AsyncIterator[ContractProxy]:
    proxy = ContractProxy(upstream=renderer.base_url)
    async with serving(proxy.handle) as base_url:
        proxy.base_url = base_url
        yield proxy
    assert proxy.violations == []


def clip(tmp_path: Path) -> Path:
    path = tmp_path / "upload.mp4"
    render_video(path, prompt="a clip to upload", width=640, height=360, seconds=2, fps=6)
    return path


def duration(data: bytes, tmp_path: Path, name: str) -> float:
    path = tmp_path / name
    path.write_bytes(data)
    info = probe_video(path)
    assert info.codec == "h264"
    return info.duration


class Recorder:
    """Runs SDK calls and remembers which ``client.videos`` methods were driven."""

    def __init__(self) -> None:
        self.driven: set[str] = set()

    async def sync(self, client: openai.OpenAI, method: str, *args: Any, **kwargs: Any) -> Any:
        self.driven.add(method)
        # The sync client blocks: it runs in a thread so the renderer (on this loop) can answer.
        return await asyncio.to_thread(getattr(client.videos, method), *args, **kwargs)

    async def asynchronous(self, client: openai.AsyncOpenAI, method: str, *args: Any, **kwargs: Any) -> Any:
        self.driven.add(method)
        return await getattr(client.videos, method)(*args, **kwargs)


async def test_every_sync_sdk_method_against_the_local_renderer(proxy: ContractProxy, tmp_path: Path) -> None:
    client = openai.OpenAI(api_key=KEY, base_url=proxy.base_url, max_retries=0)
    sdk = Recorder()
    try:
        created = await sdk.sync(
            client, "create", prompt="A calico cat playing a piano on stage", seconds="4"
        )
        assert (created.status, created.model, created.size, created.seconds) == (
            "queued",
            "sora-2",
            "720x1280",
            "4",
        )
        done = await sdk.sync(client, "poll", created.id, poll_interval_ms=50)
        assert (done.status, done.progress) == ("completed", 100)
        video = await sdk.sync(
            client,
            "create_and_poll",
            prompt="A lighthouse at dusk",
            model="sora-2-2025-10-06",
            size="1280x720",
            seconds="8",
            poll_interval_ms=50,
        )
        assert (video.status, video.model, video.seconds) == ("completed", "sora-2-2025-10-06", "8")
        assert (await sdk.sync(client, "retrieve", video.id)).status == "completed"

        content = await sdk.sync(client, "download_content", video.id)
        assert duration(content.read(), tmp_path, "video.mp4") == pytest.approx(8, abs=0.3)
        for variant in ("thumbnail", "spritesheet"):
            asset = await sdk.sync(client, "download_content", video.id, variant=variant)
            assert asset.response.headers["content-type"] == "image/webp"
            with Image.open(io.BytesIO(asset.read())) as image:
                assert image.format == "WEBP"

        page = await sdk.sync(client, "list", limit=1)
        assert [v.id for v in page.data] == [video.id] and page.has_more
        assert {v.id for v in (await sdk.sync(client, "list")).data} == {created.id, video.id}

        remix = await sdk.sync(client, "remix", video.id, prompt="the same at night")
        assert remix.remixed_from_video_id == video.id

        extension = await asyncio.to_thread(
            client.post,
            "/videos/extensions",
            body={"video": {"id": video.id}, "prompt": "the storm arrives", "seconds": "4"},
            cast_to=openai.types.Video,
        )
        assert extension.seconds == "12"  # the stitched total
        extension = await sdk.sync(client, "poll", extension.id, poll_interval_ms=50)
        content = await sdk.sync(client, "download_content", extension.id, variant="video")
        assert duration(content.read(), tmp_path, "extension.mp4") == pytest.approx(12, abs=0.3)
        upload = clip(tmp_path)
        extension_of_upload = await sdk.sync(client, "extend", video=upload, prompt="and on", seconds="8")
        extension_of_upload = await sdk.sync(client, "poll", extension_of_upload.id, poll_interval_ms=50)
        assert (extension_of_upload.status, extension_of_upload.seconds) == ("completed", "10")
        content = await sdk.sync(client, "download_content", extension_of_upload.id)
        assert duration(content.read(), tmp_path, "extension-of-upload.mp4") == pytest.approx(10, abs=0.3)

        edit = await asyncio.to_thread(
            client.post,
            "/videos/edits",
            body={"video": {"id": video.id}, "prompt": "make it snow"},
            cast_to=openai.types.Video,
        )
        assert (edit.size, edit.seconds) == ("1280x720", "8")
        edit_of_upload = await sdk.sync(client, "edit", video=upload, prompt="add a rainbow")
        edit_of_upload = await sdk.sync(client, "poll", edit_of_upload.id, poll_interval_ms=50)
        assert (edit_of_upload.status, edit_of_upload.size) == ("completed", "1280x720")
        content = await sdk.sync(client, "download_content", edit_of_upload.id)
        assert duration(content.read(), tmp_path, "edit.mp4") == pytest.approx(2, abs=0.3)

        character = await sdk.sync(client, "create_character", name="Captain Whiskers", video=upload)
        assert character.id and character.name == "Captain Whiskers"
        fetched = await sdk.sync(client, "get_character", character.id)
        assert (fetched.id, fetched.name, fetched.created_at) == (
            character.id,
            character.name,
            character.created_at,
        )

        await sdk.sync(client, "poll", remix.id, poll_interval_ms=50)
        deleted = await sdk.sync(client, "delete", remix.id)
        assert (deleted.id, deleted.deleted) == (remix.id, True)
        with pytest.raises(openai.NotFoundError):
            await asyncio.to_thread(client.videos.retrieve, remix.id)
        with pytest.raises(openai.BadRequestError, match="16"):
            # 16 is an extension length, not a create length: the enum is strict.
            await asyncio.to_thread(client.videos.create, prompt="x", seconds="16")  # type: ignore[arg-type]
        # That request is outside the contract on purpose.
        proxy.violations = [v for v in proxy.violations if "'16' is not one of" not in v]
    finally:
        client.close()
    assert sdk.driven == SDK_METHODS, f"not driven: {sorted(SDK_METHODS - sdk.driven)}"


async def test_every_async_sdk_method_against_the_local_renderer(
    proxy: ContractProxy, tmp_path: Path
) -> None:
    sdk = Recorder()
    async with openai.AsyncOpenAI(api_key=KEY, base_url=proxy.base_url, max_retries=0) as client:
        video = await sdk.asynchronous(
            client, "create_and_poll", prompt="A paper boat", seconds="4", poll_interval_ms=50
        )
        assert video.status == "completed"
        created = await sdk.asynchronous(
            client, "create", prompt="second", model="sora-2-pro", size="1792x1024"
        )
        assert (await sdk.asynchronous(client, "poll", created.id, poll_interval_ms=50)).size == "1792x1024"
        assert (await sdk.asynchronous(client, "retrieve", video.id)).id == video.id
        assert len((await sdk.asynchronous(client, "list", order="asc")).data) == 2
        content = await sdk.asynchronous(client, "download_content", video.id, variant="video")
        assert duration(content.read(), tmp_path, "async.mp4") == pytest.approx(4, abs=0.3)
        remix = await sdk.asynchronous(client, "remix", video.id, prompt="remixed")
        extension = await client.post(
            "/videos/extensions",
            body={"video": {"id": video.id}, "prompt": "and then", "seconds": "20"},
            cast_to=openai.types.Video,
        )
        assert extension.seconds == "24"
        upload = clip(tmp_path)
        edit = await sdk.asynchronous(client, "edit", video=upload, prompt="edited")
        assert (
            await sdk.asynchronous(client, "extend", video=upload, prompt="on", seconds="4")
        ).seconds == "6"
        character = await sdk.asynchronous(client, "create_character", name="Boat", video=upload)
        assert (await sdk.asynchronous(client, "get_character", character.id)).name == "Boat"
        for job in (remix, extension, edit):
            finished = await sdk.asynchronous(client, "poll", job.id, poll_interval_ms=50)
            assert finished.status == "completed", finished
        content = await sdk.asynchronous(client, "download_content", extension.id)
        assert duration(content.read(), tmp_path, "async-extension.mp4") == pytest.approx(24, abs=0.3)
        assert (await sdk.asynchronous(client, "delete", remix.id)).deleted is True
        with pytest.raises(openai.NotFoundError):
            await client.videos.get_character("char_missing")
    assert sdk.driven == SDK_METHODS, f"not driven: {sorted(SDK_METHODS - sdk.driven)}"


def seed_examples() -> list[tuple[str, str]]:
    """(operationId, Python example) for every operation of the contract that has one."""
    spec = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    examples = []
    for operations in spec["paths"].values():
        for operation in operations.values():
            request = operation.get("x-oaiMeta", {}).get("examples", {}).get("request", {})
            if isinstance(request, dict) and "python" in request:
                examples.append((operation["operationId"], request["python"]))
    return examples


async def test_the_seed_documents_python_examples_run_unchanged(
    proxy: ContractProxy, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", proxy.base_url)
    examples = dict(seed_examples())
    # Deleting comes last: it removes the video the others use.
    order = [
        "createVideo",
        "ListVideos",
        "GetVideo",
        "RetrieveVideoContent",
        "CreateVideoRemix",
        "DeleteVideo",
    ]
    assert sorted(examples) == sorted(order), "an example was added to the contract: run it here"

    def run(code: str) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            exec(compile(code, "<seed example>", "exec"), {"__name__": "__seed__"})
        return capsys.readouterr().out

    printed = await asyncio.to_thread(run, examples["createVideo"])
    video_id = printed.strip()
    assert re.fullmatch(r"video_[0-9a-f]{32}", video_id)
    async with openai.AsyncOpenAI(api_key=KEY, base_url=proxy.base_url) as client:
        assert (await client.videos.poll(video_id, poll_interval_ms=50)).status == "completed"
    for operation in order[1:]:
        # The examples name "video_123"; here it is the video the first example created.
        printed = await asyncio.to_thread(run, examples[operation].replace("video_123", video_id))
        if operation == "RetrieveVideoContent":
            assert "HttpxBinaryResponseContent" in printed or "Response" in printed
            assert printed.count("\n") >= 2
        elif operation != "CreateVideoRemix":
            assert printed.strip() == video_id, (operation, printed)
        else:
            assert re.fullmatch(r"video_[0-9a-f]{32}", printed.strip()) and printed.strip() != video_id
    with pytest.raises(openai.NotFoundError):
        await asyncio.to_thread(openai.OpenAI().videos.retrieve, video_id)
