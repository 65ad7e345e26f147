"""The files a finished job serves: its MP4, thumbnail and spritesheet, drawn with PyAV and Pillow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bot.adapters.media import make_spritesheet, make_thumbnail, render_video


@dataclass(frozen=True)
class Asset:
    filename: str
    content_type: str


ASSETS: Final[Mapping[str, Asset]] = {
    "video": Asset("video.mp4", "video/mp4"),
    "thumbnail": Asset("thumbnail.webp", "image/webp"),
    "spritesheet": Asset("spritesheet.jpg", "image/jpeg"),
}
"""Download variant → the file that serves it."""

REFERENCE_FILENAME: Final = "reference"
"""An uploaded reference image, waiting in the job's directory for its render."""


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
) -> int:
    """Render the MP4, then its thumbnail and spritesheet, into ``directory`` (blocking: run it in a
    worker thread); with ``use_reference``, the reference image waiting there becomes the first frame
    and is then deleted. Returns the bytes the served files take."""
    directory.mkdir(parents=True, exist_ok=True)
    reference = directory / REFERENCE_FILENAME
    first_frame = reference.read_bytes() if use_reference else None
    reference.unlink(missing_ok=True)
    video = directory / ASSETS["video"].filename
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
    make_thumbnail(video, directory / ASSETS["thumbnail"].filename)
    make_spritesheet(video, directory / ASSETS["spritesheet"].filename)
    return sum((directory / asset.filename).stat().st_size for asset in ASSETS.values())
