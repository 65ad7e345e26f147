"""Members' clips for ``/edit`` on PyAV: checked by their content, converted to H.264 (the
``ClipConverter`` port).

A clip is untrusted bytes, so nothing about it is believed before it is checked:

- The container is recognised from its first bytes (an ISO-BMFF ``ftyp`` box for MP4/MOV, the EBML
  header with the ``webm`` doctype for WebM) and opened with exactly that demuxer, never by FFmpeg's
  probing, which would also accept playlists (HLS, concat) that make it open other files or URLs.
  The bytes are read from memory: there is no file name for a demuxer to resolve others against.
- Only a few video codecs are decoded (``_CODECS``); audio is dropped.
- Its declared size and duration are bounded before a frame is decoded, and every decoded frame is
  checked again (a clip that grows its picture or runs past its declared length midway is refused
  there): a small file can't make the bot decode huge frames or hours of video.
- It is converted to H.264 at the size among the model's that is nearest in shape (scaled to fit,
  the rest padded black), one clip at a time per process and one per member (``ClipGate``).
"""

from __future__ import annotations

import io
import itertools
import math
import os
import uuid
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av

from bot.adapters.media import ImageBusy, ImageFitGate, probe_video
from bot.services.ports import ClipUnusable, ConvertedClip

MAX_SIDE = 4096
MAX_PIXELS = 4096 * 2304
MIN_SIDE = 16
MAX_FPS = 60  # what the converted clip keeps at most (faster clips have frames dropped)
MAX_DECODED_FPS = 240  # what is decoded at most: a clip with more frames than that is refused
MIN_SECONDS = 0.5
_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "prores", "mjpeg"})
_WHAT = "Attach an MP4, MOV or WebM video."


def sniff_container(data: bytes) -> str | None:
    """The demuxer for ``data`` by its first bytes: ``mov`` (MP4, MOV), ``matroska`` (WebM), or None."""
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "mov"
    if data[:4] == b"\x1a\x45\xdf\xa3" and b"webm" in data[:64]:
        return "matroska"
    return None


def nearest_size(width: int, height: int, sizes: Iterable[str]) -> str:
    """The size of ``sizes`` whose shape is closest to ``width`` x ``height`` (then the closest in area)."""

    def distance(size: str) -> tuple[float, float]:
        w, h = (int(part) for part in size.split("x"))
        return abs(math.log((width / height) / (w / h))), abs(math.log((width * height) / (w * h)))

    return min(sizes, key=distance)


def convert_clip(data: bytes, dest: Path, *, sizes: Iterable[str], max_seconds: float) -> ConvertedClip:
    """Check ``data`` and write it to ``dest`` as H.264 at the nearest of ``sizes``. Raises
    ``ClipUnusable``; nothing is left at ``dest`` then."""
    demuxer = sniff_container(data)
    if demuxer is None:
        raise ClipUnusable(f"That file isn't a video the bot can read. {_WHAT}")
    sizes = tuple(sizes)
    if not sizes:
        raise ValueError("no sizes to convert to")
    temporary = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        size = _transcode(data, demuxer, temporary, sizes, max_seconds)
        info = probe_video(temporary)
        if info.duration < MIN_SECONDS:
            raise ClipUnusable(f"That clip is shorter than {MIN_SECONDS} seconds. {_WHAT}")
        os.replace(temporary, dest)
    except av.error.FFmpegError as exc:
        raise ClipUnusable(f"That video could not be read (it may be damaged). {_WHAT}") from exc
    finally:
        temporary.unlink(missing_ok=True)
    return ConvertedClip(path=dest, size=size, duration=info.duration)


