"""Extensions, edits, characters, model aliases and content types of the local renderer, over real
HTTP; every exchange is checked against the spec (``tests/contract.py``)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from PIL import Image, ImageChops, ImageStat

from bot.adapters.media import probe_video, render_video
from tests.helpers import ManualClock
from tests.integration import test_local_renderer as main_tests
from tests.integration.test_local_renderer import PORTRAIT, CheckedApi, Reply, multipart_body, png

# The fixtures of the renderer's main tests: FAST_CONFIG on a manual clock, a checked API.
clock = main_tests.clock
renderer_settings = main_tests.renderer_settings
session = main_tests.session
api = main_tests.api


async def completed(api: CheckedApi, clock: ManualClock, reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply.body
    video = reply.json()
    clock.advance(api.renderer.config.generation_seconds)
    await api.renderer.wait_rendered(video["id"])
    resource = await api.get(video["id"])
    assert resource["status"] == "completed", resource
    return resource


async def download(api: CheckedApi, video_id: str, tmp_path: Path, variant: str = "video") -> Reply:
    reply = await api.request("GET", f"/videos/{video_id}/content", params={"variant": variant})
    assert reply.status == 200, reply.body
    (tmp_path / f"{video_id}.{variant}").write_bytes(reply.body)
    return reply


def frame_at(path: Path, seconds: float) -> Image.Image:
    """The frame shown at ``seconds``."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        chosen = None
        for frame in container.decode(stream):
            if frame.time is not None and frame.time > seconds + 1e-6:
                break
            chosen = frame.to_image()
        assert chosen is not None
        return chosen


def changed(a: Image.Image, b: Image.Image) -> float:
    """The share of pixels whose brightness differs by more than a fifth of the range."""
    diff = ImageChops.difference(a.convert("L"), b.convert("L")).point(lambda v: 255 if v > 50 else 0)
    return float(ImageStat.Stat(diff).mean[0]) / 255


def clip(
    tmp_path: Path, *, seconds: float, size: tuple[int, int] = (640, 360), prompt: str = "clip"
) -> bytes:
    path = tmp_path / f"clip-{seconds}-{size[0]}x{size[1]}.mp4"
    render_video(path, prompt=prompt, width=size[0], height=size[1], seconds=seconds, fps=6)
    return path.read_bytes()


# ------------------------------------------------------------------------------ extensions


@pytest.mark.parametrize("seconds", ["4", "20"])
async def test_extension_is_the_source_followed_by_a_segment_of_the_new_prompt(
    api: CheckedApi, clock: ManualClock, tmp_path: Path, seconds: str
) -> None:
    source = await api.create_completed(clock, prompt="A lighthouse at dusk", size=PORTRAIT)
    reply = await api.request(
        "POST",
        "/videos/extensions",
        json_body={"video": {"id": source["id"]}, "prompt": "The storm arrives", "seconds": seconds},
    )
    queued = reply.json()
    assert queued["status"] == "queued"
    # The contract: "For extensions, this is the stitched total duration."
    assert queued["seconds"] == str(4 + int(seconds))
    assert (queued["model"], queued["size"], queued["prompt"]) == ("sora-2", PORTRAIT, "The storm arrives")
    extension = await completed(api, clock, reply)

    await download(api, source["id"], tmp_path)
    await download(api, extension["id"], tmp_path)
    source_file, extension_file = tmp_path / f"{source['id']}.video", tmp_path / f"{extension['id']}.video"
    info = probe_video(extension_file)
    assert (info.width, info.height, info.codec) == (720, 1280, "h264")
    assert info.duration == pytest.approx(4 + int(seconds), abs=0.3)
    # The first part is the source, frame for frame; the new part then shows the new prompt.
    panel = (0, 0, 720, 300)
    for at in (0.0, 2.0, 3.75):
        assert changed(frame_at(extension_file, at), frame_at(source_file, at)) < 0.001
    for at in (4.0, 5.0, 3.75 + int(seconds)):
        assert changed(frame_at(extension_file, at).crop(panel), frame_at(source_file, 0).crop(panel)) > 0.01


