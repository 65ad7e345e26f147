"""Again pressed twice quickly on a video made from a starting image: the second press is refused
after it was accepted, and its cleanup must not take the original's image with it (the security
review's finding: the new job then failed ``reference_missing`` and Again never worked again)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from tests.fakes.discord import ROUTE_CALLBACK, FakeDiscord, InteractionHandle
from tests.fakes.provider import InstrumentedRenderer, RecordedFile
from tests.flows import (
    embed_of,
    ephemeral_text,
    is_final,
    job_number,
    job_row,
    recorded_as_delivered,
)
from tests.helpers import READY
from tests.inprocess import InProcessBot

DEFERRED = 5
# Discord answering the two acknowledgements slowly holds each press between its limit check and
# its reservation, so both pass the check before either reserves: the second is then refused
# after it was accepted, the path whose cleanup deleted the shared image.
ACK_LATENCY_SECONDS = 2.0


def starting_image() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (720, 1280), (30, 90, 200)).save(buf, "PNG")
    return buf.getvalue()


def image_creates(renderer: InstrumentedRenderer) -> list[RecordedFile]:
    """The starting image of every create the provider received (all of them must have one)."""
    files = []
    for r in renderer.requests:
        if r.method == "POST" and r.path == "/v1/videos":
            assert r.form is not None, "a create without its starting image"
            reference = r.form["input_reference"]
            assert isinstance(reference, RecordedFile) and reference.size > 0
            files.append(reference)
    return files


async def outcome(fake: FakeDiscord, press: InteractionHandle) -> str:
    """ "made" for a press that became a job (its card replaced "thinking…"), else the refusal it
    was shown privately."""
    callback = await press.wait_response(timeout=20)
    assert callback.json["type"] == DEFERRED, "both presses passed the check and were acknowledged"

    def settled() -> str | None:
        if press.followups:
            refusal = press.followups[0]
            assert refusal.ephemeral
            return refusal.content
        mid = press._state.original_message_id
        card = fake.messages.get(mid) if mid is not None else None
        return "made" if card is not None and card.embeds else None

    return await fake._wait(settled, 60, f"the outcome of press {press.id}")


async def test_again_pressed_twice_keeps_the_originals_image_and_again_still_works(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await bot.start()
    moderator = int(fake.owner_user["id"])
    settings = await fake.invoke_command(
        "videomod settings", {"cooldown": 0, "max_concurrent": 1}, user=moderator
    )
    await settings.wait_response(timeout=10)
    made = await fake.invoke_command(
        "video", {"prompt": "a blue dawn"}, attachments={"image": (starting_image(), "dawn.png", "image/png")}
    )
    original = await made.original_message(timeout=60, predicate=is_final(READY))
    source = job_number(original)
    await recorded_as_delivered(bot, source)
    reference = Path(str(job_row(bot, source)["reference_image_path"]))
    assert reference.is_file()

    fake.faults.add("POST", ROUTE_CALLBACK, status=None, count=2, delay=ACK_LATENCY_SECONDS)
    first = await fake.invoke_component(original, f"videobot:again:{source}")
    second = await fake.invoke_component(original, f"videobot:again:{source}")
    outcomes = sorted([await outcome(fake, first), await outcome(fake, second)])
    assert outcomes == [
        "You already have 1 video in progress (the limit is 1). Wait for one to finish, or cancel one.",
        "made",
    ]
    assert reference.is_file(), "the refused press removed the original's starting image"

    accepted = first if first.followups == [] else second
    again = await accepted.original_message(timeout=60, predicate=is_final(READY))
    again_job = job_number(again)
    assert embed_of(again)["description"] == "a blue dawn"
    await recorded_as_delivered(bot, again_job)
    assert job_row(bot, again_job)["reference_image_path"] == str(reference)

    # Again on the original still works, with its image.
    third = await fake.invoke_component(original, f"videobot:again:{source}")
    fresh = await third.original_message(timeout=60, predicate=is_final(READY))
    await recorded_as_delivered(bot, job_number(fresh))
    assert len(image_creates(renderer)) == 3
    assert reference.is_file()
    quota = await ephemeral_text(await fake.invoke_command("quota"))
    assert "**48** credits left of 60" in quota  # three videos delivered; the refused press cost nothing
