from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import av
import pytest
from PIL import Image

from bot.adapters.media import (
    ImageError,
    MediaError,
    VideoInfo,
    fit_image,
    make_spritesheet,
    make_thumbnail,
    probe_video,
    reencode_to_fit,
    render_video,
    sniff_image,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def encode(image: Image.Image, image_format: str, **save_options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **save_options)
    return out.getvalue()


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (128, 96), mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def halves(size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def close_to(actual: object, expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    assert isinstance(actual, tuple), actual
    return all(abs(a - e) <= tolerance for a, e in zip(actual[:3], expected, strict=True))


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR is rewritten (with a correct CRC) to claim another size."""
    data = bytearray(encode(solid(RED, (64, 64)), "PNG"))
    ihdr_start = 8 + 4  # signature, chunk length
    ihdr = bytearray(data[ihdr_start : ihdr_start + 4 + 13])  # type + payload
    ihdr[4:12] = struct.pack(">II", width, height)
    data[ihdr_start : ihdr_start + 17] = ihdr
    data[ihdr_start + 17 : ihdr_start + 21] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


# ------------------------------------------------------------------------------ sniff_image


@pytest.mark.parametrize(
    ("image_format", "options"),
    [("JPEG", {}), ("PNG", {}), ("WEBP", {}), ("WEBP", {"lossless": True})],
)
def test_sniff_accepts_still_jpeg_png_webp(image_format: str, options: dict[str, object]) -> None:
    assert sniff_image(encode(solid(RED), image_format, **options)) == image_format


def test_sniff_accepts_single_frame_png_with_transparency() -> None:
    assert sniff_image(encode(Image.new("RGBA", (80, 80), (0, 0, 0, 0)), "PNG")) == "PNG"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"just some text, definitely not pixels\n" * 10, id="text"),
        pytest.param(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 5, id="pdf"),
        pytest.param(
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
            b'<rect width="100" height="100" fill="red"/></svg>',
            id="svg",
        ),
        pytest.param(encode(solid(RED), "BMP"), id="bmp"),
    ],
)
def test_sniff_refuses_files_that_are_not_accepted_images(data: bytes) -> None:
    with pytest.raises(ImageError) as caught:
        sniff_image(data)
    assert caught.value.user_message.startswith("That file isn't an image")
    assert "JPEG, PNG or WebP" in caught.value.user_message


def animated(image_format: str) -> bytes:
    frames = [solid(RED), solid(BLUE)]
    return encode(frames[0], image_format, save_all=True, append_images=frames[1:], duration=100, loop=0)


@pytest.mark.parametrize("image_format", ["GIF", "WEBP", "PNG"])
def test_sniff_refuses_animated_images(image_format: str) -> None:
    with pytest.raises(ImageError, match="Animated images aren't supported"):
        sniff_image(animated(image_format))


def test_sniff_refuses_still_gif_by_format() -> None:
    with pytest.raises(ImageError, match="GIF images aren't supported"):
        sniff_image(encode(solid(RED), "GIF"))


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_sniff_refuses_truncated_images(image_format: str) -> None:
    data = encode(Image.effect_noise((256, 256), 60).convert("RGB"), image_format)
    with pytest.raises(ImageError, match="damaged or incomplete"):
        sniff_image(data[: len(data) // 2])


def test_sniff_refuses_header_claiming_billions_of_pixels() -> None:
    # 50000x50000 trips Pillow's own DecompressionBombError while opening.
    with pytest.raises(ImageError, match="too many pixels"):
        sniff_image(png_claiming_size(50_000, 50_000))


def test_sniff_refuses_real_image_over_pixel_limit_without_decoding_it() -> None:
    # 8000x6000 1-bit compresses to a few kilobytes but is 48 megapixels.
    bomb = encode(Image.new("1", (8000, 6000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match="too many pixels"):
        sniff_image(bomb)


def test_sniff_refuses_tiny_images() -> None:
    with pytest.raises(ImageError, match="only 10x10 pixels"):
        sniff_image(encode(solid(RED, (10, 10)), "PNG"))


def test_sniff_refuses_oversize_and_empty_files_before_decoding() -> None:
    data = encode(solid(RED), "PNG")
    with pytest.raises(ImageError, match="limit is"):
        sniff_image(data, max_bytes=len(data) - 1)
    with pytest.raises(ImageError, match="empty"):
        sniff_image(b"")


# ------------------------------------------------------------------------------ fit_image


def fitted(data: bytes, width: int, height: int, **options: str) -> Image.Image:
    result = Image.open(io.BytesIO(fit_image(data, width, height, **options)))  # type: ignore[arg-type]
    assert result.format == "PNG"
    assert result.size == (width, height)
    return result.convert("RGB")


@pytest.mark.parametrize("source_size", [(400, 200), (200, 400), (720, 1280), (50, 50)])
def test_fit_image_gives_exact_size(source_size: tuple[int, int]) -> None:
    for mode in ("cover", "contain"):
        fitted(encode(solid(RED, source_size), "JPEG"), 720, 1280, mode=mode)


def test_cover_crops_around_the_centre() -> None:
    # A landscape red|blue split covering a square keeps the middle, where both halves meet.
    result = fitted(encode(halves((400, 200), RED, BLUE), "PNG"), 100, 100, mode="cover")
    assert close_to(result.getpixel((5, 50)), RED)
    assert close_to(result.getpixel((95, 50)), BLUE)


def test_contain_letterboxes_with_black() -> None:
    result = fitted(encode(solid(RED, (400, 200)), "PNG"), 100, 100, mode="contain")
    assert result.getpixel((50, 2)) == (0, 0, 0)
    assert close_to(result.getpixel((50, 50)), RED)


def test_transparency_is_flattened_onto_black() -> None:
    transparent = Image.new("RGBA", (100, 100), (255, 255, 255, 0))
    result = fitted(encode(transparent, "PNG"), 64, 64)
    assert result.getpixel((32, 32)) == (0, 0, 0)


def test_exif_orientation_is_honoured() -> None:
    # Stored landscape red|blue with orientation 6 ("rotate 90° clockwise to display"): upright it
    # is portrait with red on top. Ignoring EXIF would give red left, blue right instead.
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(halves((200, 100), RED, BLUE), "JPEG", exif=exif.tobytes(), quality=95)
    result = fitted(data, 100, 200)
    assert close_to(result.getpixel((50, 20)), RED)
    assert close_to(result.getpixel((50, 180)), BLUE)


def test_unknown_fit_mode_is_rejected() -> None:
    with pytest.raises(ValueError, match="fit mode"):
        fit_image(encode(solid(RED), "PNG"), 10, 10, mode="stretch")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ video


def first_and_last_frames(path: Path) -> tuple[Image.Image, Image.Image]:
    with av.open(str(path)) as container:
        frames = [frame.to_image() for frame in container.decode(video=0)]
    return frames[0], frames[-1]


def test_render_video_writes_h264_of_exact_size_and_duration(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    render_video(
        path, prompt="A calico cat playing a piano on stage", width=320, height=240, seconds=1.5, fps=10
    )
    info = probe_video(path)
    assert info == VideoInfo(width=320, height=240, duration=info.duration, codec="h264", frames=15)
    assert info.duration == pytest.approx(1.5, abs=0.1)
    first, last = first_and_last_frames(path)
    assert first.tobytes() != last.tobytes(), "frames should show motion"
    assert list(tmp_path.iterdir()) == [path], "no temporary file should be left behind"


def test_render_video_starts_with_the_given_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    render_video(
        path,
        prompt="from a red picture",
        width=160,
        height=96,
        seconds=1,
        fps=8,
        first_frame=encode(solid(RED, (160, 96)), "PNG"),
    )
    first, _ = first_and_last_frames(path)
    # Every corner of frame 0 is the picture, with no overlay drawn on it.
    for corner in [(2, 2), (157, 2), (2, 93), (157, 93)]:
        assert close_to(first.getpixel(corner), RED), corner


def test_render_video_refuses_odd_dimensions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        render_video(tmp_path / "clip.mp4", prompt="x", width=161, height=96, seconds=1, fps=8)
    assert list(tmp_path.iterdir()) == []


def test_noise_with_target_bitrate_makes_a_file_of_about_that_rate(tmp_path: Path) -> None:
    path = tmp_path / "big.mp4"
    bitrate = 4_000_000
    render_video(
        path, prompt="grain", width=320, height=240, seconds=2, fps=12, noise=True, target_bitrate=bitrate
    )
    expected_bytes = bitrate * 2 / 8
    assert 0.7 * expected_bytes < path.stat().st_size < 1.4 * expected_bytes


def test_thumbnail_is_webp_and_spritesheet_is_jpeg_grid(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    render_video(video, prompt="previews", width=320, height=240, seconds=2, fps=10)

    make_thumbnail(video, tmp_path / "thumb.webp")
    with Image.open(tmp_path / "thumb.webp") as thumbnail:
        assert thumbnail.format == "WEBP"
        assert thumbnail.size == (320, 240)

    make_spritesheet(video, tmp_path / "sheet.jpg", columns=4, rows=3, tile_width=80)
    with Image.open(tmp_path / "sheet.jpg") as sheet:
        assert sheet.format == "JPEG"
        assert sheet.size == (4 * 80, 3 * 60)
        # Tiles come from different moments, so they are not all the same picture.
        tiles = {sheet.crop((x * 80, 0, x * 80 + 80, 60)).tobytes() for x in range(4)}
        assert len(tiles) == 4


def test_reencode_to_fit_keeps_resolution_when_quality_allows(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    render_video(
        big, prompt="grainy", width=320, height=568, seconds=2, fps=12, noise=True, target_bitrate=8_000_000
    )
    limit = big.stat().st_size // 3
    small = tmp_path / "small.mp4"
    info = reencode_to_fit(big, small, limit)
    assert small.stat().st_size <= limit
    assert (info.width, info.height, info.codec) == (320, 568, "h264")
    assert info.duration == pytest.approx(2.0, abs=0.1)


def test_reencode_to_fit_scales_down_for_a_tiny_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    render_video(
        big, prompt="grainy", width=720, height=1280, seconds=2, fps=12, noise=True, target_bitrate=8_000_000
    )
    small = tmp_path / "small.mp4"
    info = reencode_to_fit(big, small, 120_000)
    assert small.stat().st_size <= 120_000
    assert info.width < 720 and abs(info.width / info.height - 720 / 1280) < 0.01
    assert info.duration == pytest.approx(2.0, abs=0.1)


def test_reencode_to_fit_gives_up_with_a_plain_message(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    render_video(big, prompt="grainy", width=320, height=568, seconds=2, fps=12, noise=True)
    with pytest.raises(MediaError, match="could not be made smaller than"):
        reencode_to_fit(big, tmp_path / "small.mp4", 2_000)
    assert not (tmp_path / "small.mp4").exists()
