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


def render_assets(
    directory: Path,
    *,
    prompt: str,
    width: int,
    height: int,
    seconds: float,
    fps: int,
    first_frame: bytes | None,
    noise: bool,
    target_bitrate: int | None,
) -> None:
    """Render the MP4, then its thumbnail and spritesheet, into ``directory`` (blocking: run it in a
    worker thread)."""
    directory.mkdir(parents=True, exist_ok=True)
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
