"""The renderer's jobs and their timeline.

A job's status is derived from the clock on every read rather than driven by timers: it is
``queued`` for ``queue_seconds``, then ``in_progress`` with rising progress, and ``completed`` once
``generation_seconds`` have passed *and* its video has actually been rendered. Rendering starts in a
worker thread when the job is created, at most two at a time.

The store keeps to the config's limits: so many jobs, so many of them active, so many bytes of files.
A periodic cleanup deletes the files of expired jobs and forgets finished jobs past their retention,
so a renderer left running (and reachable by others) does not fill its memory or its disk.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bot.localapi.config import LocalRendererConfig
from bot.localapi.protocol import ApiError, VideoStatus
from bot.localapi.rendering import REFERENCE_FILENAME, SOURCE_FILENAME, Operation, render_assets

log = logging.getLogger(__name__)

_MAX_CONCURRENT_RENDERS: Final = 2


@dataclass
class Job:
    id: str
    model: str
    prompt: str
    size: str
    seconds: str
    created_at: float
    remixed_from_video_id: str | None
    blocked: bool
    directory: Path
    has_reference: bool = False
    """A reference image waits in ``directory`` for the render (kept on disk, not in memory)."""
    operation: Operation = "create"
    """How the video is made: a new render, an extension of a source or an edit of one."""
    source_seconds: float = 0.0
    """For an extension: the length of the source, which the new segment follows."""
    rendered: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once rendering has finished (or was never needed)."""
    rendered_at: float | None = None
    render_error: str | None = None
    stored_bytes: int = 0
    """Bytes of this job's files on disk, as counted against ``max_stored_bytes``."""
    files_deleted_at: float | None = None
    """When cleanup or the storage limit deleted this job's files (its assets are then gone)."""

    @property
    def dimensions(self) -> tuple[int, int]:
        width, height = self.size.split("x")
        return int(width), int(height)


# --------------------------------------------------------------------------- timeline


@dataclass(frozen=True)
class JobState:
    status: VideoStatus
    progress: int
    completed_at: float | None = None
    error: dict[str, str] | None = None

    @property
    def settled(self) -> bool:
        return self.status in ("completed", "failed")


def state_at(job: Job, config: LocalRendererConfig, now: float) -> JobState:
    elapsed = now - job.created_at
    if elapsed < config.queue_seconds:
        return JobState("queued", 0)
    # Moderation "runs" as the job leaves the queue.
    if job.blocked:
        error = {
            "code": "moderation_blocked",
            "message": "Your request was blocked by our moderation system.",
        }
        return JobState("failed", 0, error=error)
    if job.render_error is not None:
        return JobState("failed", 0, error={"code": "render_failed", "message": job.render_error})
    generated_at = job.created_at + config.generation_seconds
    if job.rendered_at is not None and now >= generated_at:
        return JobState("completed", 100, completed_at=max(generated_at, job.rendered_at))
    working_span = config.generation_seconds - config.queue_seconds
    fraction = (elapsed - config.queue_seconds) / working_span if working_span > 0 else 1.0
    # Never 0 (that reads as "not started") nor 100 (that reads as "done") while in progress.
    return JobState("in_progress", min(99, max(1, int(fraction * 100))))


def expires_at(job: Job, state: JobState, config: LocalRendererConfig) -> float | None:
    """When the job's downloads stop working: its TTL, or earlier if its files had to be deleted."""
    if state.completed_at is None:
        return None
    ttl_end = state.completed_at + config.asset_ttl_seconds
    return ttl_end if job.files_deleted_at is None else min(ttl_end, job.files_deleted_at)


def expired(job: Job, state: JobState, config: LocalRendererConfig, now: float) -> bool:
    end = expires_at(job, state, config)
    return job.files_deleted_at is not None or (end is not None and now >= end)


def resource(job: Job, config: LocalRendererConfig, now: float) -> dict[str, Any]:
    """The job as a Videos API ``VideoResource``."""
    state = state_at(job, config, now)
    completed_at = expires = None
    if state.completed_at is not None:
        completed_at = int(state.completed_at)
        expires = int(expires_at(job, state, config) or 0)
    return {
        "id": job.id,
        "object": "video",
        "model": job.model,
        "status": state.status,
        "progress": state.progress,
        "created_at": int(job.created_at),
        "completed_at": completed_at,
        "expires_at": expires,
        "prompt": job.prompt,
        "size": job.size,
        "seconds": job.seconds,
        "remixed_from_video_id": job.remixed_from_video_id,
        "error": state.error,
    }


# --------------------------------------------------------------------------- store