def _transcode(data: bytes, demuxer: str, out: Path, sizes: tuple[str, ...], max_seconds: float) -> str:
    too_long = ClipUnusable(f"That clip is longer than {max_seconds:g} seconds. Trim it and try again.")
    with av.open(io.BytesIO(data), mode="r", format=demuxer, options={"enable_drefs": "0"}) as source:
        if not source.streams.video:
            raise ClipUnusable(f"That file has no video in it. {_WHAT}")
        stream = source.streams.video[0]
        codec = stream.codec_context.name
        if codec not in _CODECS:
            raise ClipUnusable(f"That video uses a format the bot doesn't read ({codec}). {_WHAT}")
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_picture(width, height)
        declared = _declared_seconds(source, stream)
        if declared is not None and declared > max_seconds + 0.25:
            raise too_long
        size = nearest_size(width, height, sizes)
        target_w, target_h = (int(part) for part in size.split("x"))
        rate = stream.average_rate or Fraction(24, 1)
        if rate > MAX_FPS:
            rate = Fraction(MAX_FPS, 1)
        max_frames = int(max_seconds * MAX_DECODED_FPS) + MAX_DECODED_FPS
        with av.open(str(out), mode="w", format="mp4", options={"movflags": "+faststart"}) as target:
            encoder = target.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "20"})
            encoder.width, encoder.height, encoder.pix_fmt = target_w, target_h, "yuv420p"
            graph = _fit_graph(stream, target_w, target_h)
            frames = 0
            first: float | None = None
            last_pts: int | None = None
            for frame in source.decode(stream):
                frames += 1
                if frames > max_frames:
                    raise ClipUnusable(f"That clip has more than {MAX_DECODED_FPS} frames a second. {_WHAT}")
                if (frame.width, frame.height) != (width, height):
                    raise ClipUnusable(f"That clip changes its picture size partway. {_WHAT}")
                at = float(frame.time) if frame.time is not None else frames / float(rate)
                first = at if first is None else first
                if at - first > max_seconds + 0.01:
                    raise too_long
                pts = round((at - first) * rate)
                if last_pts is not None and pts <= last_pts:
                    continue  # faster than the output's rate: this frame is dropped
                last_pts = pts
                graph.vpush(frame)
                fitted = graph.vpull()
                fitted.pts = pts
                fitted.time_base = 1 / rate
                target.mux(encoder.encode(fitted))
            if frames == 0:
                raise ClipUnusable(f"That clip has no pictures in it. {_WHAT}")
            target.mux(encoder.encode(None))
    return size


def _check_picture(width: int, height: int) -> None:
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise ClipUnusable(
            f"That clip is {width}x{height}; the bot takes clips from {MIN_SIDE} to {MAX_SIDE} pixels a side "
            "(at most 4096x2304). Export it smaller."
        )


def _declared_seconds(source: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if source.duration is not None:
        return source.duration / av.time_base
    return None


def _fit_graph(stream: av.VideoStream, width: int, height: int) -> av.filter.Graph:
    """Scale to fit ``width`` x ``height`` keeping the shape, pad the rest black, as yuv420p."""
    graph = av.filter.Graph()
    chain = [
        graph.add_buffer(template=stream),
        graph.add("scale", f"{width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2"),
        graph.add("pad", f"{width}:{height}:(ow-iw)/2:(oh-ih)/2:black"),
        graph.add("format", "yuv420p"),
        graph.add("buffersink"),
    ]
    for upstream, downstream in itertools.pairwise(chain):
        upstream.link_to(downstream)
    graph.configure()
    return graph


class ClipGate:
    """One clip conversion at a time per process, one per member in flight, at most ``max_waiting``
    queued (each holds its downloaded bytes): an ``ImageFitGate`` of its own, with its own thread."""

    def __init__(self, *, max_waiting: int = 4) -> None:
        self.gate = ImageFitGate(max_waiting=max_waiting, what="clip")

    async def convert(
        self, member_id: int, data: bytes, dest: Path, *, sizes: Iterable[str], max_seconds: float
    ) -> ConvertedClip:
        """``convert_clip`` on the gate's thread, holding its slot for ``member_id``."""
        try:
            async with self.gate.slot(member_id):
                return await self.gate.run(
                    convert_clip, data, dest, sizes=tuple(sizes), max_seconds=max_seconds
                )
        except ImageBusy as exc:
            raise ClipUnusable(exc.user_message, busy=True) from exc

    def close(self) -> None:
        self.gate.close()
