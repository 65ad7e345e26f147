"""A member's clip for ``/edit``: downloaded from Discord, checked by its content, converted, stored.

Like ``ReferenceImages``: the Discord layer parses the attachment and calls ``prepare`` inside
``JobStarter``'s ``prepare`` step (after the limits passed, so nothing is downloaded for a request
they refuse). Where the bytes may come from is the ``AttachmentFetcher``'s (Discord's CDN only);
what a clip may be and how the conversion is bounded is the ``ClipConverter``'s. The converted
clip is kept in ``DATA_DIR/references`` with the job (retention deletes it with the job's files).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from bot.domain.catalog import MAX_EDIT_CLIP_SECONDS
from bot.domain.errors import UserError
from bot.services.ports import (
    AttachmentFetcher,
    AttachmentUnavailable,
    ClipConverter,
    ClipUnusable,
    ConvertedClip,
)

log = logging.getLogger(__name__)

# The types a clip may claim (the content decides; a claim of anything else is refused early).
CLIP_TYPES = frozenset({"video/mp4", "video/quicktime", "video/webm", "application/octet-stream"})
# Never more than this, whatever the server's upload limit (Discord's largest is 500 MiB).
MAX_CLIP_BYTES = 100 * 1024 * 1024


class EditClips:
    def __init__(
        self,
        fetcher: AttachmentFetcher,
        converter: ClipConverter,
        folder: Path,
        *,
        max_seconds: float = MAX_EDIT_CLIP_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fetcher = fetcher
        self.converter = converter
        self.folder = folder
        self.max_seconds = max_seconds
        self._clock = clock

    async def prepare(
        self, url: str, member_id: int, *, sizes: Iterable[str], max_bytes: int
    ) -> ConvertedClip:
        """The clip at ``url`` converted to H.264 at the nearest of ``sizes``, as an MP4 under
        ``folder``; a ``UserError`` saying why not (nothing is left on disk then)."""
        try:
            data = await self.fetcher.fetch(url, max_bytes=min(max_bytes, MAX_CLIP_BYTES))
        except AttachmentUnavailable as exc:
            log.info("edit clip of member %s not downloaded: %s", member_id, exc.reason)
            raise UserError(exc.user_message) from exc
        dest = self.folder / f"clip-{int(self._clock())}-{uuid.uuid4().hex}.mp4"
        try:
            return await self.converter.convert(
                member_id, data, dest, sizes=tuple(sizes), max_seconds=self.max_seconds
            )
        except ClipUnusable as exc:
            dest.unlink(missing_ok=True)
            raise UserError(exc.user_message) from exc
