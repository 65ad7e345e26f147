"""Retention: what the bot stops keeping, and when. Run at start and then hourly, beside the tracker.

- Interaction tokens (credentials) are cleared from every job, finished or not, once expired:
  the presenter uses channel routes past a token's 15 minutes anyway.
- Files of finished jobs (``DATA_DIR/media``: the MP4, re-encodes, link thumbnails; and
  ``DATA_DIR/references``: starting images) are deleted ``media_days`` after the job finished. A
  reference image stays while any unfinished (or recently finished) job uses it; Again on a job
  whose image is gone says so.
- Job details: ``job_details_days`` after a job finished, its prompt is replaced by
  ``PROMPT_REMOVED`` and its error text dropped (in the audit record too). The row stays, with
  its cost, status and times: credits, usage reports and history count rows, and a remix keeps
  its lineage.
- Audit records and grants are deleted ``audit_days`` after they were written. Grants only count
  in the period they were given in (a month at most), so any retention above a month leaves the
  credits arithmetic unchanged (``Settings`` refuses less).

A retention of 0 days keeps that kind of data forever. Files and rows are matched by age on the
store's clock; a file also has to be older than the cut-off on disk, so a file written while a
pass runs (for a job the pass did not see) is never taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.services.ports import RetentionRepository

log = logging.getLogger(__name__)

DAY_SECONDS = 86400.0
RETENTION_INTERVAL_SECONDS = 3600.0
PROMPT_REMOVED = "(prompt deleted: this bot keeps job details for a limited time)"
DIR_MODE = 0o700
MEDIA_DIR = "media"
REFERENCES_DIR = "references"
# DATA_DIR/media files carry their job's id: job-12.mp4, job-12.fit-8388608.mp4, video-12.thumb.webp.
_MEDIA_NAME = re.compile(r"^(?:job|video)-(\d+)[.-]")


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep each kind of data (0: forever). The defaults are ``Settings``'."""

    media_days: float = 7.0
    job_details_days: float = 90.0
    audit_days: float = 365.0


@dataclass(frozen=True)
class RetentionReport:
    tokens_cleared: int = 0
    job_details_pruned: int = 0
    audit_records_deleted: int = 0
    grants_deleted: int = 0
    media_files_deleted: int = 0
    reference_images_deleted: int = 0
    #: stored copies in the database (shared by every process), deleted with the files
    stored_references_deleted: int = 0

    @property
    def anything(self) -> bool:
        return any(vars(self).values())


def make_private_dir(path: Path) -> None:
    """``path`` (created if missing) and the folders directly in it, owner-only (``DIR_MODE``).

    ``mkdir``'s mode is masked by the umask (which only removes bits); the chmod makes it exact,
    and narrows folders an older version created 0755."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for folder in (path, *(child for child in path.iterdir() if child.is_dir() and not child.is_symlink())):
        try:
            if folder.stat().st_mode & 0o777 != DIR_MODE:
                os.chmod(folder, DIR_MODE)
        except OSError as exc:  # not ours (a volume owned by another user): say so, keep running
            log.warning("could not make %s owner-only: %s", folder, exc.strerror)


def prune_files(
    folder: Path, cutoff: float, keep: Callable[[str], bool], pattern: re.Pattern[str] | None = None
) -> int:
    """Delete the files in ``folder`` (not below it) modified before ``cutoff`` that ``keep``
    (given the file name) does not claim. With ``pattern``, only names matching it are candidates.
    Returns how many were deleted."""
    if not folder.is_dir():
        return 0
    deleted = 0
    with os.scandir(folder) as entries:
        found = list(entries)
    for entry in found:
        if not entry.is_file(follow_symlinks=False):
            continue
        if pattern is not None and not pattern.match(entry.name):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff or keep(entry.name):
                continue
            os.unlink(entry.path)
            deleted += 1
        except FileNotFoundError:
            continue  # deleted meanwhile (a re-encode cleaned up after itself)
        except OSError as exc:
            log.warning("retention: could not delete %s: %s", entry.path, exc.strerror)
    return deleted


class RetentionService:
    def __init__(
        self,
        repository: RetentionRepository,
        data_dir: Path,
        policy: RetentionPolicy | None = None,
        *,
        interval_seconds: float = RETENTION_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repository = repository
        self.data_dir = data_dir
        self.policy = policy or RetentionPolicy()
        self.interval_seconds = interval_seconds
        self._clock = clock
        self.passes = 0

    async def run_once(self) -> RetentionReport:
        """One pass over everything (each part commits on its own; a later pass finishes the rest)."""
        now = self._clock()
        policy = self.policy
        tokens = await self.repository.clear_expired_tokens(now)
        details = audit = grants = media = references = stored = 0
        if policy.job_details_days > 0:
            details = await self.repository.prune_job_details(
                now - policy.job_details_days * DAY_SECONDS, PROMPT_REMOVED
            )
        if policy.audit_days > 0:
            audit, grants = await self.repository.prune_records(now - policy.audit_days * DAY_SECONDS)
        if policy.media_days > 0:
            media, references, stored = await self._prune_files(now - policy.media_days * DAY_SECONDS)
        self.passes += 1
        report = RetentionReport(tokens, details, audit, grants, media, references, stored)
        if report.anything:
            log.info(
                "retention: %d token(s) cleared, %d job(s) details removed, %d audit record(s) and "
                "%d grant(s) deleted, %d media file(s) and %d reference image(s) deleted",
                tokens,
                details,
                audit,
                grants,
                media,
                references,
            )
        return report

    async def _prune_files(self, cutoff: float) -> tuple[int, int, int]:
        job_ids, reference_paths = await self.repository.jobs_keeping_files(cutoff)
        kept_references = {Path(path).name for path in reference_paths}

        def keep_media(name: str) -> bool:
            match = _MEDIA_NAME.match(name)
            return match is not None and int(match.group(1)) in job_ids

        def prune() -> tuple[int, int]:
            media = prune_files(self.data_dir / MEDIA_DIR, cutoff, keep_media, _MEDIA_NAME)
            references = prune_files(
                self.data_dir / REFERENCES_DIR, cutoff, lambda name: name in kept_references
            )
            return media, references

        media, references = await asyncio.to_thread(prune)
        stored = await self.repository.prune_reference_images(cutoff, kept_references)
        return media, references, stored

    async def run_forever(self) -> None:
        """A pass now, then one every ``interval_seconds``; a failed pass is logged and retried at the
        next interval (it never stops the bot)."""
        with contextlib.suppress(OSError):
            await asyncio.to_thread(make_private_dir, self.data_dir)
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention pass failed; trying again in %.0fs", self.interval_seconds)
            await asyncio.sleep(self.interval_seconds)
