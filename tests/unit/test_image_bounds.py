"""Image decoding costs what the result needs: header-first refusals, reduced decodes, the fit gate."""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import zlib
from collections.abc import Callable

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageOps, ImageStat

from bot.adapters.media import (
    DEFAULT_MAX_DECODE_BYTES,
    ImageBusy,
    ImageError,
    ImageFitGate,
    fit_image,
    fit_in_gate,
    prepare_image,
    sniff_image,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)
MiB = 1024 * 1024


def encode(image: Image.Image, image_format: str, **save_options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **save_options)
    return out.getvalue()


def result(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image.convert("RGB")


def close_to(actual: object, expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    assert isinstance(actual, tuple), actual
    return all(abs(a - e) <= tolerance for a, e in zip(actual[:3], expected, strict=True))


# ------------------------------------------------------------------------------ refusals from the header


def png_claiming(width: int, height: int) -> bytes:
    """A valid small RGBA PNG whose IHDR is rewritten (with a correct CRC) to claim another size, so
    any attempt to decode it would fail as damaged: a refusal for size proves nothing was decoded."""
    data = bytearray(encode(Image.new("RGBA", (64, 64)), "PNG"))
    ihdr = bytearray(data[12:29])  # chunk type + 13 bytes of payload, after signature and length
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def test_png_whose_decode_exceeds_the_budget_is_refused_from_its_header() -> None:
    # 6000x6000 RGBA would be 137 MiB once decoded.
    bomb = png_claiming(6000, 6000)
    for call in (
        lambda: sniff_image(bomb),
        lambda: prepare_image(bomb, 1280, 720),
        lambda: fit_image(bomb, 1280, 720),
    ):
        with pytest.raises(ImageError) as caught:
            call()
        message = caught.value.user_message
        assert message.startswith("That 6000x6000 PNG is too large for the bot to read")
        assert "137.3 MiB" in message and "96.0 MiB" in message
        assert "save it as a JPEG" in message
    # Within the budget, the same forged header gets as far as decoding, which fails.
    with pytest.raises(ImageError, match="damaged or incomplete"):
        sniff_image(png_claiming(2000, 2000))


def test_progressive_jpeg_counts_its_full_size_coefficient_buffer() -> None:
    # Progressive decoding keeps every DCT coefficient at full size, even at 1/8 output scale,
    # so the same picture is accepted as baseline and refused as progressive.
    picture = Image.new("RGB", (4500, 4500), RED)
    baseline = encode(picture, "JPEG", quality=50)
    progressive = encode(picture, "JPEG", quality=50, progressive=True, subsampling=0)
    assert sniff_image(baseline) == "JPEG"
    assert result(prepare_image(baseline, 1280, 720)).size == (1280, 720)
    with pytest.raises(ImageError, match="baseline \\(non-progressive\\) JPEG"):
        prepare_image(progressive, 1280, 720)


def test_large_webp_is_refused_from_its_header() -> None:
    bomb = encode(Image.new("RGB", (4000, 4000)), "WEBP", lossless=True)
    with pytest.raises(ImageError, match="4000x4000 WEBP is too large"):
        sniff_image(bomb)


def test_budget_is_a_parameter() -> None:
    data = encode(Image.new("RGB", (1000, 1000), RED), "PNG")
    assert sniff_image(data) == "PNG"
    with pytest.raises(ImageError, match=r"limit is 1\.0 MiB"):
        sniff_image(data, max_decode_bytes=1 * MiB)
    assert 96 * MiB == DEFAULT_MAX_DECODE_BYTES


# ------------------------------------------------------------------------------ bounded fits keep the picture


def test_one_bit_png_bomb_is_fitted_and_keeps_its_content() -> None:
    # 40 megapixels of 1-bit PNG: white left half, black right half. Reduced strip by strip, the
    # halves must still meet in the middle of the cover crop.
    bomb = Image.new("1", (6324, 6324), 0)
    bomb.paste(1, (0, 0, 3162, 6324))
    data = encode(bomb, "PNG")
    assert len(data) < 50_000
    for width, height in [(1792, 1024), (720, 1280)]:
        fitted = result(prepare_image(data, width, height))
        assert fitted.size == (width, height)
        assert fitted.getpixel((5, height // 2)) == (255, 255, 255)
        assert fitted.getpixel((width - 5, height // 2)) == (0, 0, 0)


def test_contain_of_a_huge_panorama_letterboxes() -> None:
    panorama = Image.new("L", (12000, 1000), 200)
    fitted = result(prepare_image(encode(panorama, "PNG"), 720, 1280, mode="contain"))
    assert fitted.size == (720, 1280)
    assert fitted.getpixel((360, 10)) == (0, 0, 0)
    assert close_to(fitted.getpixel((360, 640)), (200, 200, 200), tolerance=2)


def test_cover_of_a_huge_panorama_keeps_the_centre() -> None:
    # Only the centre strip of a 16000x1000 panorama is visible in a portrait cover fit; colour
    # bands mark where it came from.
    panorama = Image.new("RGB", (16000, 1000), RED)
    panorama.paste(BLUE, (7900, 0, 8100, 1000))
    fitted = result(prepare_image(encode(panorama, "PNG"), 720, 1280))
    assert fitted.size == (720, 1280)
    assert close_to(fitted.getpixel((360, 640)), BLUE)
    assert close_to(fitted.getpixel((10, 640)), RED)


def test_large_jpeg_with_exif_rotation_comes_out_upright() -> None:
    # Stored landscape red|blue, orientation 6: upright it is portrait with red on top.
    picture = Image.new("RGB", (8000, 4000), RED)
    picture.paste(BLUE, (4000, 0, 8000, 4000))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(picture, "JPEG", exif=exif.tobytes(), quality=80)
    for width, height in [(720, 1280), (1280, 720)]:
        fitted = result(prepare_image(data, width, height, mode="contain"))
        assert fitted.size == (width, height)
        middle_x = width // 2
        assert close_to(fitted.getpixel((middle_x, height // 2 - height // 8)), RED)
        assert close_to(fitted.getpixel((middle_x, height // 2 + height // 8)), BLUE)


def test_prepare_matches_sniff_then_fit_for_ordinary_pictures() -> None:
    picture = Image.new("RGB", (400, 300), RED)
    picture.paste(BLUE, (200, 0, 400, 300))
    for image_format in ("PNG", "JPEG", "WEBP"):
        data = encode(picture, image_format)
        sniff_image(data)
        assert prepare_image(data, 320, 240) == fit_image(data, 320, 240)


def fit_as_before(data: bytes, width: int, height: int, mode: str) -> Image.Image:
    """The fit before memory bounds: full decode, EXIF transpose, flatten, LANCZOS fit or pad."""
    with Image.open(io.BytesIO(data)) as opened:
        upright = ImageOps.exif_transpose(opened)
    rgba = upright.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")
    if mode == "cover":
        return ImageOps.fit(flat, (width, height), method=Image.Resampling.LANCZOS)
    return ImageOps.pad(flat, (width, height), method=Image.Resampling.LANCZOS, color=(0, 0, 0))


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


@pytest.mark.parametrize("mode", ["cover", "contain"])
def test_ordinary_pictures_come_out_as_before(mode: str) -> None:
    noise = Image.merge("RGB", [Image.effect_noise((600, 420), 50 + 20 * band) for band in range(3)])
    translucent = noise.convert("RGBA")
    translucent.putalpha(Image.linear_gradient("L").resize((600, 420)))
    for image, image_format in [(noise, "PNG"), (translucent, "PNG"), (noise, "WEBP")]:
        data = encode(image, image_format)
        # Up to 4x the target's pixels nothing is reduced or cropped early: the very same pixels.
        assert (
            result(prepare_image(data, 480, 400, mode=mode)).tobytes()
            == fit_as_before(data, 480, 400, mode).tobytes()
        )
    # A photo-sized JPEG decodes at a reduced DCT scale: not identical, but the same picture.
    photo = Image.merge(
        "RGB",
        [
            Image.linear_gradient("L").resize((2400, 1800)),
            Image.radial_gradient("L").resize((2400, 1800)),
            Image.effect_noise((2400, 1800), 30),
        ],
    )
    ImageDraw.Draw(photo).ellipse((600, 360, 1800, 1440), fill=(250, 200, 20))
    data = encode(photo, "JPEG", quality=90)
    difference = mean_difference(
        result(prepare_image(data, 320, 240, mode=mode)), fit_as_before(data, 320, 240, mode)
    )
    assert difference < 2


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_prepare_refuses_what_sniff_refuses(image_format: str) -> None:
    data = encode(Image.effect_noise((256, 256), 60).convert("RGB"), image_format)
    with pytest.raises(ImageError, match="damaged or incomplete"):
        prepare_image(data[: len(data) // 2], 128, 128)
    with pytest.raises(ImageError, match="too many pixels"):
        prepare_image(encode(Image.new("1", (8000, 6000)), "PNG"), 128, 128)
    with pytest.raises(ImageError, match="GIF images aren't supported"):
        prepare_image(encode(Image.new("RGB", (100, 100)), "GIF"), 128, 128)


# ------------------------------------------------------------------------------ the gate


async def settle(condition: Callable[[], bool]) -> None:
    """Let other tasks run until ``condition`` holds; the tasks involved need a few steps, not time."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_gate_runs_one_fit_at_a_time_and_refuses_a_members_second() -> None:
    gate = ImageFitGate(max_waiting=2)
    inside: list[int] = []
    most_inside = 0
    release = asyncio.Event()

    async def fit(member: int) -> None:
        nonlocal most_inside
        async with gate.slot(member):
            inside.append(member)
            most_inside = max(most_inside, len(inside))
            await release.wait()
            inside.remove(member)

    first = asyncio.create_task(fit(1))
    await settle(lambda: bool(inside))
    queued = [asyncio.create_task(fit(member)) for member in (2, 3)]
    await settle(lambda: gate.waiting == 2)

    with pytest.raises(ImageBusy, match="Your previous image is still being prepared"):
        await fit(1)
    with pytest.raises(ImageBusy, match="Your previous image is still being prepared"):
        await fit(2)  # still waiting counts as in flight
    with pytest.raises(ImageBusy, match="preparing too many images right now"):
        await fit(4)

    release.set()
    await asyncio.gather(first, *queued)
    assert most_inside == 1
    assert gate.waiting == 0
    # Everyone is free again, including after a refusal.
    release.set()
    await fit(1)
    await fit(4)


async def test_gate_frees_a_member_whose_wait_is_cancelled() -> None:
    gate = ImageFitGate()
    holder_in = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot(1):
            holder_in.set()
            await release.wait()

    async def wait_for_slot() -> None:
        async with gate.slot(2):
            pass

    holder = asyncio.create_task(hold())
    await holder_in.wait()
    waiter = asyncio.create_task(wait_for_slot())
    await settle(lambda: gate.waiting == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert gate.waiting == 0
    release.set()
    await holder
    async with gate.slot(2):
        pass


async def test_image_busy_is_an_image_error() -> None:
    # The cog already turns ImageError into a one-line answer; the gate's refusals ride along.
    gate = ImageFitGate()
    async with gate.slot(7):
        with pytest.raises(ImageError):
            async with gate.slot(7):
                pass


async def test_fit_in_gate_fits_on_the_gates_own_thread() -> None:
    gate = ImageFitGate()
    data = encode(Image.new("RGB", (400, 300), RED), "PNG")
    fitted = await asyncio.gather(*(fit_in_gate(gate, member, data, 160, 90) for member in range(3)))
    assert fitted == [prepare_image(data, 160, 90)] * 3
    threads = await asyncio.gather(*(gate.run(threading.current_thread) for _ in range(3)))
    assert len({thread.name for thread in threads}) == 1
    assert threads[0].name.startswith("image-fit")
    with pytest.raises(ImageError, match="damaged or incomplete"):
        await fit_in_gate(gate, 1, data[:200], 160, 90)
    gate.close()
