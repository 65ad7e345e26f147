"""Image and video helpers: validating uploads, fitting reference images, rendering and probing MP4s.

Everything here is synchronous and CPU-bound; async callers should run it in a worker thread
(``asyncio.to_thread``), image fits through ``ImageFitGate`` (``fit_in_gate``), which bounds how
many run at once. Nothing here knows about Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import math
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, TypeVar

import av
from PIL import Image, ImageDraw, ImageFile, ImageFont, ImageOps, UnidentifiedImageError

from bot.domain.errors import UserError, VideobotError

ACCEPTED_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")
# GIF is opened too, only so that it can be refused with a message about animation rather than
# "not an image". Every other format is never handed to a Pillow decoder at all.
_OPENABLE_IMAGE_FORMATS = (*ACCEPTED_IMAGE_FORMATS, "GIF")

FitMode = Literal["cover", "contain"]
T = TypeVar("T")

# Letterbox bars and flattened transparency use the same colour, so a transparent logo and a
# letterboxed photo both end up on the background a video frame would have anyway.
_BACKGROUND = (0, 0, 0)


class ImageError(UserError):
    """An uploaded image cannot be used; ``user_message`` says why and what to do instead. A refusal
    like any other, so every front end answers it as it answers ``UserError``."""


# What one image may cost to decode. A fit keeps the decoded picture plus a working copy no larger
# than a few times the target, so one fit stays under about 150 MB whatever is uploaded; the
# ``ImageFitGate`` then keeps it to one fit per process at a time.
DEFAULT_MAX_DECODE_BYTES = 96 * 1024 * 1024
# The working copy of a huge picture is reduced to at most this many times the target's pixels
# (never below what the target needs, so nothing is scaled up that wasn't before).
_WORKING_PIXELS_PER_TARGET = 4
# Flattening and reducing work on horizontal strips of about this many pixels, so no full-size
# RGBA copy of the source ever exists.
_STRIP_PIXELS = 1 << 20
# Measured with Pillow 11-13: libwebp (through the animation decoder Pillow always uses) holds
# about 16 bytes per pixel while decoding, lossy or lossless.
_WEBP_BYTES_PER_PIXEL = 16

_ORIENTATION_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def release_cached_pages(path: Path) -> None:
    """Tell the kernel the bytes of ``path`` are not wanted in memory soon (a delivered video: it
    stays on disk for a re-delivery or a link). Its page cache is freed for the next download to
    reuse instead of taking fresh memory: writing a 3 MiB download into reused pages cost 1.4 ms of
    system CPU here, into fresh ones 5.5 ms, and with every delivered video kept cached the cache
    only grows. Best effort: a file already gone, or a system without ``posix_fadvise``, is fine."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        advise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def sniff_image(
    data: bytes,
    *,
    max_bytes: int = 10 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    min_side: int = 64,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> str:
    """Check by content that ``data`` is a usable still JPEG, PNG or WebP and return its format name.

    The claimed file type is ignored: the bytes are opened with Pillow (restricted to the accepted
    decoders), the header is checked for size limits before any pixel is decoded, then the file is
    verified and decoded so that truncated or corrupt files are caught here rather than later. The
    decode is bounded: a JPEG is decoded at 1/8 scale (which still reads every byte of it) and any
    file whose decoder would need more than ``max_decode_bytes`` is refused from its header.
    Raises ``ImageError`` with a message for the user on any refusal.
    """
    image_format = _check_header(data, max_bytes=max_bytes, max_pixels=max_pixels, min_side=min_side)
    with _open_verified(data, max_pixels) as image:
        if image.format == "JPEG":
            image.draft(None, (1, 1))
        _check_decode_cost(image, image.size, max_decode_bytes)
        _load(image, max_pixels)
    return image_format


