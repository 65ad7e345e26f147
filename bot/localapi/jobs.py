"""The renderer's jobs and their timeline.

A job's status is derived from the clock on every read rather than driven by timers: it is
``queued`` for ``queue_seconds``, then ``in_progress`` with rising progress, and ``completed`` once
``generation_seconds`` have passed *and* its video has actually been rendered. Rendering starts in a
worker thread when the job is created, at most two at a time.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bot.localapi.config import LocalRendererConfig
from bot.localapi.protocol import VideoStatus
from bot.localapi.rendering import render_assets

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
    first_frame: bytes | None
    blocked: bool
    directory: Path
    rendered: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once rendering has finished (or was never needed)."""
    rendered_at: float | None = None
    render_error: str | None = None

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


def expired(state: JobState, config: LocalRendererConfig, now: float) -> bool:
    return state.completed_at is not None and now >= state.completed_at + config.asset_ttl_seconds


def resource(job: Job, config: LocalRendererConfig, now: float) -> dict[str, Any]:
    """The job as a Videos API ``VideoResource``."""
    state = state_at(job, config, now)
    completed_at = expires_at = None
    if state.completed_at is not None:
        completed_at = int(state.completed_at)
        expires_at = int(state.completed_at + config.asset_ttl_seconds)
    return {
        "id": job.id,
        "object": "video",
        "model": job.model,
        "status": state.status,
        "progress": state.progress,
        "created_at": int(job.created_at),
        "completed_at": completed_at,
        "expires_at": expires_at,
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

    async def close(self) -> None:
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

    async def delete(self, job: Job) -> None:
        del self._jobs[job.id]
        await asyncio.to_thread(shutil.rmtree, job.directory, ignore_errors=True)

    def start(
        self,
        *,
        model: str,
        prompt: str,
        size: str,
        seconds: str,
        first_frame: bytes | None,
        remixed_from: str | None,
    ) -> Job:
        assert self._data_dir is not None, "the renderer is not started"
        video_id = f"video_{uuid.uuid4().hex}"
        prompt_folded = prompt.casefold()
        job = Job(
            id=video_id,
            model=model,
            prompt=prompt,
            size=size,
            seconds=seconds,
            created_at=self.config.clock(),
            remixed_from_video_id=remixed_from,
            first_frame=first_frame,
            blocked=any(word.casefold() in prompt_folded for word in self.config.blocked_words),
            directory=self._data_dir / video_id,
        )
        self._jobs[video_id] = job
        task = asyncio.create_task(self._run(job), name=f"local-render-{video_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

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
            seconds=float(job.seconds),
            fps=self.config.fps,
            first_frame=job.first_frame,
            noise=self.config.noise,
            target_bitrate=self.config.target_bitrate,
        )
        try:
            await asyncio.get_running_loop().run_in_executor(self._render_pool, render)
        except Exception as exc:
            log.exception("Rendering %s failed", job.id)
            job.render_error = f"Rendering failed: {exc}"
        else:
            job.rendered_at = self.config.clock()
        finally:
            # Only the render needed the reference image; don't hold megabytes per job after it.
            job.first_frame = None
            job.rendered.set()