async def test_extensions_chain_and_multipart_bodies_as_sdks_send_them_work(
    api: CheckedApi, clock: ManualClock, tmp_path: Path
) -> None:
    source = await api.create_completed(clock, prompt="first", size=PORTRAIT)
    body, content_type = await multipart_body({"video[id]": source["id"], "prompt": "second", "seconds": "8"})
    first = await completed(
        api, clock, await api.request("POST", "/videos/extensions", body=body, content_type=content_type)
    )
    assert first["seconds"] == "12"
    second = await completed(
        api,
        clock,
        await api.request(
            "POST",
            "/videos/extensions",
            json_body={"video": {"id": first["id"]}, "prompt": "third", "seconds": "4"},
        ),
    )
    assert second["seconds"] == "16"
    await download(api, second["id"], tmp_path)
    assert probe_video(tmp_path / f"{second['id']}.video").duration == pytest.approx(16, abs=0.3)


async def test_extension_bodies_are_validated_with_the_extension_list(
    api: CheckedApi, clock: ManualClock
) -> None:
    source = await api.create_completed(clock, prompt="source", size=PORTRAIT)
    video = {"id": source["id"]}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"video": video, "prompt": "p", "seconds": "6"}, "seconds", "'4', '8', '12', '16' and '20'"),
        ({"video": video, "prompt": "p", "seconds": 8}, "seconds", "as a string"),
        ({"video": video, "prompt": "p"}, "seconds", "as a string"),
        ({"prompt": "p", "seconds": "4"}, "video", "Missing required parameter"),
        ({"video": source["id"], "prompt": "p", "seconds": "4"}, "video", "'id'"),
        ({"video": video, "seconds": "4"}, "prompt", "Missing required parameter"),
        ({"video": video, "prompt": "p", "seconds": "4", "model": "sora-2"}, "model", "Unrecognized"),
    ]
    for body, param, words in cases:
        reply = await api.request("POST", "/videos/extensions", json_body=body, check_request=False)
        assert reply.status == 400, body
        error = reply.json()["error"]
        assert (error["param"], error["type"]) == (param, "invalid_request_error"), body
        assert words in error["message"], (body, error)
    # The create enum stays strict: 16 is an extension length only.
    reply = await api.request(
        "POST", "/videos", json_body={"prompt": "p", "seconds": "16"}, check_request=False
    )
    assert (reply.status, reply.json()["error"]["param"]) == (400, "seconds")


async def test_only_completed_existing_videos_are_extended_or_edited(
    api: CheckedApi, clock: ManualClock
) -> None:
    running = await api.create(prompt="still going", size=PORTRAIT)
    for path, extra in (("/videos/extensions", {"seconds": "4"}), ("/videos/edits", {})):
        reply = await api.request(
            "POST", path, json_body={"video": {"id": running["id"]}, "prompt": "next", **extra}
        )
        assert reply.status == 400
        assert reply.json()["error"]["code"] == "invalid_video_status"
        assert "only completed videos can be" in reply.json()["error"]["message"]
        missing = await api.request(
            "POST", path, json_body={"video": {"id": "video_nope"}, "prompt": "next", **extra}
        )
        assert missing.status == 404
        assert "video_nope" in missing.json()["error"]["message"]


async def test_extension_beyond_the_renderers_longest_video_is_refused(
    make_renderer: Any, clock: ManualClock
) -> None:
    renderer = await make_renderer(max_video_seconds=10)
    async with aiohttp.ClientSession() as session:
        api = CheckedApi(session, renderer)
        source = await api.create_completed(clock, prompt="source", size=PORTRAIT, seconds="8")
        reply = await api.request(
            "POST",
            "/videos/extensions",
            json_body={"video": {"id": source["id"]}, "prompt": "more", "seconds": "4"},
        )
    assert reply.status == 400
    assert "12-second video" in reply.json()["error"]["message"]
    assert "at most 10 seconds" in reply.json()["error"]["message"]


# ------------------------------------------------------------------------------ edits


