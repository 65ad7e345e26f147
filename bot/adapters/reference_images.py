"""The reference-image ports (``AttachmentFetcher``, ``ImageFitter``) on aiohttp and Pillow.

One object per process, made by the composition root: it owns the HTTP session attachments are
downloaded with (separate from discord.py's, so no bot token ever travels with a download) and the
one ``ImageFitGate`` every fit goes through.
"""

from __future__ import annotations

import aiohttp

from bot.adapters.attachments import AttachmentRefused, fetch_attachment
from bot.adapters.media import ImageBusy, ImageError, ImageFitGate, fit_in_gate
from bot.services.ports import AttachmentUnavailable, ImageUnusable


class AttachmentImages:
    """Downloads from Discord's CDN (or ``extra_origin``: the configured Discord API base, which
    stand-ins serve attachments from) and fits on ``gate``'s own worker thread."""

    def __init__(
        self, *, extra_origin: str | None, gate: ImageFitGate | None = None, time_limit: float = 30.0
    ) -> None:
        self.extra_origin = extra_origin
        self.gate = gate or ImageFitGate()
        self.time_limit = time_limit
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, url: str, *, max_bytes: int) -> bytes:
        if self._session is None or self._session.closed:
            # Made on first use: a ClientSession belongs to the running loop.
            self._session = aiohttp.ClientSession()
        try:
            return await fetch_attachment(
                self._session,
                url,
                max_bytes=max_bytes,
                extra_origin=self.extra_origin,
                time_limit=self.time_limit,
            )
        except AttachmentRefused as exc:
            raise AttachmentUnavailable(exc.reason, exc.user_message) from exc

    async def fit(self, member_id: int, data: bytes, width: int, height: int, *, max_bytes: int) -> bytes:
        try:
            return await fit_in_gate(self.gate, member_id, data, width, height, max_bytes=max_bytes)
        except ImageBusy as exc:
            raise ImageUnusable(exc.user_message, busy=True) from exc
        except ImageError as exc:
            raise ImageUnusable(exc.user_message) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self.gate.close()
