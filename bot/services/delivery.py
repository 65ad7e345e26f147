"""Turns a finished file into what the presenter posts (``bot.domain.delivery.decide`` makes the
choice; this does the work around it: the re-encode, the thumbnail, the signed link)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from bot.domain.delivery import (
    DEFAULT_UPLOAD_LIMIT,
    Delivery,
    FileFacts,
    Link,
    Undeliverable,
    Upload,
    UseFitted,
    UseLink,
    UseOriginal,
    decide,
    needs_fitting,
    thumbnail_filename,
    video_filename,
)
from bot.domain.jobs import Job

Fit = Callable[[Path, Path, int], str | None]
"""Re-encode ``src`` to ``dst`` within ``limit`` bytes; the reason in plain words when it can't."""
Thumbnail = Callable[[Path, Path], None]


class LinkSigner(Protocol):
    def url_for(self, job_id: int, filename: str) -> tuple[str, int]:
        """A signed URL for the job's file and when it expires (Unix seconds)."""
        ...


class DeliveryPlanner:
    def __init__(self, *, fit: Fit, thumbnail: Thumbnail, links: LinkSigner | None = None) -> None:
        self._fit = fit
        self._thumbnail = thumbnail
        self.links = links
        # Re-encodes and thumbnails are CPU-bound: one per core, less the one the event loop needs
        # (at least one). Uploads that need neither never wait for them.
        self._reencode_slots = asyncio.Semaphore(cpu_slots())

    async def plan(self, job: Job, media: Path, limit: int | None = None) -> Delivery:
        """What to post for ``job`` whose file is ``media``, into a destination taking ``limit``
        bytes (the job's announced upload limit by default)."""
        limit = limit or job.upload_limit or DEFAULT_UPLOAD_LIMIT
        size = media.stat().st_size
        fitted = media.with_name(f"{media.stem}.fit-{limit}.mp4")
        problem: str | None = None
        if needs_fitting(size, limit) and not fitted.exists():
            # In a worker thread, bounded by cores: it is CPU-heavy.
            async with self._reencode_slots:
                problem = await asyncio.to_thread(self._fit, media, fitted, limit)
        facts = FileFacts(
            size=size,
            limit=limit,
            fitted_size=fitted.stat().st_size if problem is None and fitted.exists() else None,
            fit_problem=problem,
            links_configured=self.links is not None,
        )
        decision = decide(facts)
        if isinstance(decision, UseOriginal):
            return Upload(media)
        if isinstance(decision, UseFitted):
            return Upload(fitted, note=decision.note, temporary=True)
        if isinstance(decision, UseLink) and self.links is not None:
            url, expires = self.links.url_for(job.id, video_filename(job))
            thumbnail = media.with_name(thumbnail_filename(job))
            async with self._reencode_slots:
                await asyncio.to_thread(self._thumbnail, media, thumbnail)
            return Link(url=url, expires_at=expires, thumbnail=thumbnail, size=size, limit=limit)
        assert isinstance(decision, Undeliverable)
        return decision


def cpu_slots() -> int:
    """CPU-heavy media work at once: the cores this process may use, less one for the event loop."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)