def fit_image(
    data: bytes,
    width: int,
    height: int,
    *,
    mode: FitMode = "cover",
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> bytes:
    """Return PNG bytes of exactly ``width`` x ``height`` made from the image in ``data``.

    The EXIF orientation is applied first, so phone photos come out upright. Transparency is
    flattened onto black. ``cover`` scales the image to cover the frame and crops the overflow
    around the centre; ``contain`` scales it to fit inside and letterboxes with black bars.

    Memory is bounded by what the result needs: a JPEG is decoded at a reduced scale, a picture much
    larger than the target is flattened and reduced strip by strip, and a file whose decoder alone
    would need more than ``max_decode_bytes`` is refused with ``ImageError``.
    """
    _check_mode(mode)
    with Image.open(io.BytesIO(data), formats=ACCEPTED_IMAGE_FORMATS) as image:
        return _fit_opened(image, width, height, mode, max_decode_bytes, max_pixels=None)


def prepare_image(
    data: bytes,
    width: int,
    height: int,
    *,
    mode: FitMode = "cover",
    max_bytes: int = 10 * 1024 * 1024,
    max_pixels: int = 40_000_000,
    min_side: int = 64,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> bytes:
    """``sniff_image`` and ``fit_image`` in one pass: the same checks and the same result, with the
    pixels decoded once (at the reduced scale the target allows) instead of twice.
    Raises ``ImageError`` with a message for the user on any refusal."""
    _check_mode(mode)
    _check_header(data, max_bytes=max_bytes, max_pixels=max_pixels, min_side=min_side)
    with _open_verified(data, max_pixels) as image:
        return _fit_opened(image, width, height, mode, max_decode_bytes, max_pixels=max_pixels)


def _check_mode(mode: str) -> None:
    if mode not in ("cover", "contain"):
        raise ValueError(f"unknown fit mode {mode!r}; expected 'cover' or 'contain'")


def _check_header(data: bytes, *, max_bytes: int, max_pixels: int, min_side: int) -> str:
    """Every refusal that the file size and the image header alone can decide; returns the format."""
    if not data:
        raise ImageError("That file is empty; upload a JPEG, PNG or WebP image.")
    if len(data) > max_bytes:
        raise ImageError(
            f"That image is {_mebibytes(len(data))}; the limit is {_mebibytes(max_bytes)}. "
            "Upload a smaller or more compressed JPEG, PNG or WebP."
        )
    try:
        with Image.open(io.BytesIO(data), formats=_OPENABLE_IMAGE_FORMATS) as image:
            image_format = image.format or ""
            width, height = image.size
            animated = bool(getattr(image, "is_animated", False))
    except UnidentifiedImageError:
        raise ImageError("That file isn't an image I can read; upload a JPEG, PNG or WebP picture.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard (the warning only arrives as an exception when warnings are errors).
        raise _too_many_pixels(max_pixels) from None
    except (OSError, SyntaxError, ValueError):
        # Pillow reports a malformed header with any of these.
        raise _corrupt() from None

    if animated:
        raise ImageError("Animated images aren't supported; upload a still JPEG, PNG or WebP.")
    if image_format not in ACCEPTED_IMAGE_FORMATS:
        raise ImageError(f"{image_format} images aren't supported; upload a still JPEG, PNG or WebP.")
    if width * height > max_pixels:
        raise _too_many_pixels(max_pixels)
    if min(width, height) < min_side:
        raise ImageError(
            f"That image is only {width}x{height} pixels; it needs to be at least {min_side} pixels "
            "on each side. Upload a larger picture."
        )
    return image_format


@contextlib.contextmanager
def _open_verified(data: bytes, max_pixels: int) -> Iterator[ImageFile.ImageFile]:
    """The image, opened for decoding after ``verify()`` checked its structure (e.g. PNG chunk CRCs);
    verify() leaves an image unusable, hence the second open."""
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_IMAGE_FORMATS) as image:
            image.verify()
        opened = Image.open(io.BytesIO(data), formats=ACCEPTED_IMAGE_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(max_pixels) from None
    except Exception:
        raise _corrupt() from None
    with opened:
        yield opened


def _load(image: ImageFile.ImageFile, max_pixels: int | None) -> None:
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(max_pixels or Image.MAX_IMAGE_PIXELS or 0) from None
    except Exception:
        # Decoders raise a wide range of types on damaged input (OSError, SyntaxError, struct.error,
        # ValueError, ...); each of them means the same thing to the user.
        raise _corrupt() from None


def _stored_bytes_per_pixel(mode: str) -> int:
    """Bytes per pixel of Pillow's in-memory storage (which pads RGB to four bytes)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def _decode_cost(image: ImageFile.ImageFile, source_size: tuple[int, int]) -> int:
    """Bytes the decoder needs to produce ``image`` at its current (possibly draft-reduced) size."""
    width, height = image.size
    if image.format == "WEBP":
        return width * height * _WEBP_BYTES_PER_PIXEL
    cost = width * height * _stored_bytes_per_pixel(image.mode)
    if image.format == "JPEG" and image.info.get("progressive"):
        # A progressive JPEG is decoded from a buffer of all its DCT coefficients (two bytes each)
        # at full size, whatever the output scale: 2 bytes/pixel per full-resolution component.
        layers: list[tuple[int, int, int, int]] = getattr(image, "layer", [])
        if layers:
            h_max = max(layer[1] for layer in layers)
            v_max = max(layer[2] for layer in layers)
            samples = sum(layer[1] * layer[2] for layer in layers) / (h_max * v_max)
        else:
            samples = 3
        cost += int(source_size[0] * source_size[1] * 2 * samples)
    return cost


def _check_decode_cost(image: ImageFile.ImageFile, source_size: tuple[int, int], limit: int) -> None:
    cost = _decode_cost(image, source_size)
    if cost <= limit:
        return
    width, height = source_size
    image_format = image.format or "image"
    if image_format == "JPEG":
        advice = "Upload a smaller picture, or save it as a baseline (non-progressive) JPEG."
    else:
        advice = "Upload a smaller picture, or save it as a JPEG."
    raise ImageError(
        f"That {width}x{height} {image_format} is too large for the bot to read: it would need "
        f"{_mebibytes(cost)} of memory and the limit is {_mebibytes(limit)}. {advice}"
    )


def _fit_opened(
    image: ImageFile.ImageFile,
    width: int,
    height: int,
    mode: FitMode,
    max_decode_bytes: int,
    *,
    max_pixels: int | None,
) -> bytes:
    source_size = image.size
    if image.format != "JPEG":
        # Pillow reads a PNG's EXIF only by loading the pixels (its eXIf chunk may follow them), so
        # the budget is checked first; no other format can be decoded at a reduced size anyway.
        _check_decode_cost(image, source_size, max_decode_bytes)
        _load(image, max_pixels)
    orientation = image.getexif().get(0x0112, 1)
    turned = orientation in (5, 6, 7, 8)
    stored_target = (height, width) if turned else (width, height)
    scale = _fit_scale(source_size, stored_target, mode)
    needed = (max(1, math.ceil(source_size[0] * scale)), max(1, math.ceil(source_size[1] * scale)))
    if image.format == "JPEG":
        # DCT scaling (1/2, 1/4, 1/8) keeps at least the requested size and is itself a good
        # downscale, so no headroom is asked for.
        image.draft(None, needed)
        _check_decode_cost(image, source_size, max_decode_bytes)
        _load(image, max_pixels)

    target_pixels = width * height
    decoded_pixels = image.width * image.height
    factor = _reduce_factor(image.size, needed, _WORKING_PIXELS_PER_TARGET * target_pixels)
    if factor == 1 and decoded_pixels <= _WORKING_PIXELS_PER_TARGET * target_pixels:
        # An ordinary picture: the whole image is flattened and fitted exactly as it always was.
        working = _flatten_strips(image, (0, 0, *image.size), 1)
    else:
        working = _flatten_strips(image, _visible_box(image.size, stored_target, mode), factor)
    image.close()
    transpose = _ORIENTATION_TRANSPOSE.get(orientation)
    if transpose is not None:
        working = working.transpose(transpose)
    size = (width, height)
    if mode == "cover":
        fitted = ImageOps.fit(working, size, method=Image.Resampling.LANCZOS)
    else:
        fitted = ImageOps.pad(working, size, method=Image.Resampling.LANCZOS, color=_BACKGROUND)
    out = io.BytesIO()
    fitted.save(out, format="PNG")
    return out.getvalue()


def _fit_scale(source: tuple[int, int], target: tuple[int, int], mode: FitMode) -> float:
    """The factor that makes ``source`` cover (or fit inside) ``target``."""
    ratios = (target[0] / source[0], target[1] / source[1])
    return max(ratios) if mode == "cover" else min(ratios)


def _visible_box(size: tuple[int, int], target: tuple[int, int], mode: FitMode) -> tuple[int, int, int, int]:
    """The part of an image of ``size`` that a centred ``cover`` fit keeps (all of it for
    ``contain``), widened to whole pixels so the final fit only trims rounding slack."""
    width, height = size
    if mode == "contain":
        return (0, 0, width, height)
    target_ratio = target[0] / target[1]
    if width / height > target_ratio:
        kept = height * target_ratio
        left = (width - kept) / 2
        return (max(0, math.floor(left)), 0, min(width, math.ceil(left + kept)), height)
    kept = width / target_ratio
    top = (height - kept) / 2
    return (0, max(0, math.floor(top)), width, min(height, math.ceil(top + kept)))


def _reduce_factor(size: tuple[int, int], needed: tuple[int, int], cap_pixels: int) -> int:
    """An integer box-reduction factor like Pillow's ``reducing_gap=2``, raised further while the
    result exceeds ``cap_pixels`` but never so far that it drops below ``needed``."""
    room = min(size[0] / needed[0], size[1] / needed[1])
    most = max(1, math.floor(room))
    factor = max(1, math.floor(room / 2))
    while factor < most and math.ceil(size[0] / factor) * math.ceil(size[1] / factor) > cap_pixels:
        factor += 1
    return factor


def _flatten_strips(image: Image.Image, box: tuple[int, int, int, int], factor: int) -> Image.Image:
    """The ``box`` of ``image`` flattened to RGB (see ``_flatten``) and reduced by ``factor``, made one
    strip of rows at a time. Flattening is per pixel and each strip holds whole reduction blocks, so
    the result equals flattening and reducing the whole box at once."""
    left, top, right, bottom = box
    box_width = right - left
    if image.mode == "RGB" and factor == 1 and box == (0, 0, *image.size):
        return image.copy()
    rows = max(factor, _STRIP_PIXELS // max(1, box_width) // factor * factor)
    result = Image.new("RGB", (math.ceil(box_width / factor), math.ceil((bottom - top) / factor)))
    for y in range(top, bottom, rows):
        strip = image.crop((left, y, right, min(bottom, y + rows)))
        if strip.mode != "RGB":
            # Flattening RGB changes nothing; skipping it saves four strip-sized copies.
            strip = _flatten(strip)
        if factor > 1:
            strip = strip.reduce(factor)
        result.paste(strip, (0, (y - top) // factor))
    return result


def _mebibytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def _too_many_pixels(max_pixels: int) -> ImageError:
    return ImageError(
        f"That image has too many pixels (the limit is {max_pixels / 1_000_000:g} megapixels); "
        "upload a smaller picture."
    )


def _corrupt() -> ImageError:
    return ImageError(
        "That image file is damaged or incomplete; re-save it as JPEG, PNG or WebP and try again."
    )


def _flatten(image: Image.Image) -> Image.Image:
    """Return an RGB copy of ``image`` with any transparency composited onto the background colour."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


class ImageBusy(ImageError):
    """``ImageFitGate`` turned a request away; ``user_message`` says why."""


class ImageFitGate:
    """One image fit at a time per process, and at most one per member in flight.

    A member's second request while their first is still waiting or fitting is refused at once; other
    members queue for the process-wide slot, up to ``max_waiting`` of them, beyond which requests are
    refused rather than piling up memory (each waiting request holds its downloaded bytes).

    Fits run on the gate's own worker thread (``run``): memory a fit frees stays in that thread's
    malloc arena for the next fit to reuse, where a shared pool would leave a high-water mark in
    each of its threads' arenas.
    """

    def __init__(self, *, concurrency: int = 1, max_waiting: int = 16, what: str = "image") -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._max_waiting = max_waiting
        self._waiting = 0
        self._members: set[int] = set()
        self._what = what  # what the refusals call the work (the /edit clip gate: "clip")
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=f"{what}-fit")

    @property
    def waiting(self) -> int:
        """How many requests are queued for a slot right now."""
        return self._waiting

    @contextlib.asynccontextmanager
    async def slot(self, member_id: int) -> AsyncIterator[None]:
        """Hold the process-wide fit slot for ``member_id``; raises ``ImageBusy`` without waiting when
        the member already has an image in flight or the queue is full."""
        if member_id in self._members:
            raise ImageBusy(
                f"Your previous {self._what} is still being prepared; wait for it to finish, then try again."
            )
        if self._waiting >= self._max_waiting:
            raise ImageBusy(f"The bot is preparing too many {self._what}s right now; try again in a minute.")
        self._members.add(member_id)
        try:
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
            try:
                yield
            finally:
                self._slots.release()
        finally:
            self._members.discard(member_id)

    async def run(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on the gate's worker thread (call it inside ``slot``)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))

    def close(self) -> None:
        """Let the worker thread go once the running fit (if any) is done."""
        self._executor.shutdown(wait=False)


async def fit_in_gate(
    gate: ImageFitGate,
    member_id: int,
    data: bytes,
    width: int,
    height: int,
    *,
    mode: FitMode = "cover",
    max_bytes: int = 10 * 1024 * 1024,
) -> bytes:
    """``prepare_image`` on the gate's worker thread while holding its slot for ``member_id``: the one
    call a command needs after its cheap checks. Raises ``ImageError`` (``ImageBusy`` included)."""
    async with gate.slot(member_id):
        return await gate.run(prepare_image, data, width, height, mode=mode, max_bytes=max_bytes)


def render_video(
    path: Path,
    *,
    prompt: str,
    width: int,
    height: int,
    seconds: float,
    fps: int = 24,
    first_frame: bytes | None = None,
    target_bitrate: int | None = None,
    noise: bool = False,
) -> None:
    """Write an H.264 MP4 of exactly ``width`` x ``height`` and ``seconds`` long to ``path``.

    The video shows the prompt (wrapped) over a background, a moving ball, a progress bar and a
    frame counter, so playback and seeking are visibly working. If ``first_frame`` (image bytes) is
    given, frame 0 is exactly that image and it stays as the background afterwards.

    ``target_bitrate`` (bits per second) switches the encoder from constant quality to an average
    bit rate. ``noise`` adds random grain to every frame so it cannot be compressed; together they
    give a file of roughly ``target_bitrate * seconds / 8`` bytes, which is how tests get big files.

    The file is written under a temporary name in the same directory and then renamed, so
    ``path`` never holds a partial video.
    """
    if width % 2 or height % 2:
        raise ValueError(f"H.264 with 4:2:0 chroma needs even dimensions, got {width}x{height}")
    frame_count = max(1, round(seconds * fps))
    background = _background(width, height, first_frame)
    base = background.copy()
    _draw_prompt(base, prompt)
    painter = _FramePainter(width, height, frame_count)

    def frames() -> Iterator[Image.Image]:
        for index in range(frame_count):
            if index == 0 and first_frame is not None:
                yield background
            else:
                image = painter.paint(base, index)
                yield _add_grain(image) if noise else image

    write_frames(path, frames(), width=width, height=height, fps=fps, target_bitrate=target_bitrate)


def write_frames(
    path: Path,
    frames: Iterable[Image.Image],
    *,
    width: int,
    height: int,
    fps: int,
    target_bitrate: int | None = None,
) -> None:
    """Encode ``frames`` (RGB images of exactly ``width`` x ``height``) as an H.264 MP4 at ``fps``.

    The file is written under a temporary name in the same directory and then renamed, so
    ``path`` never holds a partial video."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
    try:
        with av.open(str(temporary), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
            stream.width = width
            stream.height = height
            stream.pix_fmt = "yuv420p"
            stream.time_base = Fraction(1, fps)
            if target_bitrate is not None:
                stream.bit_rate = target_bitrate
            for index, image in enumerate(frames):
                frame = av.VideoFrame.from_image(image)
                frame.pts = index
                frame.time_base = Fraction(1, fps)
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def draw_caption(image: Image.Image, text: str, *, panel_alpha: int = 150) -> None:
    """Draw ``text`` wrapped on a panel in the upper part of ``image`` (in place), as ``render_video``
    draws its prompt; ``panel_alpha`` 255 hides what was there (a caption drawn over another)."""
    _draw_prompt(image, text, panel_alpha)


def _background(width: int, height: int, first_frame: bytes | None) -> Image.Image:
    if first_frame is not None:
        with Image.open(io.BytesIO(first_frame)) as opened:
            image = _flatten(opened)
        if image.size != (width, height):
            image = ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS)
        return image
    gradient = Image.linear_gradient("L").resize((width, height))
    return ImageOps.colorize(gradient, black=(18, 22, 58), white=(96, 32, 112))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _draw_prompt(image: Image.Image, prompt: str, panel_alpha: int = 150) -> None:
    """Draw the wrapped prompt on a translucent panel in the upper part of ``image``."""
    width, height = image.size
    margin = width // 16
    font_size = max(12, width // 22)
    font = _font(font_size)
    line_height = round(font_size * 1.3)
    max_lines = max(1, (height // 2 - 4 * margin) // line_height)
    lines = _wrap(prompt, font, width - 4 * margin, max_lines)

    panel_bottom = 3 * margin + line_height * max(1, len(lines))
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rounded_rectangle(
        (margin, margin, width - margin, panel_bottom), radius=margin // 2, fill=(0, 0, 0, panel_alpha)
    )
    y = 2 * margin
    for line in lines:
        draw.text((2 * margin, y), line, font=font, fill=(255, 255, 255, 255))
        y += line_height
    image.paste(overlay, mask=overlay)


def _wrap(
    text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_width: int, max_lines: int
) -> list[str]:
    """Greedily wrap ``text`` to lines no wider than ``max_width`` pixels; an ellipsis marks a cut."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        # A word wider than a whole line is split wherever it overflows.
        current = ""
        for char in word:
            if current and font.getlength(current + char) > max_width:
                lines.append(current)
                current = ""
            current += char
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while " " in last and font.getlength(last + " …") > max_width:
            last = last.rsplit(" ", 1)[0]
        lines[-1] = last + " …"
    return lines


class _FramePainter:
    """Paints the parts of a frame that change over time onto a copy of the static base image."""

    def __init__(self, width: int, height: int, frame_count: int) -> None:
        self._width = width
        self._height = height
        self._frame_count = frame_count
        self._radius = max(4, min(width, height) // 12)
        self._font = _font(max(10, width // 30))

    def paint(self, base: Image.Image, index: int) -> Image.Image:
        frame = base.copy()
        draw = ImageDraw.Draw(frame)
        width, height, radius = self._width, self._height, self._radius
        progress = index / max(1, self._frame_count - 1)
        # The ball crosses the frame twice per clip and bobs up and down, so consecutive frames and
        # distant frames all differ.
        travel = width - 2 * radius
        phase = (2 * progress) % 2
        x = radius + travel * (phase if phase <= 1 else 2 - phase)
        y = height * 0.7 + height * 0.08 * math.sin(progress * 4 * math.pi)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(255, 196, 0))
        bar_top = height - height // 20
        draw.rectangle((0, bar_top, round(width * progress), height), fill=(0, 200, 255))
        draw.text(
            (width // 16, bar_top - width // 12),
            f"frame {index + 1}/{self._frame_count}",
            font=self._font,
            fill=(255, 255, 255),
        )
        return frame


def _add_grain(image: Image.Image) -> Image.Image:
    grain = Image.frombytes("RGB", image.size, os.urandom(image.width * image.height * 3))
    return Image.blend(image, grain, 0.35)


def make_thumbnail(video_path: Path, out: Path) -> None:
    """Write the middle frame of the video at ``video_path`` to ``out`` as WebP."""
    (frame,) = _frames_at(video_path, [0.5])
    frame.save(out, format="WEBP", quality=80)


def make_spritesheet(
    video_path: Path,
    out: Path,
    *,
    columns: int = 5,
    rows: int = 2,
    tile_width: int = 160,
    image_format: Literal["JPEG", "WEBP"] = "JPEG",
) -> None:
    """Write a grid of ``columns`` x ``rows`` evenly spaced frames, in reading order, to ``out``
    (JPEG unless ``image_format`` says WebP)."""
    count = columns * rows
    frames = _frames_at(video_path, [(k + 0.5) / count for k in range(count)])
    source_width, source_height = frames[0].size
    tile_height = max(1, round(tile_width * source_height / source_width))
    sheet = Image.new("RGB", (columns * tile_width, rows * tile_height), _BACKGROUND)
    for k, frame in enumerate(frames):
        tile = frame.resize((tile_width, tile_height), Image.Resampling.BILINEAR)
        sheet.paste(tile, ((k % columns) * tile_width, (k // columns) * tile_height))
    sheet.save(out, format=image_format, quality=85)


def _frames_at(video_path: Path, fractions: list[float]) -> list[Image.Image]:
    """Decode the frames shown at each of ``fractions`` (0..1, ascending) of the video's duration."""
    with av.open(str(video_path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = _duration(container, stream)
        targets = iter(duration * fraction for fraction in fractions)
        target = next(targets, None)
        picked: list[Image.Image] = []
        last: av.VideoFrame | None = None
        for frame in container.decode(stream):
            last = frame
            while target is not None and (frame.time or 0.0) + 1e-9 >= target:
                picked.append(frame.to_image())
                target = next(targets, None)
            if target is None:
                break
        if last is None:
            raise ValueError(f"{video_path} has no decodable video frames")
        # Targets past the last frame's timestamp (rounding at the very end) take the last frame.
        while len(picked) < len(fractions):
            picked.append(last.to_image())
        return picked


def _duration(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    duration: float
    codec: str
    frames: int


def probe_video(path: Path) -> VideoInfo:
    """Read size, duration (seconds), codec name and frame count of the first video stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration=_duration(container, stream),
            codec=stream.codec_context.name,
            frames=frames,
        )


class MediaError(VideobotError):
    """A video could not be processed; ``user_message`` says so in plain words. Not a refusal of
    anything the member asked: the delivery planner reads the message as the reason a video is
    linked or undeliverable rather than attached."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


# Below this many bits per pixel per frame H.264 turns to mush; scale down rather than go lower.
_MIN_BITS_PER_PIXEL = 0.04
_MIN_SIDE = 240
_MUX_HEADROOM = 0.94  # container overhead and rate-control overshoot
_MIN_BIT_RATE = 150_000  # below this even a small picture is unwatchable: link it instead


def reencode_to_fit(src: Path, dst: Path, max_bytes: int) -> VideoInfo:
    """Re-encode ``src`` as H.264 so that the file is at most ``max_bytes``, writing ``dst``.

    The bit rate comes from the duration and the limit. The resolution is kept while that bit rate
    still gives acceptable quality; otherwise the video is scaled down (keeping its aspect ratio)
    until it does. Each attempt that still comes out too large retries at 85 % of the bit rate.
    Audio, if any, is dropped: generated clips from these models are silent or nearly so, and every
    byte goes to the picture. Raises ``MediaError`` when even the smallest attempt does not fit.
    """
    info = probe_video(src)
    duration = max(info.duration, 0.1)
    budget = max_bytes * 8 * _MUX_HEADROOM / duration
    if budget < _MIN_BIT_RATE:
        raise MediaError(
            f"The video could not be made smaller than {_mebibytes(max_bytes)} and still be watchable "
            f"(that leaves {budget / 1000:.0f} kbit/s for {duration:.0f} s of video)."
        )
    fps = info.frames / duration if info.frames else 24.0
    for _attempt in range(4):
        width, height = _scaled_for(info.width, info.height, budget, fps)
        _transcode(src, dst, width=width, height=height, bit_rate=int(budget))
        if dst.stat().st_size <= max_bytes:
            return probe_video(dst)
        budget *= 0.85
    size = dst.stat().st_size
    dst.unlink(missing_ok=True)
    raise MediaError(
        f"The video could not be made smaller than {_mebibytes(max_bytes)} (best attempt {_mebibytes(size)})."
    )


def _scaled_for(width: int, height: int, bit_rate: float, fps: float) -> tuple[int, int]:
    scale = 1.0
    while scale > 0.2:
        w, h = _even(width * scale), _even(height * scale)
        if bit_rate / (w * h * fps) >= _MIN_BITS_PER_PIXEL or min(w, h) <= _MIN_SIDE:
            return w, h
        scale *= 0.8
    return _even(width * scale), _even(height * scale)


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def _transcode(src: Path, dst: Path, *, width: int, height: int, bit_rate: int) -> None:
    temporary = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.part")
    try:
        with (
            av.open(str(src)) as source,
            av.open(str(temporary), mode="w", format="mp4", options={"movflags": "+faststart"}) as target,
        ):
            in_stream = source.streams.video[0]
            rate = in_stream.average_rate or Fraction(24, 1)
            out_stream = target.add_stream(
                "libx264",
                rate=rate,
                options={"preset": "veryfast", "maxrate": str(bit_rate), "bufsize": str(bit_rate * 2)},
            )
            out_stream.width = width
            out_stream.height = height
            out_stream.pix_fmt = "yuv420p"
            out_stream.bit_rate = bit_rate
            for frame in source.decode(in_stream):
                resized = frame.reformat(width=width, height=height, format="yuv420p")
                resized.pts = frame.pts
                resized.time_base = frame.time_base
                target.mux(out_stream.encode(resized))
            target.mux(out_stream.encode(None))
        os.replace(temporary, dst)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
