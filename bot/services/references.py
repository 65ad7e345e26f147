"""A member's starting image for ``/video``: downloaded from Discord, checked, fitted, stored.

The Discord layer only parses the attachment and calls ``prepare`` (after the cheap checks, inside
``JobStarter``'s ``prepare`` step, so nothing is downloaded for a request the limits refuse). Where
the bytes may come from and how a fit is bounded are the adapters' (``AttachmentFetcher``,
``ImageFitter``); this turns their refusals into the member's one line.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bot.domain.errors import UserError
from bot.services.ports import (
    AttachmentFetcher,
    AttachmentUnavailable,
    ImageFitter,
    ImageUnusable,
    ReferenceImageRepository,
)

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 10 * 1024 * 1024


class ReferenceImages:
    def __init__(
        self,
        fetcher: AttachmentFetcher,
        fitter: ImageFitter,
        folder: Path,
        *,
        max_bytes: int = MAX_IMAGE_BYTES,
        clock: Callable[[], float] = time.time,
        shared: ReferenceImageRepository | None = None,
    ) -> None:
        self.fetcher = fetcher
        self.shared = shared
        self.fitter = fitter
        self.folder = folder
        self.max_bytes = max_bytes
        self._clock = clock

    async def prepare(self, url: str, member_id: int, width: int, height: int) -> Path:
        """The attachment at ``url`` fitted to ``width`` x ``height``, as a PNG file under
        ``folder`` and, with ``shared``, in the database under the file's name (another process,
        whose DATA_DIR lacks the file, reads it there); a ``UserError`` saying why not (nothing is
        written then)."""
        try:
            data = await self.fetcher.fetch(url, max_bytes=self.max_bytes)
        except AttachmentUnavailable as exc:
            log.info("reference image of member %s not downloaded: %s", member_id, exc.reason)
            raise UserError(exc.user_message) from exc
        try:
            fitted = await self.fitter.fit(member_id, data, width, height, max_bytes=self.max_bytes)
        except ImageUnusable as exc:
            raise UserError(exc.user_message) from exc
        path = self.folder / f"{int(self._clock())}-{uuid.uuid4().hex}.png"
        if self.shared is not None:
            await self.shared.save_reference_image(path.name, fitted)
        await asyncio.to_thread(_write_file, path, fitted)
        return path


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)
