"""The job tracker: ONE task that moves every job in flight forward.

Each sweep it submits pending jobs, refreshes the status of the jobs at the provider whose check is
due in a batch (one ``GET /videos`` page covers many jobs; single ``GET /videos/{id}`` only for the
ones not on it), hands changes to the presenter, and starts downloads of finished videos.

When a job is checked depends on how near it is to its expected end (its progress, else the model's
typical generation time): near it, at the provider's suggested interval (``openai-poll-after-ms``),
so a finished video is noticed within about that long; far from it, rarely (``far_poll_interval``).
With webhooks a completion is acted on the moment it arrives and polling is a slow safety net.

Deliveries are a pipeline: downloads (streamed to disk) and uploads each have their own generous
bound, so a burst of completions is downloaded and posted as fast as the provider budget and
Discord allow; re-encodes are bounded by CPU cores in the delivery planner.

It resumes every unfinished job from the store when it starts, and one bad job never stops the
loop: each step has its own ``try/except`` that logs and moves on.

Nothing here imports discord.py: the presenter protocol is how results reach members.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from tenacity import RetryCallState, Retrying
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential

from bot.domain.errors import UndeliverableError
from bot.domain.jobs import WITH_PROVIDER, Job, JobStatus, QueuePlace, submission_queue
from bot.domain.messages import (
    REMIX_SOURCE_GONE,
    REMIX_SOURCE_GONE_CODE,
    explain_code,
    explain_provider_error,
    remix_source_gone,
)
from bot.domain.provider import Video
from bot.domain.provider_errors import (
    BadRequest,
    DownloadTooLarge,
    NotFound,
    SubmitUncertain,
    UnsupportedEndpoint,
    VideoAPIError,
)
from bot.services import lineage
from bot.services.failpoints import FailPoint, reached
from bot.services.lifecycle import JobLifecycle
from bot.services.ports import DiskSpace, JobPresenter, JobRepository, QueueView, Receipt, VideoProvider
from bot.services.waiting import wait_event

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = 100  # the spec's maximum
# The status list starts this many videos above the newest one it looks for (see ``_list_start``).
LIST_START_SLACK = 8
# Status lookups of single videos (the ones a list did not show) sent side by side.
SINGLE_LOOKUPS_AT_ONCE = 8
MAX_STEP_FAILURES = 5
# Far from its expected end a job's status is checked at most this far apart (progress stays fresh
# on its card; near the end it is checked at the provider's suggested interval).
FAR_POLL_SECONDS = 15.0
# A job is "near its end" from this many near-end intervals (at least NEAR_END_MIN_SECONDS) before
# its expected end, and until it is done.
NEAR_END_INTERVALS = 3
NEAR_END_MIN_SECONDS = 5.0
# While a job's pace is unknown, its next check is at most this share of its time at the provider.
BACKOFF_FACTOR = 0.5
# Sweeps woken early (a step finished, a new job) are this far apart per job in flight, at most
# the maximum: see ``JobTracker._pause``.
SWEEP_GAP_PER_JOB = 0.00025
SWEEP_GAP_MAX_SECONDS = 0.25
# A job waiting for the provider budget sees its place in line change at most this often.
QUEUE_UPDATE_SECONDS = 30.0
# The provider deadline applies from submission; a job not at the provider also gets this long
# (the queue before submission, the download and the upload): see ``Job.deadline_at``.
DEADLINE_GRACE_SECONDS = 600.0
LOST_CREATE_SEARCH_DEPTH = 50  # recent videos searched for a create whose answer was lost
# A failed step is retried after a growing pause, not on the next sweep (which could be 50 ms
# away): about 2 s, doubling, at most 5 min. Half of each pause is fixed and half random ("equal
# jitter"): jobs that failed together spread out, and each pause is at least as long as the last.
STEP_BACKOFF_BASE_SECONDS = 2.0
STEP_BACKOFF_MAX_SECONDS = 300.0
# Free space a download must leave on the disk of DATA_DIR (the database, logs and re-encodes
# need room too).
FREE_SPACE_MARGIN_BYTES = 64 * 1024 * 1024
MIB = 1024 * 1024


class ReferenceMissing(Exception):
    """The fitted reference image of a job is gone from disk (deleted, or a different DATA_DIR)."""


class StepFailed(Exception):
    """A step could not run now, for a reason that may pass (it is retried with backoff). When the
    retries run out, the job fails with this code and member-facing message."""

    def __init__(self, code: str, user_message: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.user_message = user_message


class NotEnoughSpace(StepFailed):
    def __init__(self, detail: str) -> None:
        super().__init__(
            "disk_full",
            "The bot's disk was too full to save this video, so it gave up. Nothing was charged; "
            "please try again later.",
            detail,
        )


def step_backoff(base: float = STEP_BACKOFF_BASE_SECONDS, cap: float = STEP_BACKOFF_MAX_SECONDS) -> wait_base:
    """The pause before a failed step's next try (see ``STEP_BACKOFF_BASE_SECONDS``)."""
    return wait_exponential(multiplier=base / 2, max=cap / 2) + wait_random_exponential(
        multiplier=base / 2, max=cap / 2
    )


