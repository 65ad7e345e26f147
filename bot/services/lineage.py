"""Sending extensions and edits to the provider, and reading what it answers about them.

The tracker submits every job; for an extension (``POST /videos/extensions``: the source video, the
prompt and the new segment's seconds) or an edit (``POST /videos/edits``: the source video, or the
member's converted clip, and the prompt) it hands over to ``send``. What the provider answers as
the video's ``seconds`` is the truth about its length (for an extension, the source and the new
segment together): ``delivered_seconds`` reads it for the lifecycle to record.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.domain.jobs import Job, JobKind
from bot.domain.messages import remix_source_gone, source_gone_message, unsupported_message
from bot.domain.provider import Video
from bot.domain.provider_errors import UnsupportedEndpoint, VideoAPIError
from bot.services.ports import VideoProvider

LINEAGE_KINDS = frozenset({JobKind.EXTENSION, JobKind.EDIT})
SOURCE_GONE_CODE = "remix_source_gone"  # the code remixes already use: Again is not offered for it
UNSUPPORTED_CODE = "unsupported_operation"
_MAX_SECONDS = 24 * 3600  # anything longer is not a length a provider means


class ClipMissing(Exception):
    """The converted clip of an edit is gone from disk (deleted, or a different DATA_DIR)."""


async def send(api: VideoProvider, job: Job) -> Video:
    """The provider request for an extension or an edit (``job.kind`` in ``LINEAGE_KINDS``)."""
    if job.kind is JobKind.EXTENSION:
        if not job.source_video_id:
            raise ValueError(f"extension job {job.id} has no source video")
        return await api.extend(job.source_video_id, job.prompt, job.seconds)
    if job.clip_path:
        try:
            clip = await asyncio.to_thread(Path(job.clip_path).read_bytes)
        except OSError as exc:
            raise ClipMissing(job.clip_path) from exc
        return await api.edit(job.prompt, clip=clip, clip_type="video/mp4")
    if not job.source_video_id:
        raise ValueError(f"edit job {job.id} has neither a source video nor a clip")
    return await api.edit(job.prompt, video_id=job.source_video_id)


def failure(job: Job, exc: VideoAPIError) -> tuple[str, str] | None:
    """(code, member-facing message) when the provider refused a remix, extension or edit because
    of what it started from, or because it lacks the endpoint; None for any other error."""
    if isinstance(exc, UnsupportedEndpoint):
        return UNSUPPORTED_CODE, unsupported_message(job.kind.value)
    started_from_video = job.remixed_from_video_id or (job.source_video_id and not job.clip_path)
    if started_from_video and remix_source_gone(exc):
        return SOURCE_GONE_CODE, source_gone_message(job.kind.value)
    return None


def delivered_seconds(video: Video) -> int | None:
    """The provider's ``seconds`` as a whole number (``"12"``, ``12.0``), or None when it gave none
    that makes sense."""
    try:
        seconds = round(float(video.seconds or ""))
    except ValueError:
        return None
    return seconds if 0 < seconds <= _MAX_SECONDS else None
