"""Extend and Edit, in-process (see conftest.py): the buttons, the forms, ``/extend`` and ``/edit``
(with a video or an uploaded clip) through the real command tree and views, against the local
renderer. What is checked is what a member sees (the cards, the MP4 they get, their balance) and
what the provider was sent."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from bot.adapters.media import render_video
from bot.discord.bot import VideoBot
from tests.cog.test_forged_numbers import forge_ranges
from tests.fakes.discord import FakeDiscord, InteractionHandle, StoredMessage
from tests.fakes.provider import InstrumentedRenderer, RecordedFile
from tests.helpers import FAILED, READY, ephemeral_content, wait_for


@pytest.fixture
def renderer_settings() -> dict[str, Any]:
    """Quick renders at few frames a second: extensions make long videos, and every frame costs CPU
    (durations and sizes do not depend on it)."""
    return {"generation_seconds": 0.5, "queue_seconds": 0.1, "fps": 3, "poll_after_ms": 100}


def card(message: StoredMessage) -> dict[str, Any]:
    assert message.embeds, f"message {message.id} has no embed"
    return message.embeds[0]


def field(message: StoredMessage, name: str) -> str | None:
    return next((f["value"] for f in card(message).get("fields", []) if f["name"] == name), None)


def job_number(message: StoredMessage) -> int:
    return int(card(message)["footer"]["text"].split("#")[1])


def labels(message: StoredMessage) -> list[str]:
    return [str(c.get("label")) for row in message.components for c in row.get("components", [])]


def is_final(title: str) -> Any:
    return lambda m: bool(m.embeds) and m.embeds[0].get("title") == title


async def reply(handle: InteractionHandle) -> str:
    return ephemeral_content((await handle.wait_response(timeout=10)).json)


def posts(renderer: InstrumentedRenderer, endpoint: str) -> list[Any]:
    return [r for r in renderer.requests if r.method == "POST" and r.path == f"/v1/videos/{endpoint}"]


def uploaded_seconds(message: StoredMessage) -> float:
    """The duration of the MP4 attached to ``message``, read with PyAV."""
    [attachment] = [a for a in message.attachments if a.filename.endswith(".mp4")]
    with av.open(io.BytesIO(attachment.data)) as container:
        stream = container.streams.video[0]
        assert stream.duration is not None and stream.time_base is not None
        return float(stream.duration * stream.time_base)


async def make_video(fake: FakeDiscord, prompt: str, *, seconds: int = 4) -> StoredMessage:
    handle = await fake.invoke_command("video", {"prompt": prompt, "seconds": seconds})
    done = await handle.original_message(timeout=30, predicate=is_final(READY))
    return done


async def back_to_back(fake: FakeDiscord) -> None:
    await reply(
        await fake.invoke_command(
            "videomod settings", {"cooldown": 0, "max_concurrent": 5}, user=int(fake.owner_user["id"])
        )
    )


async def test_extend_button_makes_one_video_of_source_and_segment_and_chains(
    videobot: VideoBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await back_to_back(fake)
    source = await make_video(fake, "a red fox in snow")
    source_job = job_number(source)
    assert labels(source) == ["Remix", "Extend", "Edit", "Again", "Details"]
    source_video = (await videobot.jobs.get(source_job)).provider_video_id  # type: ignore[union-attr]

    pressed = await fake.invoke_component(source, f"videobot:extend:{source_job}")
    form = await pressed.modal()
    assert form["title"] == f"Extend video #{source_job}"
    submitted = await fake.submit_modal(
        form["custom_id"], {"prompt": "the fox leaps a stream", "seconds": "8"}
    )
    extension = await submitted.original_message(timeout=30, predicate=is_final(READY))

    assert [r.json_body for r in posts(renderer, "extensions")] == [
        {"video": {"id": source_video}, "prompt": "the fox leaps a stream", "seconds": "8"}
    ]
    link = f"https://discord.com/channels/{fake.guild_id}/{fake.channel_id}/{source.id}"
    assert (field(extension, "Extension of") or "").startswith(f"[Job #{source_job}]({link})")
    assert field(extension, "Duration") == "12 s in all (8 s added)"
    assert field(extension, "Cost") == "8 credits"  # the new segment's price
    assert abs(uploaded_seconds(extension) - 12) < 0.5
    first = job_number(extension)
    stored = await videobot.jobs.get(first)
    assert stored is not None and (stored.kind, stored.seconds, stored.total_seconds) == ("extension", 8, 12)

    # /extend offers the member's own finished videos, with their whole length (once recorded:
    # the bot records a delivery right after the upload the member sees).
    await wait_for(lambda: finished(videobot, first), "the extension to be recorded as delivered")
    offered = await (await fake.autocomplete("extend", {"video": ""})).choices()
    assert [c["value"] for c in offered] == [first, source_job]
    assert offered[0]["name"] == f"#{first} · 12 s · the fox leaps a stream"
    bob = int(fake.add_member(name="bob")["user"]["id"])
    assert await (await fake.autocomplete("extend", {"video": ""}, user=bob)).choices() == []

    # A chain: /extend the extension by the shortest segment (the default).
    chained = await fake.invoke_command("extend", {"video": first, "prompt": "and lands softly"})
    second = await chained.original_message(timeout=30, predicate=is_final(READY))
    assert field(second, "Duration") == "16 s in all (4 s added)"
    assert labels(second) == ["Remix", "Extend", "Edit", "Again", "Details"]  # 16 s: still editable
    longer = await fake.invoke_command("extend", {"video": job_number(second), "prompt": "on", "seconds": 8})
    longest = await longer.original_message(timeout=30, predicate=is_final(READY))
    assert field(longest, "Duration") == "24 s in all (8 s added)"
    assert labels(longest) == ["Remix", "Extend", "Again", "Details"]  # sora-2 edits at most 20 s
    refusal = await reply(await fake.invoke_command("edit", {"prompt": "x", "video": job_number(longest)}))
    assert refusal == (
        f"Job #{job_number(longest)} is 24 s long; `sora-2` edits videos of at most 20 seconds. "
        "Edit a shorter one, or a clip with `/edit`."
    )
    assert abs(uploaded_seconds(second) - 16) < 0.5
    assert len(posts(renderer, "extensions")) == 3
    # Again makes the same extension of the same source once more.
    again = await fake.invoke_component(extension, f"videobot:again:{first}")
    repeat = await again.original_message(timeout=30, predicate=is_final(READY))
    assert [r.json_body["seconds"] for r in posts(renderer, "extensions")] == ["8", "4", "8", "8"]
    assert field(repeat, "Duration") == "12 s in all (8 s added)"
    quota = await reply(await fake.invoke_command("quota"))
    assert "**28** credits left of 60" in quota  # 4 + 8 + 4 + 8 + 8

    # Details and /videos show the lineage too.
    details = await fake.invoke_component(second, f"videobot:details:{job_number(second)}")
    details_card = (await details.wait_response(timeout=10)).json["data"]["embeds"][0]
    details_fields = {f["name"]: f["value"] for f in details_card["fields"]}
    assert details_fields["Extension of"].startswith(f"[Job #{first}](")
    assert details_fields["Duration"] == "16 s in all (4 s added)"
    listing = await (await fake.invoke_command("videos")).original_message()
    lines = {line.split("`")[1]: line for line in card(listing)["description"].splitlines()}
    assert f"extension of #{first}" in lines[f"#{job_number(second)}"]
    assert f"extension of #{source_job}" in lines[f"#{first}"]


async def test_edit_button_and_edit_command_with_an_uploaded_clip(
    videobot: VideoBot, fake: FakeDiscord, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    await back_to_back(fake)
    source = await make_video(fake, "a lighthouse at dusk", seconds=8)
    source_job = job_number(source)
    source_video = (await videobot.jobs.get(source_job)).provider_video_id  # type: ignore[union-attr]

    pressed = await fake.invoke_component(source, f"videobot:edit:{source_job}")
    form = await pressed.modal()
    assert form["title"] == f"Edit video #{source_job}"
    submitted = await fake.submit_modal(form["custom_id"], {"prompt": "make it snow"})
    edited = await submitted.original_message(timeout=30, predicate=is_final(READY))
    assert [r.json_body for r in posts(renderer, "edits")] == [
        {"video": {"id": source_video}, "prompt": "make it snow"}
    ]
    assert (field(edited, "Edit of") or "").startswith(f"[Job #{source_job}](")
    assert field(edited, "Cost") == "8 credits" and field(edited, "Duration") == "8 s"
    assert abs(uploaded_seconds(edited) - 8) < 0.5

    # A clip of the member's own: 5.3 s, landscape, an odd size: converted to H.264 at 1280x720,
    # priced as an 8-second video.
    clip = tmp_path / "holiday.mp4"
    render_video(clip, prompt="my clip", width=640, height=360, seconds=5.3, fps=6)
    handle = await fake.invoke_command(
        "edit",
        {"prompt": "turn it into a watercolour"},
        attachments={"clip": (clip.read_bytes(), "holiday.mp4", "video/mp4")},
    )
    from_clip = await handle.original_message(timeout=30, predicate=is_final(READY))
    [upload] = posts(renderer, "edits")[1:]
    assert upload.form is not None and upload.form["prompt"] == "turn it into a watercolour"
    sent = upload.form["video"]
    assert isinstance(sent, RecordedFile) and sent.content_type == "video/mp4"
    assert field(from_clip, "Edit of") == "an uploaded clip"
    assert field(from_clip, "Cost") == "8 credits"
    job = await videobot.jobs.get(job_number(from_clip))
    assert job is not None and job.clip_path is not None and job.size == "1280x720"
    with av.open(job.clip_path) as converted:
        stream = converted.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 1280, 720)
    quota = await reply(await fake.invoke_command("quota"))
    assert "**36** credits left of 60" in quota  # 8 + 8 + 8


async def test_unusable_clips_are_refused_privately_and_nothing_is_sent(
    videobot: VideoBot, fake: FakeDiscord, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.1:1/secret.ts\n"
    handle = await fake.invoke_command(
        "edit", {"prompt": "x"}, attachments={"clip": (playlist, "clip.mp4", "video/mp4")}
    )
    refusal = await handle.wait_followup(timeout=10)
    assert refusal.ephemeral and "isn't a video the bot can read" in refusal.content

    long_clip = tmp_path / "long.mp4"
    render_video(long_clip, prompt="long", width=320, height=240, seconds=21, fps=2)
    handle = await fake.invoke_command(
        "edit", {"prompt": "x"}, attachments={"clip": (long_clip.read_bytes(), "long.mp4", "video/mp4")}
    )
    refusal = await handle.wait_followup(timeout=10)
    assert refusal.ephemeral and "longer than 20 seconds" in refusal.content

    text = await reply(
        await fake.invoke_command(
            "edit", {"prompt": "x"}, attachments={"clip": (b"hello", "notes.txt", "text/plain")}
        )
    )
    assert text == "notes.txt isn't an MP4, MOV or WebM video. Attach one of those."
    assert await reply(await fake.invoke_command("edit", {"prompt": "x"})) == (
        "Pick one of your videos (`video`) or attach a clip (`clip`) to edit."
    )
    assert renderer.requests == []
    assert list((videobot.settings.data_dir / "references").glob("*")) == []  # nothing left behind


async def test_only_the_owner_or_a_moderator_may_press_and_limits_refuse_before_the_form(
    videobot: VideoBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await back_to_back(fake)
    done = await make_video(fake, "a short one")
    job = job_number(done)
    alice = int(fake.default_user["id"])
    bob = int(fake.add_member(name="bob")["user"]["id"])
    sent = len(renderer.requests)
    for action, verb in [("extend", "extend it"), ("edit", "edit it")]:
        pressed = await fake.invoke_component(done, f"videobot:{action}:{job}", user=bob)
        assert (await reply(pressed)).startswith(
            f"This is <@{alice}>'s video: only they or a moderator can {verb}"
        )
        assert pressed.callback_type == 4  # an answer, not a form
    refused = await reply(await fake.invoke_command("extend", {"video": job, "prompt": "mine"}, user=bob))
    assert refused.startswith(f"This is <@{alice}>'s video")
    assert len(renderer.requests) == sent  # nothing reached the provider

    # Lengths come from the client: a forged one is refused in code, privately, with the choices.
    forge_ranges(fake, "extend")
    forged = await reply(await fake.invoke_command("extend", {"video": job, "prompt": "p", "seconds": 7}))
    assert forged == "`sora-2` extends videos by 4, 8, 12, 16, 20 seconds, not 7. Pick one of those."
    form = await (await fake.invoke_component(done, f"videobot:extend:{job}")).modal()
    typed = await fake.submit_modal(form["custom_id"], {"prompt": "p", "seconds": "99999999999"})
    assert (await reply(typed)).startswith("`sora-2` extends videos by 4, 8, 12, 16, 20 seconds")
    assert len(renderer.requests) == sent

    moderator = int(fake.owner_user["id"])
    opened = await fake.invoke_component(done, f"videobot:extend:{job}", user=moderator)
    assert (await opened.modal())["title"] == f"Extend video #{job}"

    # Without the credits for even the shortest segment, the press is refused and no form opens.
    await reply(await fake.invoke_command("videomod setquota", {"user": alice, "credits": 4}, user=moderator))
    refusal = await fake.invoke_component(done, f"videobot:extend:{job}")
    assert (await reply(refusal)).startswith("This needs 4 credits; you have 0 left.")
    assert refusal.callback_type == 4


async def test_a_source_the_provider_no_longer_has_is_explained_and_not_charged(
    videobot: VideoBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await back_to_back(fake)
    source = await make_video(fake, "a paper boat")
    job = await videobot.jobs.get(job_number(source))
    assert job is not None and job.provider_video_id
    async with (
        aiohttp.ClientSession() as session,
        session.delete(f"{renderer.base_url}/videos/{job.provider_video_id}") as response,
    ):
        assert response.status == 200

    for command, options, verb in [
        ("extend", {"video": job.id, "prompt": "the boat sails on", "seconds": 4}, "extended"),
        ("edit", {"video": job.id, "prompt": "the boat in autumn"}, "edited"),
    ]:
        handle = await fake.invoke_command(command, options)
        failed = await handle.original_message(timeout=30, predicate=is_final(FAILED))
        assert field(failed, "What happened") == (
            f"The provider no longer has the source video, so it can't be {verb}."
        )
        assert field(failed, "Credits") == "Nothing was charged for this video."
        assert labels(failed) == ["Details"]  # Again would only fail the same way
    quota = await reply(await fake.invoke_command("quota"))
    assert "**56** credits left of 60" in quota  # only the source video was charged


async def test_extend_and_edit_are_not_offered_once_the_provider_says_it_lacks_them(
    videobot: VideoBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await back_to_back(fake)
    source = await make_video(fake, "a kite")
    job = job_number(source)
    # What OpenAI answers for a route it doesn't have.
    missing = (
        '{"error": {"message": "Invalid URL (POST /v1/videos/extensions)", "type": "invalid_request_error"}}'
    )
    renderer.faults.add(status=404, method="POST", path_prefix="/v1/videos/extensions", body=missing)
    handle = await fake.invoke_command("extend", {"video": job, "prompt": "higher"})
    failed = await handle.original_message(timeout=30, predicate=is_final(FAILED))
    assert field(failed, "What happened") == (
        "This bot's video provider doesn't offer extensions, so this video couldn't be made."
    )
    assert field(failed, "Credits") == "Nothing was charged for this video."
    refusal = await reply(await fake.invoke_component(source, f"videobot:extend:{job}"))
    assert refusal == (
        "This bot's video provider doesn't offer extensions, so videos can't be extended. "
        "Use `/video` to make a new one."
    )
    fresh = await make_video(fake, "another kite")
    assert labels(fresh) == ["Remix", "Edit", "Again", "Details"]


async def finished(videobot: VideoBot, job_id: int) -> bool:
    job = await videobot.jobs.get(job_id)
    return job is not None and job.status.value == "completed"