async def test_edit_of_a_video_re_renders_it_with_the_edit_prompt_visible(
    api: CheckedApi, clock: ManualClock, tmp_path: Path
) -> None:
    source = await api.create_completed(clock, prompt="A red fox in the snow", size="1280x720", seconds="8")
    reply = await api.request(
        "POST", "/videos/edits", json_body={"video": {"id": source["id"]}, "prompt": "Make it night"}
    )
    edit = await completed(api, clock, reply)
    assert (edit["seconds"], edit["size"], edit["prompt"]) == ("8", "1280x720", "Make it night")
    assert edit["remixed_from_video_id"] is None
    await download(api, source["id"], tmp_path)
    await download(api, edit["id"], tmp_path)
    source_file, edit_file = tmp_path / f"{source['id']}.video", tmp_path / f"{edit['id']}.video"
    info = probe_video(edit_file)
    assert (info.width, info.height) == (1280, 720)
    assert info.duration == pytest.approx(8, abs=0.3)
    # The edit prompt's panel covers the top of every frame; the moving parts below stay the source's.
    for at in (0.0, 4.0, 7.5):
        edited, original = frame_at(edit_file, at), frame_at(source_file, at)
        top = (0, 0, 1280, 200)
        assert changed(edited.crop(top), original.crop(top)) > 0.01
        bottom = (0, 500, 1280, 720)
        assert changed(edited.crop(bottom), original.crop(bottom)) < 0.001


async def test_edit_of_an_uploaded_clip_fits_it_to_the_nearest_size(
    api: CheckedApi, clock: ManualClock, tmp_path: Path
) -> None:
    data = clip(tmp_path, seconds=5.0, size=(640, 360))
    body, content_type = await multipart_body(
        {"prompt": "Add falling snow"}, {"video": ("clip.mp4", data, "video/mp4")}
    )
    reply = await api.request("POST", "/videos/edits", body=body, content_type=content_type)
    edit = await completed(api, clock, reply)
    assert (edit["size"], edit["seconds"], edit["model"]) == ("1280x720", "5", "sora-2")
    await download(api, edit["id"], tmp_path)
    info = probe_video(tmp_path / f"{edit['id']}.video")
    assert (info.width, info.height) == (1280, 720)
    assert info.duration == pytest.approx(5, abs=0.3)
    # The upload is not kept: only the rendered files remain.
    directory = api.renderer.jobs.get(edit["id"]).directory  # type: ignore[union-attr]
    assert sorted(p.name for p in directory.iterdir()) == ["spritesheet.webp", "thumbnail.webp", "video.mp4"]


async def test_uploaded_clips_are_checked_by_content(api: CheckedApi, tmp_path: Path) -> None:
    too_long = clip(tmp_path, seconds=21.0, size=(160, 90))
    cases = [
        (b"not a video at all" * 100, "not a readable video"),
        (png((320, 180)), "cannot be used"),
        (too_long, "21.0 seconds long"),
    ]
    for data, words in cases:
        for path, fields_ in (("/videos/edits", {"prompt": "p"}), ("/videos/characters", {"name": "n"})):
            body, content_type = await multipart_body(fields_, {"video": ("clip.mp4", data, "video/mp4")})
            reply = await api.request("POST", path, body=body, content_type=content_type)
            assert reply.status == 400, (path, words)
            error = reply.json()["error"]
            assert error["param"] == "video"
            assert words in error["message"], (path, error)
    assert api.renderer.jobs.all() == []


async def test_huge_picture_is_refused_before_it_is_decoded(make_renderer: Any, tmp_path: Path) -> None:
    renderer = await make_renderer(max_clip_pixels=320 * 180)
    async with aiohttp.ClientSession() as session:
        api = CheckedApi(session, renderer)
        body, content_type = await multipart_body(
            {"prompt": "p"}, {"video": ("clip.mp4", clip(tmp_path, seconds=1, size=(640, 360)), "video/mp4")}
        )
        reply = await api.request("POST", "/videos/edits", body=body, content_type=content_type)
    assert reply.status == 400
    assert "640x360, larger than 57600 pixels" in reply.json()["error"]["message"]


# ------------------------------------------------------------------------------ characters


async def test_characters_are_stored_by_name_and_returned_by_id(api: CheckedApi, tmp_path: Path) -> None:
    body, content_type = await multipart_body(
        {"name": "Captain Whiskers"}, {"video": ("cat.mp4", clip(tmp_path, seconds=2), "video/mp4")}
    )
    reply = await api.request("POST", "/videos/characters", body=body, content_type=content_type)
    assert reply.status == 200, reply.body
    character = reply.json()
    assert character["id"].startswith("char_")
    assert (character["name"], character["created_at"]) == ("Captain Whiskers", 1_800_000_000)
    fetched = await api.request("GET", f"/videos/characters/{character['id']}")
    assert fetched.json() == character
    missing = await api.request("GET", "/videos/characters/char_nope")
    assert missing.status == 404
    assert "char_nope" in missing.json()["error"]["message"]
    long_name, content_type = await multipart_body(
        {"name": "x" * 81}, {"video": ("cat.mp4", clip(tmp_path, seconds=2), "video/mp4")}
    )
    reply = await api.request(
        "POST", "/videos/characters", body=long_name, content_type=content_type, check_request=False
    )
    assert (reply.status, reply.json()["error"]["param"]) == (400, "name")


