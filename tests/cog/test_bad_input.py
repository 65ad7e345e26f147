"""The bad-input catalogue (the whole bot in-process, tests/inprocess.py): every refusal is ephemeral, specific, charges nothing and
sends nothing to the provider. The README's table lists the same cases and messages."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from PIL import Image

from tests.fakes.discord import FakeDiscord, InteractionHandle
from tests.fakes.provider import InstrumentedRenderer
from tests.inprocess import InProcessBot


def image_bytes(fmt: str, size: tuple[int, int] = (300, 300), **save: Any) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 50, 50)).save(buf, fmt, **save)
    return buf.getvalue()


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (300, 300), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def png_bomb() -> bytes:
    """A small PNG whose header claims 50,000 x 50,000 pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 50_000, 50_000, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 50_000 // 8) * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


async def refusal(handle: InteractionHandle) -> str:
    """The ephemeral text the member saw, whether refused at once or after the acknowledgement."""
    callback = await handle.wait_response(timeout=15)
    if callback.json["type"] == 4:
        data = callback.json["data"]
        assert data.get("flags", 0) & 64, data
        return str(data["content"])
    followup = await handle.wait_followup(timeout=15)
    assert followup.ephemeral
    original_deleted = any(r.method == "DELETE" for r in handle.requests())
    assert original_deleted, "the public placeholder must go away"
    return followup.content


ATTACHMENT_CASES: list[tuple[str, bytes, str, str, str]] = [
    ("text file", b"just some notes", "notes.txt", "text/plain", "notes.txt isn't an image."),
    (
        "PDF",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
        "doc.pdf",
        "application/pdf",
        "doc.pdf isn't an image.",
    ),
    (
        "SVG",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="300" height="300"></svg>',
        "logo.svg",
        "image/svg+xml",
        "That file isn't an image I can read",
    ),
    ("GIF", animated("GIF"), "loop.gif", "image/gif", "Animated images aren't supported"),
    ("animated WebP", animated("WEBP"), "loop.webp", "image/webp", "Animated images aren't supported"),
    ("corrupt image", image_bytes("PNG")[:200], "broken.png", "image/png", "damaged or incomplete"),
    ("decompression bomb", png_bomb(), "bomb.png", "image/png", "too many pixels"),
    ("tiny image", image_bytes("PNG", (10, 10)), "dot.png", "image/png", "only 10x10 pixels"),
]


async def test_every_bad_input_is_refused_plainly_and_costs_nothing(
    bot: InProcessBot, fake: FakeDiscord, renderer: InstrumentedRenderer
) -> None:
    await bot.start()
    seen: dict[str, str] = {}
    for name, data, filename, content_type, expected in ATTACHMENT_CASES:
        handle = await fake.invoke_command(
            "video", {"prompt": "a test"}, attachments={"image": (data, filename, content_type)}
        )
        text = await refusal(handle)
        assert expected in text, (name, text)
        seen[name] = text

    huge = fake.add_attachment(b"\xff\xd8\xff" + b"\x00" * 100, "huge.jpg", "image/jpeg")
    huge["size"] = 25 * 1024 * 1024  # what Discord reports; the bot must not download it to find out
    text = await refusal(await fake.invoke_command("video", {"prompt": "a test", "image": huge}))
    assert "That image is 25.0 MiB; the limit is 10 MiB" in text
    assert not any(r.path.startswith("/attachments/") and "huge" in r.path for r in fake.requests)

    text = await refusal(await fake.invoke_command("video", {"prompt": " \n\t "}))
    assert text.startswith("The prompt is empty.")

    text = await refusal(
        await fake.invoke_command("video", {"prompt": "x", "model": "sora-2", "size": "1024x1792"})
    )
    assert text == "`sora-2` can't make 1024x1792 videos. Sizes it supports: 720x1280, 1280x720."

    text = await refusal(await fake.invoke_command("video", {"prompt": "x"}, dm=True))
    assert text == "This command works in servers only, not in direct messages."

    moderator = int(fake.owner_user["id"])
    text = await refusal(await fake.invoke_command("videomod cancel", {"job": 999_999}, user=moderator))
    assert text == "There is no job #999999 in this server. `/videomod jobs` lists them."

    assert len(renderer.requests) == 0
    quota = await (await fake.invoke_command("quota")).wait_response()
    assert "**60** credits left of 60" in quota.json["data"]["content"]
    for name, text in seen.items():
        print(f"| {name} | {text} |")
