"""Signed, expiring download links for videos too large to upload to Discord.

A link names the job, an expiry time and an HMAC over both, so it can't be guessed or extended,
and it stops working after ``LINK_TTL_SECONDS``. The signing key is random, made once and kept in
the database (``meta``), so links survive restarts and nothing needs configuring beyond
``PUBLIC_BASE_URL`` and ``HTTP_PORT``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from bot.adapters.sql.store import SqlStore
from bot.logsafety import register_secret

log = logging.getLogger(__name__)

LINK_TTL_SECONDS = 7 * 24 * 3600
KEY_META = "media_link_key"
ROUTE = "/media/{job_id}/{expires}/{signature}/{filename}"


class MediaLinks:
    def __init__(
        self, store: SqlStore, public_base_url: str, key: bytes, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.base_url = public_base_url.rstrip("/")
        self._key = key
        self._clock = clock

    def __repr__(self) -> str:  # the key is a secret
        return f"MediaLinks(base_url={self.base_url!r})"

    @classmethod
    async def load(cls, store: SqlStore, public_base_url: str) -> MediaLinks:
        stored = await store.get_meta(KEY_META)
        if stored is None:
            stored = secrets.token_urlsafe(32)
            # Before saving it: the database driver logs the statement's parameters at DEBUG.
            register_secret(stored)
            await store.set_meta(KEY_META, stored)
        register_secret(stored)
        return cls(store, public_base_url, stored.encode())

    def _signature(self, job_id: int, expires: int) -> str:
        digest = hmac.new(self._key, f"{job_id}:{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def url_for(self, job_id: int, filename: str) -> tuple[str, int]:
        """A link to the job's video and when it expires (Unix seconds)."""
        expires = int(self._clock()) + LINK_TTL_SECONDS
        return (
            f"{self.base_url}/media/{job_id}/{expires}/{self._signature(job_id, expires)}/{filename}",
            expires,
        )

    def routes(self) -> list[web.RouteDef]:
        return [web.get(ROUTE, self.serve)]

    async def serve(self, request: web.Request) -> web.StreamResponse:
        try:
            job_id = int(request.match_info["job_id"])
            expires = int(request.match_info["expires"])
        except ValueError:
            raise web.HTTPNotFound() from None
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, so a 500).
        offered = request.match_info["signature"].encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(offered, self._signature(job_id, expires).encode()):
            raise web.HTTPNotFound()
        if self._clock() > expires:
            raise web.HTTPGone(text="This link has expired.")
        job = await self.store.get_job(job_id)
        if job is None or not job.media_path or not Path(job.media_path).is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(
            job.media_path,
            headers={
                "Content-Type": "video/mp4",
                "Content-Disposition": f'inline; filename="video-{job_id}.mp4"',
                "Cache-Control": "private, max-age=3600",
            },
        )