class JobStore:
    """The jobs in creation order, their files on disk and the renders producing them.

    ``on_rendered`` runs after each job's render (or right away for a job with nothing to render).
    """

    def __init__(
        self,
        config: LocalRendererConfig,
        on_rendered: Callable[[Job], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self._on_rendered = on_rendered
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._cleanup_task: asyncio.Task[None] | None = None
        self._render_pool: ThreadPoolExecutor | None = None
        self._temporary_dir: tempfile.TemporaryDirectory[str] | None = None
        self._data_dir: Path | None = None

    def open(self) -> None:
        if self.config.data_dir is None:
            self._temporary_dir = tempfile.TemporaryDirectory(prefix="videobot-local-api-")
            self._data_dir = Path(self._temporary_dir.name)
        else:
            self._data_dir = self.config.data_dir
            self._data_dir.mkdir(parents=True, exist_ok=True)
        self._render_pool = ThreadPoolExecutor(_MAX_CONCURRENT_RENDERS, thread_name_prefix="local-render")
        self._cleanup_task = asyncio.create_task(self._clean_periodically(), name="local-api-cleanup")

    async def close(self) -> None:
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            await asyncio.gather(self._cleanup_task, return_exceptions=True)
            self._cleanup_task = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._render_pool is not None:
            # Renders already running cannot be interrupted; wait for them so that no thread is
            # still writing into the data directory when it is removed.
            await asyncio.to_thread(self._render_pool.shutdown, wait=True, cancel_futures=True)
            self._render_pool = None
        if self._temporary_dir is not None:
            await asyncio.to_thread(self._temporary_dir.cleanup)
            self._temporary_dir = None

    def get(self, video_id: str) -> Job | None:
        return self._jobs.get(video_id)

    def all(self) -> list[Job]:
        """Every job, oldest first."""
        return list(self._jobs.values())

    @property
    def stored_bytes(self) -> int:
        """Bytes of job files on disk, as counted against ``max_stored_bytes``."""
        return sum(job.stored_bytes for job in self._jobs.values())

    def active(self, now: float) -> list[Job]:
        """The jobs still queued or in progress, oldest first."""
        return [job for job in self._jobs.values() if not state_at(job, self.config, now).settled]

    async def delete(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        await self._delete_files(job)

    async def cleanup(self) -> None:
        """Delete the files of expired and failed jobs; forget finished jobs past their retention."""
        now = self.config.clock()
        for job in self.all():
            state = state_at(job, self.config, now)
            if not state.settled:
                continue
            if now >= job.created_at + self.config.job_retention_seconds:
                await self.delete(job)
            elif job.files_deleted_at is None and (
                state.status == "failed" or expired(job, state, self.config, now)
            ):
                # A failed job's partial files (or pending reference) will never be served either.
                await self._delete_files(job)

    async def start(
        self,
        *,
        model: str,
        prompt: str,
        size: str,
        seconds: str,
        reference: bytes | None,
        remixed_from: str | None,
        operation: Operation = "create",
        source: Path | bytes | None = None,
        source_seconds: float = 0.0,
    ) -> Job:
        """Create a job and start its render, within the config's limits (429 when full).

        An extension or edit needs ``source``: the source job's video file (copied now, so that its
        expiry cannot break the render) or an uploaded video's bytes. ``seconds`` is what the
        resource reports: an extension's total length."""
        assert self._data_dir is not None, "the renderer is not started"
        now = self.config.clock()
        self._make_room_for_a_job(now)
        video_id = f"video_{uuid.uuid4().hex}"
        prompt_folded = prompt.casefold()
        job = Job(
            id=video_id,
            model=model,
            prompt=prompt,
            size=size,
            seconds=seconds,
            created_at=now,
            remixed_from_video_id=remixed_from,
            blocked=any(word.casefold() in prompt_folded for word in self.config.blocked_words),
            directory=self._data_dir / video_id,
            operation=operation,
            source_seconds=source_seconds,
        )
        # Counted from here on, so that concurrent creates cannot both take the same free space.
        self._jobs[video_id] = job
        try:
            if source is not None and not job.blocked:
                await self._store_input(job, now, source, SOURCE_FILENAME, "video", "source video")
            if reference is not None and not job.blocked:
                await self._store_input(
                    job, now, reference, REFERENCE_FILENAME, "input_reference", "reference image"
                )
                job.has_reference = True
        except BaseException:
            self._jobs.pop(video_id, None)
            await self._delete_files(job)
            raise
        self._spawn(self._run(job), f"local-render-{video_id}")
        return job

    async def _store_input(
        self, job: Job, now: float, data: Path | bytes, filename: str, param: str, what: str
    ) -> None:
        """Put a render input in the job's directory, counted against the storage limit.

        Uploaded bytes are counted before they are written; another job's file is copied first, as
        making room may delete that job's files."""
        path = job.directory / filename
        if isinstance(data, bytes):
            size = len(data)
        else:
            try:
                await asyncio.to_thread(_write_input, path, data)
            except FileNotFoundError:
                raise ApiError(
                    400,
                    f"The source video's files are gone (expired or deleted); {what} unavailable.",
                    param=param,
                    code="video_expired",
                ) from None
            size = (await asyncio.to_thread(path.stat)).st_size
        job.stored_bytes += size
        if job.stored_bytes > self.config.max_stored_bytes:
            raise ApiError(
                400,
                f"The {what} ({size} bytes) is larger than the local renderer's storage limit "
                f"(max_stored_bytes, {self.config.max_stored_bytes} bytes).",
                param=param,
            )
        if not await self._make_room(now, keep=job):
            raise ApiError(
                429,
                "The local renderer's storage is full of files of videos still in progress "
                "(max_stored_bytes); try again once some have finished.",
                error_type="requests",
                code="storage_full",
                retry_after=max(1, math.ceil(self.config.generation_seconds)),
            )
        if isinstance(data, bytes):
            # On disk rather than in memory: queued jobs can be many, inputs megabytes each.
            await asyncio.to_thread(_write_input, path, data)

    def _make_room_for_a_job(self, now: float) -> None:
        active = self.active(now)
        if len(active) >= self.config.max_active_jobs:
            # The oldest active job is the first likely to finish and free a place.
            wait = active[0].created_at + self.config.generation_seconds - now
            raise ApiError(
                429,
                f"The local renderer already has {len(active)} videos queued or in progress, its limit "
                "(max_active_jobs); try again once some have finished.",
                error_type="requests",
                code="too_many_active_jobs",
                retry_after=max(1, math.ceil(wait)),
            )
        excess = len(self._jobs) - self.config.max_jobs + 1
        if excess <= 0:
            return
        active_ids = {job.id for job in active}
        finished = [job for job in self._jobs.values() if job.id not in active_ids]
        for job in finished[:excess]:
            # Forgotten at once so that the count holds before the create goes on; the files go
            # in the background.
            del self._jobs[job.id]
            self._spawn(self._delete_files(job), f"local-api-forget-{job.id}")

    async def _make_room(self, now: float, *, keep: Job) -> bool:
        """Delete the oldest finished jobs' files until ``keep``'s (already counted) fit."""
        limit = self.config.max_stored_bytes
        if keep.stored_bytes > limit:
            return False
        for job in self.all():
            if self.stored_bytes <= limit:
                break
            if job is keep or not job.stored_bytes or not state_at(job, self.config, now).settled:
                continue
            log.info("Storage limit reached: deleting the files of %s", job.id)
            await self._delete_files(job)
        return self.stored_bytes <= limit

    async def _delete_files(self, job: Job) -> None:
        job.files_deleted_at = self.config.clock()
        job.stored_bytes = 0
        await asyncio.to_thread(shutil.rmtree, job.directory, ignore_errors=True)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _clean_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.cleanup_interval_seconds)
            try:
                await self.cleanup()
            except Exception:
                log.exception("Local renderer cleanup failed; trying again next time")

    async def _run(self, job: Job) -> None:
        if job.blocked:
            job.rendered.set()
        else:
            await self._render(job)
        if self._on_rendered is not None:
            await self._on_rendered(job)

    async def _render(self, job: Job) -> None:
        assert self._render_pool is not None
        width, height = job.dimensions
        render = functools.partial(
            render_assets,
            job.directory,
            prompt=job.prompt,
            width=width,
            height=height,
            seconds=float(job.seconds) - job.source_seconds,
            fps=self.config.fps,
            use_reference=job.has_reference,
            noise=self.config.noise,
            target_bitrate=self.config.target_bitrate,
            operation=job.operation,
            source_seconds=job.source_seconds,
        )
        try:
            size = await asyncio.get_running_loop().run_in_executor(self._render_pool, render)
        except Exception as exc:
            log.exception("Rendering %s failed", job.id)
            job.render_error = f"Rendering failed: {exc}"
            await self._delete_files(job)
        else:
            job.stored_bytes = size
            now = self.config.clock()
            if await self._make_room(now, keep=job):
                job.rendered_at = now
            else:
                job.render_error = (
                    f"The rendered video ({size} bytes) does not fit in the local renderer's storage "
                    f"limit (max_stored_bytes, {self.config.max_stored_bytes} bytes)."
                )
                await self._delete_files(job)
        finally:
            job.has_reference = False
            job.rendered.set()


def _write_input(path: Path, data: Path | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        shutil.copyfile(data, path)