class JobTracker:
    def __init__(
        self,
        store: JobRepository,
        api: VideoProvider,
        presenter: JobPresenter,
        data_dir: Path,
        *,
        lifecycle: JobLifecycle,
        wake_event: asyncio.Event | None = None,
        poll_interval: float = 5.0,
        min_poll_interval: float = 0.2,
        far_poll_interval: float = FAR_POLL_SECONDS,
        expected_seconds: Callable[[Job], float | None] | None = None,
        submission_rate: Callable[[], float | None] | None = None,
        push_mode: bool = False,
        safety_interval: float = 60.0,
        max_concurrent_submissions: int = 4,
        max_concurrent_deliveries: int = 32,
        deadline_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
        backoff: wait_base | None = None,
        disk_usage: Callable[[Path], DiskSpace] = shutil.disk_usage,
        free_space_margin: int = FREE_SPACE_MARGIN_BYTES,
        set_aside: Callable[[Path], None] | None = None,
        housekeeping: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    ) -> None:
        self.store = store
        self.lifecycle = lifecycle
        self.api = api
        self.presenter = presenter
        self.data_dir = data_dir
        # Near a job's end: the provider's suggestion, else ``poll_interval``. Far from it: at most
        # ``far_poll_interval`` apart. Without ``expected_seconds`` (how long a job's model usually
        # takes), a job is "near its end" once it is at the provider.
        self.poll_interval = poll_interval
        self.min_poll_interval = min_poll_interval
        self.far_poll_interval = max(far_poll_interval, poll_interval)
        self._expected_seconds = expected_seconds
        # With webhooks, status polling is only a safety sweep for lost events.
        self.push_mode = push_mode
        self.safety_interval = safety_interval
        self.idle_interval = max(poll_interval, 30.0)
        self.deadline_seconds = deadline_seconds
        self._clock = clock
        self._submit_slots = asyncio.Semaphore(max_concurrent_submissions)
        self._submit_concurrency = max_concurrent_submissions
        # The provider queue: places computed each sweep from the store's order; submissions per
        # second lately (for the estimate); what each waiting job's card was last told, and when.
        self._submission_rate = submission_rate
        self._queue: dict[int, QueuePlace] = {}
        self._queue_shown: dict[int, tuple[int, float]] = {}
        self._queue_view = presenter if isinstance(presenter, QueueView) else None
        # The delivery pipeline's stages, bounded separately: a slow upload never holds a download
        # back, and the other way round.
        self._download_slots = asyncio.Semaphore(max_concurrent_deliveries)
        self._upload_slots = asyncio.Semaphore(max_concurrent_deliveries)
        # Shared with the job service (a new job or a cancel wakes the loop).
        self._wake = wake_event if wake_event is not None else asyncio.Event()
        # Set with ``_wake`` by a webhook event: acted on without waiting out the sweep gap.
        self._urgent = asyncio.Event()
        self._swept_jobs = 0  # jobs the last sweep read (the gap before the next grows with them)
        self._busy: set[int] = set()  # job ids with a submit or delivery task running
        self._pushed: dict[str, str] = {}  # provider video id → webhook event type
        # Job id → clock time its status is checked next (absent: at the next sweep).
        self._next_check: dict[int, float] = {}
        self._refreshed: dict[int, Job] = {}  # during a status check: the jobs it changed
        # Provider video ids of the jobs at the provider, oldest submission first (as of the last
        # sweep): where a status list should start.
        self._provider_order: list[str] = []
        # Job id → (clock time, progress) when a check first found it generating: its pace.
        self._first_progress: dict[int, tuple[float, int]] = {}
        self._upload_attempted: set[int] = set()  # jobs this process has tried to post
        self._step_failures: dict[int, int] = {}
        # Job id → clock time before which its steps are not retried (after a failure).
        self._not_before: dict[int, float] = {}
        self._backoff = backoff if backoff is not None else step_backoff()
        self._disk_usage = disk_usage
        self.free_space_margin = free_space_margin
        # Called (in a worker thread) with a video's file once it is posted: it is kept on disk
        # but not needed in memory (the composition root frees its page cache).
        self._set_aside = set_aside
        # Periodic work that runs while the tracker does (retention), started and stopped with it.
        self._housekeeping = tuple(housekeeping)
        self._housekeepers: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._safety_check: asyncio.Task[None] | None = None  # with webhooks: the status check
        self.sweeps = 0
        self.last_sweep_at: float | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self.run(), name="job-tracker")
            self._housekeepers = [
                asyncio.create_task(work(), name=f"housekeeping-{n}")
                for n, work in enumerate(self._housekeeping)
            ]

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        for housekeeper in self._housekeepers:
            housekeeper.cancel()
        await asyncio.gather(*self._housekeepers, return_exceptions=True)
        self._housekeepers = []
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.lifecycle.close()

    @property
    def steps_running(self) -> int:
        """Submit, delivery and status steps in flight now."""
        return len(self._tasks)

    def queue_place(self, job_id: int) -> QueuePlace | None:
        """Where a job not yet sent waits in the provider queue (as of the last sweep)."""
        return self._queue.get(job_id)

    def retry_at(self, job_id: int) -> float | None:
        """When a job whose step failed is tried again (clock time), if it is backing off."""
        return self._not_before.get(job_id)

    @property
    def alive(self) -> bool:
        return self._runner is not None and not self._runner.done()

    def wake(self) -> None:
        """Sweep now (a new job, a cancel)."""
        self._wake.set()

    def notify_video_event(self, video_id: str, event_type: str = "video.completed") -> None:
        """The provider told us (a verified webhook) that this video finished: act on it now."""
        self._pushed[video_id] = event_type
        self._urgent.set()
        self._wake.set()

    async def run(self) -> None:
        announced = False
        while True:
            # Clear before sweeping: a wake() that arrives during the sweep must not be lost.
            self._wake.clear()
            started = time.monotonic()
            try:
                if not announced:
                    unfinished = len(await self.store.active_jobs())
                    log.info("job tracker running; resuming %d unfinished job(s)", unfinished)
                    announced = True
                delay = await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tracker sweep failed; retrying after %.1fs", self.poll_interval)
                delay = self.poll_interval
            await self._pause(delay, started)

    async def _pause(self, delay: float, started: float) -> None:
        """Wait ``delay`` seconds, or less when woken; but sweep again no sooner than the sweep gap
        after the last one started, except for a webhook event.

        Every finished step wakes the tracker (its job may need the next one), and with a thousand
        jobs in flight that is twenty wakes a second, each a sweep that reads every job: most of the
        bot's CPU went to sweeps that found nothing to do. The gap grows with the jobs in flight
        (``SWEEP_GAP_PER_JOB``, at most ``SWEEP_GAP_MAX_SECONDS``), so sweeping costs a few per cent
        of one core at any load; a dozen jobs are swept again within milliseconds. It is real time,
        whatever clock the jobs are timed with."""
        await wait_event(self._wake, delay)
        if not self._urgent.is_set():
            gap = min(SWEEP_GAP_MAX_SECONDS, SWEEP_GAP_PER_JOB * self._swept_jobs)
            rest = gap - (time.monotonic() - started)
            if rest > 0:
                await wait_event(self._urgent, rest)
        self._urgent.clear()

    async def run_until_idle(self) -> None:
        """Burst mode: sweep until no job is active (for ``videobot generate`` and tests).
        Callers bound it with ``asyncio.timeout``."""
        while True:
            self._wake.clear()
            delay = await self.sweep()
            if not await self.store.active_jobs() and not self._tasks:
                return
            await wait_event(self._wake, delay)

    def _spawn(self, job_id: int, coro: Coroutine[Any, Any, None], *, exclusive: bool = True) -> None:
        """Run one step of a job in the background. ``exclusive`` steps (submit, deliver) never run
        twice at once for the same job: that is what keeps delivery exactly-once."""
        if exclusive:
            if job_id in self._busy:
                coro.close()
                return
            self._busy.add(job_id)
        self._track(coro, f"job-{job_id}", busy=job_id if exclusive else None)

    def _track(
        self, coro: Coroutine[Any, Any, None], name: str, *, busy: int | None = None
    ) -> asyncio.Task[None]:
        """A background step: stopped with the tracker, its failure logged, a sweep after it."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if busy is not None:
                self._busy.discard(busy)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s task failed", name, exc_info=t.exception())
            self.wake()  # whatever it changed may need the next step now

        task.add_done_callback(done)
        return task

    # -- one sweep -----------------------------------------------------------------------------

    async def sweep(self) -> float:
        """Move every active job one step. Returns how long to wait before the next sweep."""
        self.sweeps += 1
        now = self.last_sweep_at = self._clock()
        active = await self.store.active_jobs()
        self._swept_jobs = len(active)
        # Backoffs that ended, or of jobs that ended some other way (a cancel), are dropped.
        ids = {job.id for job in active}
        self._not_before = {k: t for k, t in self._not_before.items() if k in ids and t > now}
        await self._update_queue(active, now)
        jobs = [job for job in active if job.id not in self._busy]
        jobs = [job for job in jobs if not await self._past_deadline(job, now)]
        # A job whose step failed waits out its backoff (its deadline still applies, above).
        jobs = [job for job in jobs if job.id not in self._not_before]
        at_provider: list[Job] = []
        for job in jobs:
            if job.status in (JobStatus.PENDING, JobStatus.SUBMITTING):
                self._spawn(job.id, self._submit(job))
            elif job.status in (JobStatus.DOWNLOADING, JobStatus.UPLOADING):
                self._spawn(job.id, self._deliver(job))
            elif job.status in WITH_PROVIDER:
                at_provider.append(job)
        pushed, self._pushed = self._pushed, {}
        # An event for a job that is backing off waits for its retry instead of being dropped.
        for job in active:
            video_id = job.provider_video_id
            if job.id in self._not_before and video_id is not None and video_id in pushed:
                self._pushed[video_id] = pushed.pop(video_id)
        self._provider_order = [
            job.provider_video_id
            for job in sorted(at_provider, key=lambda j: (j.submitted_at or j.created_at, j.id))
            if job.provider_video_id
        ]
        if pushed:
            at_provider = await self._apply_pushed(at_provider, pushed)
        self._next_check = {k: t for k, t in self._next_check.items() if k in ids}
        self._first_progress = {k: v for k, v in self._first_progress.items() if k in ids}
        if not at_provider:
            return self._until_retry(now, self.idle_interval)
        due = self._due(at_provider, now)
        if due and self.push_mode:
            # The safety check runs beside the sweeps: a list waiting for the provider budget must
            # not hold up the webhook events that arrive meanwhile (with the budget spent on a
            # backlog of creates, it held deliveries up by seconds).
            for job in due:
                self._next_check[job.id] = now + self._check_interval(job, now)
            if self._safety_check is None or self._safety_check.done():
                self._safety_check = self._track(self._check(due, now), "safety-check")
        elif due:
            await self._check(due, now)
        next_check = min(self._next_check.get(job.id, now) for job in at_provider)
        return self._until_retry(now, max(self.min_poll_interval, next_check - now))

    async def _check(self, due: list[Job], now: float) -> None:
        """Ask the provider about ``due`` and schedule each one's next check."""
        self._refreshed = {}
        try:
            await self._refresh(due)
            # Scheduled from what the check found (progress), not from the state before it, and
            # from when the check was sent: a slow sweep doesn't stretch the interval.
            for job in due:
                latest = self._refreshed.get(job.id, job)
                self._next_check[job.id] = now + self._check_interval(latest, now)
        finally:
            self._refreshed = {}

    def _until_retry(self, now: float, delay: float) -> float:
        """``delay``, shortened so the sweep after the earliest backoff ends retries that job."""
        if not self._not_before:
            return delay
        return min(delay, max(self.min_poll_interval, min(self._not_before.values()) - now))

    # -- the provider queue -----------------------------------------------------------------------

    async def _update_queue(self, active: list[Job], now: float) -> None:
        """Place every job not yet sent in line (the store's order: by creation), and tell the
        members whose jobs wait behind the ones being sent: when first seen waiting, then when the
        place changed, at most every ``QUEUE_UPDATE_SECONDS``."""
        queue = submission_queue(active)
        rate = self._submission_rate() if self._submission_rate is not None else None
        self._queue = {
            job.id: QueuePlace(place, now + place / rate if rate else None)
            for place, job in enumerate(queue, start=1)
        }
        self._queue_shown = {k: v for k, v in self._queue_shown.items() if k in self._queue}
        if self._queue_view is None:
            return
        for job in queue[self._submit_concurrency :]:
            if job.reply_message_id is None:
                continue  # the first card is not posted yet: tell it on a later sweep
            place = self._queue[job.id]
            shown = self._queue_shown.get(job.id)
            if shown is not None and (shown[0] == place.place or now - shown[1] < QUEUE_UPDATE_SECONDS):
                continue
            self._queue_shown[job.id] = (place.place, now)
            try:
                await self._queue_view.queue_changed(job, place)
            except Exception:
                log.exception("job %s: could not show its place in line", job.id)

    # -- when to check a job's status ------------------------------------------------------------

    def _due(self, jobs: list[Job], now: float) -> list[Job]:
        """The jobs whose status is checked now: those due, plus those due within one near-end
        interval when anything is checked (they share the list page instead of a sweep of their own)."""
        if not any(self._next_check.get(job.id, now) <= now for job in jobs):
            return []
        horizon = now + self._near_interval()
        return [job for job in jobs if self._next_check.get(job.id, now) <= horizon]

    def _near_interval(self) -> float:
        """How often jobs near their end are checked: the provider's suggestion, else the setting."""
        suggested = self.api.last_poll_after
        interval = suggested if suggested is not None else self.poll_interval
        return max(self.min_poll_interval, interval)

    def expected_remaining(self, job: Job, now: float) -> float | None:
        """Seconds until the provider should finish ``job`` (negative: overdue): from its pace once
        two checks saw its progress move, else from its model's typical generation time (or, without
        one, from its progress since submission); None: unknown."""
        first = self._pace_from(job, now)
        if first is not None:
            # The pace between two checks this bot made: the provider's queue time doesn't skew
            # it, nor does a start that was first seen at a late check.
            seen_at, seen_progress = first
            return (now - seen_at) * (100 - job.progress) / (job.progress - seen_progress)
        start = job.submitted_at
        if start is None:
            return None
        expected = self._expected_seconds(job) if self._expected_seconds is not None else None
        if expected is not None:
            return start + expected - now
        if job.status is JobStatus.IN_PROGRESS and job.progress >= 3:
            return max(0.0, now - start) * (100 - job.progress) / job.progress
        return None

    def _check_interval(self, job: Job, now: float) -> float:
        """How long until ``job``'s status is checked again. With webhooks on, polling is only a
        slow safety net; otherwise near its end at the near interval, far from it rarely."""
        if self.push_mode:
            # A lost event shows only once the video should be done: the first look is half a
            # safety interval after the expected end (not at it, when every event of a busy
            # minute arrives and the budget is needed for their downloads), then every interval.
            remaining = self.expected_remaining(job, now)
            if remaining is not None and remaining > 0:
                return max(self.safety_interval, remaining + self.safety_interval / 2)
            return self.safety_interval
        if job.status is JobStatus.IN_PROGRESS:
            self._first_progress.setdefault(job.id, (now, job.progress))
        near = self._near_interval()
        remaining = self.expected_remaining(job, now)
        window = max(NEAR_END_INTERVALS * near, NEAR_END_MIN_SECONDS)
        if remaining is None or remaining <= window:
            return near
        # Far from the end: the check that starts the near window, or a progress check before it.
        interval = min(self.far_poll_interval, remaining - window)
        if self._pace_from(job, now) is None and job.submitted_at is not None:
            # Until two checks have seen its progress move, the end is only the model's typical
            # time, and a provider may well be faster: back off geometrically from the submission
            # (checks at about 1, 2, 3, 4.5, 7, 10 s, … apart) rather than trusting it at once.
            interval = min(interval, BACKOFF_FACTOR * max(0.0, now - job.submitted_at))
        return max(near, interval)

    def _pace_from(self, job: Job, now: float) -> tuple[float, int] | None:
        """The first check that saw ``job`` in progress, once a later one saw the progress move
        (its pace is known then); None before."""
        first = self._first_progress.get(job.id)
        if job.status is not JobStatus.IN_PROGRESS or first is None:
            return None
        seen_at, seen_progress = first
        return first if job.progress > seen_progress and now > seen_at else None

    async def _apply_pushed(self, jobs: list[Job], pushed: dict[str, str]) -> list[Job]:
        """Act on webhook events. A signed ``video.completed`` is enough to start the download (no
        status request); a failure is looked up once to learn the provider's reason. Returns the
        jobs still waiting at the provider."""
        waiting = []
        for job in jobs:
            event = pushed.get(job.provider_video_id or "")
            if event == "video.completed" and job.provider_video_id:
                video = Video(id=job.provider_video_id, status="completed", progress=100)
                await self._guarded(job, "apply webhook", functools.partial(self._apply, job, video))
            elif event is not None:
                await self._refresh([job])
            else:
                waiting.append(job)
        return waiting

    async def _guarded(self, job: Job, step: str, action: Callable[[], Awaitable[None]]) -> None:
        """Run a step; an error is logged and the step retried after a backoff (``step_backoff``),
        up to ``MAX_STEP_FAILURES`` times, after which the job fails (refunded) instead of looping."""
        try:
            await action()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures = self._step_failures[job.id] = self._step_failures.get(job.id, 0) + 1
            if failures < MAX_STEP_FAILURES:
                pause = self._pause_after(failures)
                self._not_before[job.id] = self._clock() + pause
                if isinstance(exc, StepFailed):  # expected, and explained: no traceback
                    log.warning(
                        "job %s: %s failed (%d): %s; retrying in %.1fs", job.id, step, failures, exc, pause
                    )
                else:
                    log.exception("job %s: %s failed (%d); retrying in %.1fs", job.id, step, failures, pause)
                return
            log.error("job %s: %s failed %d times; giving up", job.id, step, failures, exc_info=exc)
            if isinstance(exc, StepFailed):
                await self._fail(job, exc.code, exc.user_message)
                return
            await self._fail(
                job,
                "internal_error",
                "The bot ran into a problem it couldn't get past while making this video.",
            )
        else:
            # The limit is on failures in a row: a step that went through starts the count afresh.
            self._step_failures.pop(job.id, None)

    def _pause_after(self, failures: int) -> float:
        state = RetryCallState(Retrying(), None, (), {})
        state.attempt_number = failures
        return float(self._backoff(state))

    async def _past_deadline(self, job: Job, now: float) -> bool:
        """Fail (and refund) any job still unfinished past its deadline (``Job.deadline_at``: the
        one rule), whatever step it is stuck in, so no member's credits or concurrency slot stay
        blocked forever; its video is deleted at the provider."""
        if now <= job.deadline_at(self.deadline_seconds, DEADLINE_GRACE_SECONDS):
            return False
        await self._fail(
            job,
            "deadline_exceeded",
            f"This video took longer than {self.deadline_seconds / 60:.0f} minutes, so the bot gave up.",
            delete_at_provider=True,
        )
        return True

    # -- submit --------------------------------------------------------------------------------

    async def _submit(self, job: Job) -> None:
        async with self._submit_slots:
            await self._guarded(job, "submit", lambda: self._submit_once(job))

    async def _submit_once(self, job: Job) -> None:
        if job.status is JobStatus.SUBMITTING:
            # We crashed (or were stopped) with a create request in flight: find out whether the
            # provider has it before sending it again.
            adopted = await self._adopt_lost_submission(job)
            if adopted:
                return
        current = await self.lifecycle.submitting(job)
        if current is None:
            return  # cancelled meanwhile
        reached(FailPoint.BEFORE_CREATE)
        try:
            if current.kind in lineage.LINEAGE_KINDS:
                video = await lineage.send(self.api, current)
            elif current.remixed_from_video_id:
                video = await self.api.remix(current.remixed_from_video_id, current.prompt)
            else:
                reference = await self._reference_bytes(current)
                video = await self.api.create(
                    prompt=current.prompt,
                    model=current.model,
                    size=current.size,
                    seconds=current.seconds,
                    input_reference=reference,
                    input_reference_type="image/png",
                )
        except lineage.ClipMissing:
            await self._fail(
                current,
                "clip_missing",
                "The clip to edit was no longer on the bot's disk, so the edit was not sent. Try `/edit` again.",
            )
            return
        except ReferenceMissing:
            await self._fail(
                current,
                "reference_missing",
                "The starting image was no longer on the bot's disk, so the video was not sent. Try again.",
            )
            return
        except SubmitUncertain:
            # The answer to the create was lost and the request may have reached the provider:
            # look for it (as after a restart) rather than sending it twice.
            if not await self._adopt_lost_submission(current):
                await self._fail(
                    current,
                    "submit_uncertain",
                    "The provider didn't confirm the request and the bot could not find it, so it was "
                    "not sent again. Nothing was charged; please try again.",
                )
            return
        except VideoAPIError as exc:
            refused = lineage.failure(current, exc) if current.kind in lineage.LINEAGE_KINDS else None
            if refused is not None:
                await self._fail(current, *refused)
            elif current.remixed_from_video_id and remix_source_gone(exc):
                await self._fail(current, REMIX_SOURCE_GONE_CODE, REMIX_SOURCE_GONE)
            else:
                await self._fail(current, exc.code or type(exc).__name__, explain_provider_error(exc))
            return
        reached(FailPoint.AFTER_CREATE_BEFORE_STORE)
        await self._accepted(job, video)

    async def _accepted(self, job: Job, video: Video) -> None:
        """Record that the provider has ``video`` for this job (sent now, or found after a restart)."""
        updated = await self.lifecycle.accepted(job, video.id)
        if updated is not None:
            # The create's answer is its first status: the next check follows the schedule.
            now = self._clock()
            self._next_check[updated.id] = now + self._check_interval(updated, now)
            await self._apply(updated, video)

    async def _reference_bytes(self, job: Job) -> bytes | None:
        if not job.reference_image_path:
            return None
        path = Path(job.reference_image_path)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            # Made by another process (its DATA_DIR), or this one's copy is gone: the shared one.
            stored = await self.store.reference_image(path.name)
            if stored is None:
                raise ReferenceMissing(job.reference_image_path) from exc
            return stored

    async def _adopt_lost_submission(self, job: Job) -> bool:
        """The one place a create whose answer was lost is looked for: the newest videos at the
        provider that match the request and belong to no other job. True when the job was
        adopted, or failed because the provider can't be asked."""
        try:
            page = await self.api.list(limit=LOST_CREATE_SEARCH_DEPTH, order="desc")
        except UnsupportedEndpoint:
            await self._fail(
                job,
                "submit_uncertain",
                "The bot restarted while sending this request and the provider can't tell whether it "
                "arrived, so it was not sent twice. Nothing was charged; please try again.",
            )
            return True
        candidates = [video for video in page.data if matches_job(video, job)]
        owned = await self.store.known_provider_ids(video.id for video in candidates)
        video = next((v for v in candidates if v.id not in owned), None)
        if video is not None:
            log.info("job %s: a create answer was lost; adopted %s from the list", job.id, video.id)
            await self._accepted(job, video)
            return True
        return False

    # -- refresh -------------------------------------------------------------------------------

    async def _refresh(self, jobs: list[Job]) -> None:
        by_video = {job.provider_video_id: job for job in jobs if job.provider_video_id}
        seen: dict[str, Video] = {}
        if len(by_video) >= 2 and self.api.supports_list is not False:
            with contextlib.suppress(UnsupportedEndpoint):
                try:
                    seen = await self._list_covering(set(by_video))
                except VideoAPIError as exc:
                    log.warning("status list failed (%s); falling back to single lookups", exc)
        # The ones the list did not show are looked up one by one, side by side (one after the
        # other, sixty lookups of 50 ms each held the last job's download up by three seconds).
        missing = [video_id for video_id in by_video if video_id not in seen]
        lookups = asyncio.Semaphore(SINGLE_LOOKUPS_AT_ONCE)

        async def look_up(video_id: str) -> None:
            async with lookups:
                try:
                    seen[video_id] = await self.api.retrieve(video_id)
                except NotFound:
                    await self._fail(
                        by_video[video_id], "not_found", "The provider no longer knows this video."
                    )
                except VideoAPIError as exc:
                    log.warning("job %s: status check failed: %s", by_video[video_id].id, exc)

        await asyncio.gather(*(look_up(video_id) for video_id in missing))
        # Finished videos first: their downloads start before the progress of the rest is recorded.
        order = sorted(seen, key=lambda vid: 0 if seen[vid].is_terminal else 1)
        for video_id in order:
            job = by_video[video_id]
            await self._guarded(job, "apply status", functools.partial(self._apply, job, seen[video_id]))

    async def _list_covering(self, wanted: set[str]) -> dict[str, Video]:
        """Read the ``GET /videos`` pages (newest first) that show the wanted videos; the ones no
        page showed get single lookups.

        A page shows the hundred videos below the one it starts after. With a thousand jobs in
        flight the wanted ones sit in a few clusters (those just sent, whose pace is being learnt,
        and the oldest, near their end, six pages down): each page starts just above the newest
        wanted video not yet seen (``_list_start``), so one page covers each cluster, however deep.
        Pages are read while two or more wanted videos are unseen and each page shows some (a page
        is one request, like a single lookup, only larger)."""
        seen: dict[str, Video] = {}
        for _page in range(len(wanted) // 2 + 1):
            remaining = wanted - seen.keys()
            if len(remaining) < 2:
                break
            after = self._list_start(remaining)
            try:
                page = await self.api.list(limit=LIST_PAGE_SIZE, order="desc", after=after)
            except (BadRequest, NotFound):
                if after is None:
                    raise
                # The provider refused the video the page was to start after (deleted meanwhile,
                # or it pages differently): from the top instead, once.
                self._provider_order = []
                page = await self.api.list(limit=LIST_PAGE_SIZE, order="desc")
            found = {video.id: video for video in page.data if video.id in remaining}
            seen.update(found)
            if not found:
                break
        return seen

    def _list_start(self, wanted: set[str]) -> str | None:
        """The video a newest-first status page starts after to show the newest of ``wanted``: the
        one of a job still at the provider (so it has it) ``LIST_START_SLACK`` places newer (the
        provider's order may differ a little from this bot's: submissions run side by side).
        None: from the top of the list."""
        order = self._provider_order
        newest = max((index for index, video_id in enumerate(order) if video_id in wanted), default=None)
        if newest is None or newest + LIST_START_SLACK >= len(order):
            return None
        return order[newest + LIST_START_SLACK]

    async def _apply(self, job: Job, video: Video) -> None:
        if video.status == "completed":
            updated = await self.lifecycle.completed(
                job, video.status, total_seconds=lineage.delivered_seconds(video)
            )
            if updated is not None:
                await self.presenter.job_changed(updated)
                # From a sweep this starts the download now; from inside this job's submit step
                # the job is busy, and the sweep its completion triggers starts it instead.
                self._spawn(updated.id, self._deliver(updated))
            return
        if video.is_terminal:
            code = (video.error.code if video.error else None) or video.status
            message = video.error.message if video.error and video.error.message else None
            await self._fail(job, code, explain_code(code, message))
            return
        status = JobStatus.IN_PROGRESS if video.status == "in_progress" else JobStatus.QUEUED
        progress = video.progress if video.progress is not None else job.progress
        progress = max(progress, job.progress)  # never show progress going backwards
        if status is job.status and progress == job.progress and video.status == job.provider_status:
            return
        updated = await self.lifecycle.progress(
            job, status=status, progress=progress, provider_status=video.status
        )
        if updated is not None:
            self._refreshed[updated.id] = updated
            await self.presenter.job_changed(updated)

    # -- deliver -------------------------------------------------------------------------------

    def media_path(self, job: Job) -> Path:
        return self.data_dir / "media" / f"job-{job.id}.mp4"

    async def _deliver(self, job: Job) -> None:
        await self._guarded(job, "delivery", lambda: self._deliver_once(job))

    async def _deliver_once(self, job: Job) -> None:
        path = Path(job.media_path) if job.media_path else self.media_path(job)
        if job.status is JobStatus.UPLOADING and job.id not in self._upload_attempted:
            # A previous run may have posted the video and died before recording it.
            self._upload_attempted.add(job.id)
            posted = await self.presenter.find_delivery(job)
            if posted is not None:
                log.info("job %s: found the video already posted (message %s)", job.id, posted)
                await self._mark_delivered(job, posted)
                return
        if job.status is JobStatus.DOWNLOADING or not path.exists():
            if not job.provider_video_id:
                await self._fail(job, "no_video", "The provider reported success but gave no video.")
                return
            # Before any request: a full disk is retried later (with backoff), not downloaded into.
            self._check_room(path.parent, None)
            try:
                async with self._download_slots:
                    await self.api.download(
                        job.provider_video_id,
                        path,
                        check_room=functools.partial(self._check_room, path.parent),
                    )
            except DownloadTooLarge as exc:
                await self._fail(job, exc.code or "download_too_large", too_large_message(exc))
                return
            except OSError as exc:
                if exc.errno == errno.ENOSPC:  # the disk filled up during the download
                    raise NotEnoughSpace(f"the disk filled up while downloading to {path.parent}") from exc
                raise
            except VideoAPIError as exc:
                if await self._still_generating(job):
                    return
                if isinstance(exc, NotFound | BadRequest):
                    await self._fail(job, exc.code or "download_failed", explain_provider_error(exc))
                    return
                raise
            updated = await self.lifecycle.downloaded(job, str(path))
            if updated is None:
                return
            job = updated
        self._upload_attempted.add(job.id)
        # The store is the truth: a job that ended meanwhile (a deadline) is not posted.
        current = await self.store.get_job(job.id)
        if current is None or current.status is not JobStatus.UPLOADING:
            return
        try:
            async with self._upload_slots:
                receipt = await self.presenter.deliver(current, path)
        except UndeliverableError as exc:
            await self._fail(current, "undeliverable", exc.reason)
            return
        if receipt is None:
            return  # the presenter explained or will retry; the job stays in UPLOADING
        reached(FailPoint.AFTER_UPLOAD_BEFORE_RECORD)
        await self._mark_delivered(current, receipt)
        if self._set_aside is not None:
            await asyncio.to_thread(self._set_aside, path)

    def _check_room(self, folder: Path, expected: int | None) -> None:
        """Raise ``NotEnoughSpace`` unless the disk holding ``folder`` has room for ``expected``
        bytes (unknown: none) and the margin."""
        existing = folder
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        free = self._disk_usage(existing).free
        need = (expected or 0) + self.free_space_margin
        if free < need:
            raise NotEnoughSpace(
                f"{free / MIB:.0f} MiB free in {existing}, the download needs {need / MIB:.0f} MiB"
            )

    async def _mark_delivered(self, job: Job, receipt: Receipt | int) -> None:
        await self.lifecycle.delivered(job, receipt)
        self._forget(job.id)

    async def _still_generating(self, job: Job) -> bool:
        """A download was refused: was the completion announced (by a webhook) ahead of the provider's
        own state? Then the job goes back to waiting instead of failing."""
        if not job.provider_video_id:
            return False
        try:
            video = await self.api.retrieve(job.provider_video_id)
        except VideoAPIError:
            return False
        if video.is_terminal:
            return False
        status = JobStatus.IN_PROGRESS if video.status == "in_progress" else JobStatus.QUEUED
        updated = await self.lifecycle.back_to_waiting(job, status)
        if updated is None:
            return False
        # The card said "downloading": it goes back to showing the generation.
        await self.presenter.job_changed(updated)
        return True

    # -- failure -------------------------------------------------------------------------------

    async def _fail(self, job: Job, code: str, message: str, *, delete_at_provider: bool = False) -> None:
        """Fail and refund through the lifecycle (exactly once), then tell the member."""
        failed = await self.lifecycle.fail(job, code, message, delete_at_provider=delete_at_provider)
        self._forget(job.id)
        if failed is not None:
            await self.presenter.job_failed(failed)

    def _forget(self, job_id: int) -> None:
        self._upload_attempted.discard(job_id)
        self._step_failures.pop(job_id, None)
        self._not_before.pop(job_id, None)


def too_large_message(exc: DownloadTooLarge) -> str:
    size = f"{size_text(exc.size)}, " if exc.size is not None else ""
    return (
        f"The finished video is {size}more than this bot downloads (at most {size_text(exc.limit)} "
        "per video), so it was not fetched. Nothing was charged; try a shorter or smaller video."
    )


def size_text(n: int) -> str:
    if n >= MIB:
        return f"{n / MIB:,.1f} MiB".replace(".0 MiB", " MiB")
    if n >= 1024:
        return f"{n / 1024:,.0f} KiB"
    return f"{n:,} bytes"


def matches_job(video: Video, job: Job) -> bool:
    """Could ``video`` be the provider's copy of ``job`` (created by its request)? Fields a
    provider leaves out don't disqualify; a few seconds of clock skew are allowed."""
    return (
        video.prompt == job.prompt
        and video.model in (None, job.model)
        and video.size in (None, job.size)
        # An extension's answer gives the stitched total, an edit's its source's length, not the
        # length the job was priced at.
        and (video.seconds in (None, str(job.seconds)) or job.kind in lineage.LINEAGE_KINDS)
        and (video.created_at is None or video.created_at >= int(job.created_at) - 5)
        and (
            job.remixed_from_video_id is None
            or video.remixed_from_video_id in (None, job.remixed_from_video_id)
        )
    )