async def test_characters_kept_are_bounded(make_renderer: Any, tmp_path: Path) -> None:
    renderer = await make_renderer(max_characters=2)
    video = clip(tmp_path, seconds=1, size=(160, 90))
    async with aiohttp.ClientSession() as session:
        api = CheckedApi(session, renderer)
        ids = []
        for name in ("a", "b", "c"):
            body, content_type = await multipart_body(
                {"name": name}, {"video": ("v.mp4", video, "video/mp4")}
            )
            ids.append(
                (
                    await api.request("POST", "/videos/characters", body=body, content_type=content_type)
                ).json()["id"]
            )
        statuses = [(await api.request("GET", f"/videos/characters/{i}")).status for i in ids]
    assert statuses == [404, 200, 200]


# ------------------------------------------------------------------------------ models, types, references


@pytest.mark.parametrize(
    ("model", "size"),
    [
        ("sora-2-2025-10-06", "1280x720"),
        ("sora-2-pro-2025-10-06", "1792x1024"),
        ("sora-2-2025-12-08", PORTRAIT),
    ],
)
async def test_dated_model_aliases_of_the_spec_are_accepted(api: CheckedApi, model: str, size: str) -> None:
    created = await api.create(prompt="dated", model=model, size=size)
    assert (created["model"], created["size"]) == (model, size)


async def test_spritesheet_is_served_as_a_content_type_the_contract_lists(
    api: CheckedApi, clock: ManualClock, tmp_path: Path
) -> None:
    video = await api.create_completed(clock, prompt="sheet", size=PORTRAIT)
    reply = await download(api, video["id"], tmp_path, "spritesheet")
    assert reply.headers["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(reply.body)) as image:
        assert image.format == "WEBP"


async def test_input_reference_as_a_json_data_url(
    api: CheckedApi, clock: ManualClock, tmp_path: Path
) -> None:
    image = png((720, 1280), (0, 160, 80))
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    video = await api.create_completed(
        clock, prompt="from a reference", size=PORTRAIT, input_reference={"image_url": url}
    )
    await download(api, video["id"], tmp_path)
    first = frame_at(tmp_path / f"{video['id']}.video", 0.0).convert("RGB")
    assert first.resize((1, 1)).getpixel((0, 0)) == pytest.approx((0, 160, 80), abs=6)


# ------------------------------------------------------------------------------ security


async def test_the_new_endpoints_need_the_key_before_any_body_is_read(
    make_renderer: Any, tmp_path: Path
) -> None:
    renderer = await make_renderer(api_key="sk-right")
    video = clip(tmp_path, seconds=1, size=(160, 90))
    async with aiohttp.ClientSession() as session:
        api = CheckedApi(session, renderer)
        for path, fields_ in (
            ("/videos/extensions", {"video[id]": "video_x", "prompt": "p", "seconds": "4"}),
            ("/videos/edits", {"prompt": "p"}),
            ("/videos/characters", {"name": "n"}),
        ):
            body, content_type = await multipart_body(fields_, {"video": ("v.mp4", video, "video/mp4")})
            reply = await api.request("POST", path, body=body, content_type=content_type, check_request=False)
            assert reply.status == 401, path
        reply = await api.request("GET", "/videos/characters/char_x", check_request=False)
        assert reply.status == 401
    assert renderer.jobs.all() == [] and renderer.characters == {}


async def test_an_upload_over_the_request_limit_is_refused(api: CheckedApi) -> None:
    huge = b"\0" * (33 * 1024 * 1024)
    body, content_type = await multipart_body({"prompt": "p"}, {"video": ("big.mp4", huge, "video/mp4")})
    reply = await api.request("POST", "/videos/edits", body=body, content_type=content_type)
    assert reply.status == 413
    assert api.renderer.jobs.all() == []
