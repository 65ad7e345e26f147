"""The files a finished job serves: its MP4, thumbnail and spritesheet, drawn with PyAV and Pillow.

A job renders one of three ways: a new video of its prompt (create and remix), an extension (the
source video followed by a new segment that starts from the source's last frame and shows the new
prompt) or an edit (every frame of the source with the edit prompt drawn over it). Extensions and
edits read the source from a copy in the job's own directory (``SOURCE_FILENAME``), so the source
job's files may expire or be deleted while the render waits.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Final, Literal

import av
from PIL import Image, ImageOps

from bot.adapters.media import draw_caption, make_spritesheet, make_thumbnail, render_video, write_frames

Operation = Literal["create", "extend", "edit"]


@dataclass(frozen=True)
class Asset:
    filename: str
    content_type: str


ASSETS: Final[Mapping[str, Asset]] = {
    "video": Asset("video.mp4", "video/mp4"),
    "thumbnail": Asset("thumbnail.webp", "image/webp"),
    # The contract lists video/mp4 and image/webp for content downloads: WebP, like the thumbnail.
    "spritesheet": Asset("spritesheet.webp", "image/webp"),
}
"""Download variant → the file that serves it."""

REFERENCE_FILENAME: Final = "reference"
"""An uploaded reference image, waiting in the job's directory for its render."""
SOURCE_FILENAME: Final = "source.mp4"
"""The video an extension or edit starts from, waiting in the job's directory for its render."""
_SEGMENT_FILENAME: Final = "segment.mp4"


def render_assets(
    directory: Path,
    *,
    prompt: str,
    width: int,
    height: int,
    seconds: float,
    fps: int,
    use_reference: bool,
    noise: bool,
    target_bitrate: int | None,
    operation: Operation = "create",
    source_seconds: float = 0.0,
) -> int:
    """Render the MP4, then its thumbnail and spritesheet, into ``directory`` (blocking: run it in a
    worker thread); with ``use_reference``, the reference image waiting there becomes the first frame
    and is then deleted. ``seconds`` is the length of the new material: the whole video for create
    and edit, the new segment for an extension (which then lasts ``source_seconds + seconds``).
    Returns the bytes the served files take."""
    directory.mkdir(parents=True, exist_ok=True)
    reference = directory / REFERENCE_FILENAME
    first_frame = reference.read_bytes() if use_reference else None
    reference.unlink(missing_ok=True)
    video = directory / ASSETS["video"].filename
    source = directory / SOURCE_FILENAME
    try:
        if operation == "create":
            render_video(
                video,
                prompt=prompt,
                width=width,
                height=height,
                seconds=seconds,
                fps=fps,
                first_frame=first_frame,
                target_bitrate=target_bitrate,
                noise=noise,
            )
        elif operation == "extend":
            _render_extension(
                video, source, prompt, width, height, source_seconds, seconds, fps, target_bitrate
            )
        else:
            _render_edit(video, source, prompt, width, height, seconds, fps, target_bitrate)
    finally:
        source.unlink(missing_ok=True)
        (directory / _SEGMENT_FILENAME).unlink(missing_ok=True)
    make_thumbnail(video, directory / ASSETS["thumbnail"].filename)
    make_spritesheet(video, directory / ASSETS["spritesheet"].filename, image_format="WEBP")
    return sum((directory / asset.filename).stat().st_size for asset in ASSETS.values())


def _render_extension(
    video: Path,
    source: Path,
    prompt: str,
    width: int,
    height: int,
    source_seconds: float,
    seconds: float,
    fps: int,
    target_bitrate: int | None,
) -> None:
    source_count = max(1, round(source_seconds * fps))
    # The new segment follows the source's last frame with the new prompt and its own motion.
    segment = video.with_name(_SEGMENT_FILENAME)
    render_video(
        segment,
        prompt=prompt,
        width=width,
        height=height,
        seconds=seconds,
        fps=fps,
        target_bitrate=target_bitrate,
    )
    segment_count = max(1, round(seconds * fps))

    def frames() -> Iterator[Image.Image]:
        yield from source_frames(source, width, height, fps, source_count)
        yield from source_frames(segment, width, height, fps, segment_count)

    write_frames(video, frames(), width=width, height=height, fps=fps, target_bitrate=target_bitrate)


def _render_edit(
    video: Path,
    source: Path,
    prompt: str,
    width: int,
    height: int,
    seconds: float,
    fps: int,
    target_bitrate: int | None,
) -> None:
    def frames() -> Iterator[Image.Image]:
        for frame in source_frames(source, width, height, fps, max(1, round(seconds * fps))):
            # Opaque, so that the edit prompt replaces the source's caption rather than mixing with it.
            draw_caption(frame, f"Edit: {prompt}", panel_alpha=255)
            yield frame

    write_frames(video, frames(), width=width, height=height, fps=fps, target_bitrate=target_bitrate)


def source_frames(source: Path, width: int, height: int, fps: int, count: int) -> Iterator[Image.Image]:
    """Exactly ``count`` frames of ``source`` resampled to ``fps`` and fitted to ``width`` x ``height``
    (cropped to fill); a source shorter than that holds its last frame."""
    with av.open(str(source)) as container:
        stream = container.streams.video[0]
        decoded = _decoded_images(container, stream)
        current = next(decoded, None)
        if current is None:
            raise ValueError("the source video has no frames")
        upcoming = next(decoded, None)
        for index in range(count):
            when = Fraction(index, fps)
            while upcoming is not None and upcoming[0] <= when:
                current, upcoming = upcoming, next(decoded, None)
            image = current[1]
            if image.size != (width, height):
                image = ImageOps.fit(image, (width, height), method=Image.Resampling.BILINEAR)
            yield image.copy()


def _decoded_images(
    container: av.container.InputContainer, stream: av.VideoStream
) -> Iterator[tuple[Fraction, Image.Image]]:
    """(presentation time relative to the first frame, RGB image) for each decoded frame."""
    start: Fraction | None = None
    for frame in container.decode(stream):
        if frame.pts is None or frame.time_base is None:
            continue
        when = Fraction(frame.pts) * frame.time_base
        start = when if start is None else start
        yield when - start, frame.to_image().convert("RGB")


@dataclass(frozen=True)
class ClipInfo:
    width: int
    height: int
    duration: float


def probe_clip(data: BinaryIO, *, max_pixels: int) -> ClipInfo:
    """Size and duration of an uploaded video after decoding its first frame (blocking).

    Raises ``ValueError`` with a plain reason for anything that is not a decodable video, or whose
    picture is larger than ``max_pixels`` (checked before any frame is decoded)."""
    try:
        with av.open(data, mode="r") as container:
            if not container.streams.video:
                raise ValueError("the file has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width < 2 or height < 2:
                raise ValueError("the video has no usable picture size")
            if width * height > max_pixels:
                raise ValueError(f"the video is {width}x{height}, larger than {max_pixels} pixels")
            if next(container.decode(stream), None) is None:
                raise ValueError("the video has no frames")
            duration = _clip_duration(container, stream)
    except av.FFmpegError as exc:
        raise ValueError(f"the file is not a readable video ({type(exc).__name__})") from None
    return ClipInfo(width, height, duration)


def _clip_duration(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    raise ValueError("the video does not say how long it is")
