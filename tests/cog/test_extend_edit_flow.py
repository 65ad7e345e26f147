"""Extend and Edit end to end through the fake Discord: the whole bot as ``videobot run`` wires it
(in-process, tests/inprocess.py: its gateway, cogs, tracker, store and client), the fake Discord
and the local renderer. One bot serves the whole story: a delivered video is extended through its
button and form, then edited, then a clip of the member's own is edited with ``/edit``; a
stranger's presses are refused with nothing sent; a source the provider no longer has is explained
and not charged. ``test_extend_edit.py`` covers the rest (autocomplete, chains, Again, forged
lengths, limits on the press, an endpoint the provider lacks)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from bot.adapters.media import render_video
from tests.fakes.discord import FakeDiscord
from tests.fakes.provider import InstrumentedRenderer, RecordedFile
from tests.flows import (
    allow_back_to_back_requests,
    buttons,
    embed_of,
    ephemeral_text,
    field_value,
    is_final,
    job_number,
    job_row,
    make_video,
    mp4_uploads,
    recorded_as_delivered,
)
from tests.helpers import FAILED, READY
from tests.inprocess import InProcessBot


@pytest.fixture
def renderer_settings() -> dict[str, Any]:
    """Quick renders at few frames a second: extensions make long videos, and every frame costs CPU
    (durations and sizes do not depend on it)."""
    return {"generation_seconds": 0.5, "queue_seconds": 0.1, "fps": 3, "poll_after_ms": 100}


def seconds_of(data: bytes) -> float:
    """An MP4's duration, read with PyAV."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.duration is not None and stream.time_base is not None
        return float(stream.duration * stream.time_base)


def provider_posts(renderer: InstrumentedRenderer) -> list[str]:
    return [r.path for r in renderer.requests if r.method == "POST"]


async def test_extend_and_edit_a_delivered_video_and_edit_an_uploaded_clip(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    await bot.start()
    assert {c["name"] for c in fake.commands()} >= {"extend", "edit"}
    await allow_back_to_back_requests(fake)
    alice = int(fake.default_user["id"])
    bob = int(fake.add_member(name="bob")["user"]["id"])
    source = await make_video(fake, "a red fox in snow")
    source_job = job_number(source)
    assert list(buttons(source)) == ["Remix", "Extend", "Edit", "Again", "Details"]
    await recorded_as_delivered(bot, source_job)
    source_video = job_row(bot, source_job)["provider_video_id"]
    link = f"https://discord.com/channels/{fake.guild_id}/{fake.channel_id}/{source.id}"

    # A stranger's presses are refused on the spot: no form, nothing sent to the provider.
    before = len(renderer.requests)
    for label, verb in [("Extend", "extend it"), ("Edit", "edit it")]:
        pressed = await fake.invoke_component(source, buttons(source)[label]["custom_id"], user=bob)
        assert (await ephemeral_text(pressed)).startswith(
            f"This is <@{alice}>'s video: only they or a moderator can {verb}"
        )
        assert pressed.callback_type == 4
    assert len(renderer.requests) == before

    # Extend → form → one extension request → one MP4 of source and new segment.
    mark = fake.mark()
    pressed = await fake.invoke_component(source, buttons(source)["Extend"]["custom_id"])
    form = await pressed.modal()
    submitted = await fake.submit_modal(
        form["custom_id"], {"prompt": "the fox leaps a stream", "seconds": "8"}
    )
    extension = await submitted.original_message(timeout=60, predicate=is_final(READY))
    extensions = [r for r in renderer.requests if r.method == "POST" and r.path == "/v1/videos/extensions"]
    assert [r.json_body for r in extensions] == [
        {"video": {"id": source_video}, "prompt": "the fox leaps a stream", "seconds": "8"}
    ]
    embed = embed_of(extension)
    assert (field_value(embed, "Extension of") or "").startswith(f"[Job #{source_job}]({link})")
    assert field_value(embed, "Duration") == "12 s in all (8 s added)"
    assert field_value(embed, "Cost") == "8 credits"
    [(_, video)] = mp4_uploads(fake, mark)
    assert abs(seconds_of(video) - (4 + 8)) < 0.5
    await recorded_as_delivered(bot, job_number(extension))
    row = job_row(bot, job_number(extension))
    assert (row["kind"], row["source_job_id"], row["seconds"], row["total_seconds"]) == (
        "extension",
        source_job,
        8,
        12,
    )

    # Edit → form → one edit request with the source's id.
    mark = fake.mark()
    pressed = await fake.invoke_component(source, buttons(source)["Edit"]["custom_id"])
    submitted = await fake.submit_modal((await pressed.modal())["custom_id"], {"prompt": "make it night"})
    edited = await submitted.original_message(timeout=60, predicate=is_final(READY))
    edits = [r for r in renderer.requests if r.method == "POST" and r.path == "/v1/videos/edits"]
    assert [r.json_body for r in edits] == [{"video": {"id": source_video}, "prompt": "make it night"}]
    assert (field_value(embed_of(edited), "Edit of") or "").startswith(f"[Job #{source_job}]({link})")
    [(_, video)] = mp4_uploads(fake, mark)
    assert abs(seconds_of(video) - 4) < 0.5

    # /edit with a clip of the member's own: sent as an H.264 upload, priced by its length.
    clip = tmp_path / "mine.mp4"
    render_video(clip, prompt="my own clip", width=480, height=640, seconds=6, fps=6)
    mark = fake.mark()
    handle = await fake.invoke_command(
        "edit",
        {"prompt": "paint it in watercolour"},
        attachments={"clip": (clip.read_bytes(), "mine.mp4", "video/mp4")},
    )
    from_clip = await handle.original_message(timeout=60, predicate=is_final(READY))
    upload = [r for r in renderer.requests if r.method == "POST" and r.path == "/v1/videos/edits"][-1]
    assert upload.form is not None and upload.form["prompt"] == "paint it in watercolour"
    assert isinstance(upload.form["video"], RecordedFile) and upload.form["video"].content_type == "video/mp4"
    embed = embed_of(from_clip)
    assert field_value(embed, "Edit of") == "an uploaded clip"
    assert (field_value(embed, "Cost"), field_value(embed, "Size")) == ("8 credits", "720x1280")
    [(_, video)] = mp4_uploads(fake, mark)
    assert abs(seconds_of(video) - 6) < 0.5

    # The provider deleted the source: an extension of it is explained and not charged.
    async with (
        aiohttp.ClientSession() as session,
        session.delete(f"{renderer.base_url}/videos/{source_video}") as response,
    ):
        assert response.status == 200
    handle = await fake.invoke_command("extend", {"video": source_job, "prompt": "and on", "seconds": 4})
    failed = await handle.original_message(timeout=60, predicate=is_final(FAILED))
    assert field_value(embed_of(failed), "What happened") == (
        "The provider no longer has the source video, so it can't be extended."
    )
    assert field_value(embed_of(failed), "Credits") == "Nothing was charged for this video."
    quota = await ephemeral_text(await fake.invoke_command("quota"))
    assert "**36** credits left of 60" in quota  # 4 + 8 + 4 + 8; nothing for the failed one
    assert provider_posts(renderer).count("/v1/videos/extensions") == 2
