"""Members' clips for ``/edit``: real MP4, MOV and WebM files made with PyAV, checked by content and
converted to H.264 at the nearest catalog size; hostile files refused before they cost anything."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import pytest

from bot.adapters.clips import convert_clip, nearest_size, sniff_container
from bot.adapters.media import probe_video
from bot.adapters.sqlite.store import Store
from bot.domain.jobs import JobKind, JobRequest
from bot.services.ports import ClipUnusable

SIZES = ("720x1280", "1280x720")


def encode(
    fmt: str, codec: str, *, width: int, height: int, frames: int, fps: int, audio: bool = False
) -> bytes:
    out = io.BytesIO()
    with av.open(out, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=Fraction(fps, 1))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(i * 9) % 256]) * plane.buffer_size)
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "codec", "width", "height", "expected"),
    [
        ("mp4", "libx264", 640, 360, "1280x720"),
        ("mov", "mpeg4", 360, 640, "720x1280"),
        ("webm", "libvpx", 400, 400, "720x1280"),
    ],
)
def test_mp4_mov_and_webm_become_h264_at_the_nearest_size(
    tmp_path: Path, fmt: str, codec: str, width: int, height: int, expected: str
) -> None:
    data = encode(fmt, codec, width=width, height=height, frames=12, fps=4)
    clip = convert_clip(data, tmp_path / "clip.mp4", sizes=SIZES, max_seconds=20)
    assert clip.size == expected and clip.duration == pytest.approx(3.0, abs=0.3)
    info = probe_video(clip.path)
    assert (f"{info.width}x{info.height}", info.codec) == (expected, "h264")
    assert list(tmp_path.iterdir()) == [clip.path]


def test_nearest_size_goes_by_shape_then_area() -> None:
    assert nearest_size(1920, 1080, ("720x1280", "1280x720", "1792x1024")) == "1280x720"
    assert nearest_size(1750, 1000, ("720x1280", "1280x720", "1792x1024")) == "1792x1024"
    assert nearest_size(1080, 1920, SIZES) == "720x1280"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # A playlist or a concat script would make FFmpeg open other files or URLs.
        (b"#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n", "isn't a video the bot can read"),
        (b"ffconcat version 1.0\nfile '/etc/passwd'\n", "isn't a video the bot can read"),
        (b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200, "could not be read"),
        (b"GIF89a" + b"\x00" * 100, "isn't a video the bot can read"),
    ],
)
def test_what_is_not_an_mp4_mov_or_webm_is_refused(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(ClipUnusable, match=message):
        convert_clip(data, tmp_path / "clip.mp4", sizes=SIZES, max_seconds=20)
    assert list(tmp_path.iterdir()) == []


def test_sniffing_needs_the_container_signature() -> None:
    assert sniff_container(encode("mp4", "libx264", width=32, height=32, frames=2, fps=2)) == "mov"
    assert sniff_container(encode("webm", "libvpx", width=32, height=32, frames=2, fps=2)) == "matroska"
    assert sniff_container(b"\x1a\x45\xdf\xa3" + b"\x00" * 60) is None  # Matroska, but not WebM


def test_too_long_too_large_or_too_many_frames_are_refused_before_much_work(tmp_path: Path) -> None:
    # (Bounds scaled down to 2 s to keep the test cheap; the limits are the same code.)
    long_clip = encode("mp4", "libx264", width=64, height=64, frames=6, fps=2)  # 3 s
    with pytest.raises(ClipUnusable, match="longer than 2 seconds"):
        convert_clip(long_clip, tmp_path / "a.mp4", sizes=SIZES, max_seconds=2)
    # A small file whose pictures are huge (a decompression bomb) is refused from its header.
    wide = encode("mp4", "mpeg4", width=4112, height=16, frames=2, fps=2)
    with pytest.raises(ClipUnusable, match="4112x16"):
        convert_clip(wide, tmp_path / "b.mp4", sizes=SIZES, max_seconds=20)
    # 800 frames in 0.8 s: more pictures than a 2-second clip at 240 a second may hold.
    fast = encode("mp4", "libx264", width=16, height=16, frames=800, fps=1000)
    with pytest.raises(ClipUnusable, match="more than 240 frames a second"):
        convert_clip(fast, tmp_path / "c.mp4", sizes=SIZES, max_seconds=2)
    assert list(tmp_path.iterdir()) == []


def test_a_fast_clip_keeps_at_most_60_frames_a_second(tmp_path: Path) -> None:
    data = encode("mp4", "libx264", width=64, height=64, frames=120, fps=120)  # 1 s
    clip = convert_clip(data, tmp_path / "clip.mp4", sizes=SIZES, max_seconds=20)
    info = probe_video(clip.path)
    assert info.frames <= 61 and clip.duration == pytest.approx(1.0, abs=0.1)


async def test_a_clip_is_kept_while_its_job_keeps_its_files(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "bot.db") as store:
        request = JobRequest(
            guild_id=1,
            channel_id=2,
            user_id=3,
            user_name="m",
            prompt="p",
            model="sora-2",
            size="720x1280",
            seconds=8,
            cost=8,
            usd=0.8,
            kind="edit",
            clip_path=str(tmp_path / "references" / "clip-1-abc.mp4"),
        )
        job_id = await store.insert_job(request)
        job = await store.get_job(job_id)
        assert job is not None and (job.kind, job.clip_path) == (JobKind.EDIT, request.clip_path)
        ids, kept = await store.jobs_keeping_files(0)
        assert ids == {job_id} and kept == {request.clip_path}
