"""Cancel never refunds finished work: the lifecycle asks the provider before it refunds.

Real parts: a SQLite file, the local renderer over HTTP (its clock moved by hand, so "the provider
finished, the tracker hasn't looked yet" is a state, not a moment), the Videos API client, the
tracker and the lifecycle.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bot.adapters.sql.credits import SqlCreditsRepository
from bot.adapters.sqlite.store import Store
from bot.adapters.videoapi.client import VideoAPIClient
from bot.app import job_service, job_tracker
from bot.domain.errors import CancelUnverified, JobAlreadyFinished
from bot.domain.jobs import ChargeState, Job, JobStatus
from bot.localapi import LocalRendererConfig
from bot.services.jobs import JobService
from bot.services.lifecycle import JobLifecycle
from bot.services.tracker import JobTracker
from tests.fakes.provider import InstrumentedRenderer
from tests.helpers import ManualClock
from tests.integration.test_tracker import RecordingPresenter, request

GENERATION_SECONDS = 2.0


class HeldStatusChecks:
    """Holds the next ``count`` status checks (``GET /v1/videos/{id}``) until ``release`` is set."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "GET" and is_status_path(request.path) and self.count > 0:
            self.count -= 1
            self.arrived.set()
            await self.release.wait()
        return await handler(request)


def is_status_path(path: str) -> bool:
    parts = path.split("/")  # "", "v1", "videos", "<id>"
    return len(parts) == 4 and parts[2] == "videos" and bool(parts[3])


@dataclass
class Harness:
    store: Store
    server: InstrumentedRenderer
    clock: ManualClock
    lifecycle: JobLifecycle
    service: JobService
    tracker: JobTracker
    presenter: RecordingPresenter
    database: Path

    async def job_at_provider(self, prompt: str) -> tuple[Job, str]:
        """A job whose video the provider has accepted and still has queued (its clock is held)."""
        job = await self.service.submit(request(prompt))
        async with VideoAPIClient(self.server.base_url) as api:
            video = await api.create(prompt=prompt, model="sora-2", size="720x1280", seconds=4)
        await self.store.update_job(job.id, status=JobStatus.QUEUED, provider_video_id=video.id)
        await self.server.wait_rendered(video.id)  # rendered, but not "completed" until the clock says
        assert self.server.video(video.id)["status"] == "queued"
        return job, video.id

    def provider_finishes(self, video_id: str) -> None:
        self.clock.advance(GENERATION_SECONDS + 1)
        assert self.server.video(video_id)["status"] == "completed"

    def requests(self, method: str, video_id: str, suffix: str = "") -> int:
        path = f"/v1/videos/{video_id}{suffix}"
        return sum(1 for r in self.server.requests if r.method == method and r.path == path)

    async def job(self, job_id: int) -> Job:
        job = await self.store.get_job(job_id)
        assert job is not None
        return job

    def audit(self) -> list[tuple[str, int]]:
        with sqlite3.connect(self.database) as conn:
            rows = conn.execute("SELECT action, job_id FROM audit_log ORDER BY id").fetchall()
        return [(str(action), int(job_id)) for action, job_id in rows]


@asynccontextmanager
async def harness(
    tmp_path: Path, *, middlewares: Sequence[Middleware] = (), cancel_check_seconds: float = 2.0
) -> AsyncIterator[Harness]:
    clock = ManualClock()
    config = LocalRendererConfig(
        generation_seconds=GENERATION_SECONDS,
        queue_seconds=1.0,
        fps=8,
        poll_after_ms=50,
        clock=clock,
        data_dir=tmp_path / "renderer",
    )
    database = tmp_path / "bot.db"
    async with (
        Store.open(database) as store,
        InstrumentedRenderer(config, middlewares=middlewares) as server,
        VideoAPIClient(server.base_url, backoff_initial=0.01) as api,
    ):
        credits = SqlCreditsRepository(store)
        lifecycle = JobLifecycle(store, credits, credits, api, cancel_check_seconds=cancel_check_seconds)
        presenter = RecordingPresenter()
        # A long poll interval: the tracker looks at the provider when the test sweeps, not on its own.
        tracker = job_tracker(
            store, api, presenter, tmp_path / "data", lifecycle=lifecycle, poll_interval=600
        )
        service = job_service(store, lifecycle=lifecycle, on_new_job=tracker.wake)
        try:
            yield Harness(store, server, clock, lifecycle, service, tracker, presenter, database)
        finally:
            await tracker.stop()


async def test_cancel_after_the_provider_finished_is_refused_and_the_video_is_delivered_and_charged(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path) as h:
        job, video_id = await h.job_at_provider("made before the cancel")
        await h.tracker.sweep()  # the tracker's last look: still queued
        assert h.requests("GET", video_id) == 1
        h.provider_finishes(video_id)
        assert (await h.job(job.id)).status is JobStatus.QUEUED  # the bot hasn't noticed

        with pytest.raises(JobAlreadyFinished) as refused:
            await h.service.cancel(job.id, actor_id=3)
        assert refused.value.user_message == (
            f"Job #{job.id} was already finished by the provider, so it can't be cancelled: "
            "it is being posted now and will be charged (4 credits)."
        )
        moved = await h.job(job.id)
        assert (moved.status, moved.charge_state) == (JobStatus.DOWNLOADING, ChargeState.RESERVED)

        async with asyncio.timeout(30):
            await h.tracker.run_until_idle()
        delivered = await h.job(job.id)
        assert (delivered.status, delivered.charge_state) == (JobStatus.COMPLETED, ChargeState.CHARGED)
        with av.open(io.BytesIO(h.presenter.delivered[job.id])) as container:
            assert next(container.decode(video=0)).width == 720
        assert h.requests("GET", video_id) == 2  # the tracker's look and the cancel's check
        assert h.requests("GET", video_id, "/content") == 1
        assert h.requests("DELETE", video_id) == 0  # the provider's finished work is kept
    assert h.audit() == [("job.submitted", job.id), ("job.delivered", job.id)]


async def test_a_second_cancel_while_the_video_is_being_posted_gets_the_same_answer(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        job, video_id = await h.job_at_provider("pressed twice")
        h.provider_finishes(video_id)
        with pytest.raises(JobAlreadyFinished) as first:
            await h.service.cancel(job.id, actor_id=3)
        with pytest.raises(JobAlreadyFinished) as second:  # no provider check now: it is downloading
            await h.service.cancel(job.id, actor_id=3)
        assert second.value.user_message == first.value.user_message
        assert h.requests("GET", video_id) == 1


async def test_cancel_is_refused_while_the_provider_cannot_be_asked_and_works_once_it_answers(
    tmp_path: Path,
) -> None:
    async with harness(tmp_path) as h:
        job, video_id = await h.job_at_provider("provider down")
        # Every attempt of the client's retries fails.
        h.server.faults.add(status=503, count=5, method="GET", path_prefix=f"/v1/videos/{video_id}")
        with pytest.raises(CancelUnverified) as refused:
            await h.service.cancel(job.id, actor_id=3)
        assert refused.value.user_message == (
            f"Job #{job.id} was not cancelled: the bot couldn't reach the video provider to check "
            "whether the video is already finished. Try again in a minute."
        )
        unchanged = await h.job(job.id)
        assert (unchanged.status, unchanged.charge_state) == (JobStatus.QUEUED, ChargeState.RESERVED)
        assert h.requests("DELETE", video_id) == 0

        cancelled = await h.service.cancel(job.id, actor_id=3)  # the provider answers again: queued
        assert (cancelled.status, cancelled.charge_state) == (JobStatus.CANCELLED, ChargeState.REFUNDED)
        await h.lifecycle.close()
        assert h.requests("DELETE", video_id) == 1
    assert h.audit() == [("job.submitted", job.id), ("job.cancelled", job.id)]


async def test_cancel_is_refused_when_the_provider_is_too_slow_to_answer(tmp_path: Path) -> None:
    held = HeldStatusChecks(count=1)
    async with harness(tmp_path, middlewares=[held.middleware], cancel_check_seconds=0.3) as h:
        job, video_id = await h.job_at_provider("provider slow")
        try:
            with pytest.raises(CancelUnverified):
                await h.service.cancel(job.id, actor_id=3)
        finally:
            held.release.set()
        assert held.arrived.is_set()
        assert (await h.job(job.id)).charge_state is ChargeState.RESERVED
        assert h.requests("DELETE", video_id) == 0


async def test_cancel_of_a_video_the_provider_no_longer_has_refunds(tmp_path: Path) -> None:
    async with harness(tmp_path) as h:
        job = await h.service.submit(request("lost at the provider"))
        await h.store.update_job(job.id, status=JobStatus.IN_PROGRESS, provider_video_id="video_gone")
        cancelled = await h.service.cancel(job.id, actor_id=3)
        assert (cancelled.status, cancelled.charge_state) == (JobStatus.CANCELLED, ChargeState.REFUNDED)


async def test_a_completion_seen_after_a_successful_cancel_is_never_delivered(tmp_path: Path) -> None:
    # The tracker's status check leaves before the cancel and comes back "completed" after it.
    held = HeldStatusChecks(count=1)
    async with harness(tmp_path, middlewares=[held.middleware]) as h:
        job, video_id = await h.job_at_provider("finished just too late")
        sweep = asyncio.create_task(h.tracker.sweep())
        try:
            async with asyncio.timeout(10):
                await held.arrived.wait()
            cancelled = await h.service.cancel(job.id, actor_id=3)  # its own check: still queued
            await h.lifecycle.close()  # the provider delete has been sent
            h.provider_finishes(video_id)
        finally:
            held.release.set()
        async with asyncio.timeout(10):
            await sweep
        await h.tracker.sweep()

        assert (cancelled.status, cancelled.charge_state) == (JobStatus.CANCELLED, ChargeState.REFUNDED)
        final = await h.job(job.id)
        assert (final.status, final.charge_state) == (JobStatus.CANCELLED, ChargeState.REFUNDED)
        assert h.presenter.delivered == {}
        assert all(job_id != job.id or status == "queued" for job_id, status, _ in h.presenter.changes)
        assert h.requests("GET", video_id) == 2
        assert h.requests("GET", video_id, "/content") == 0
        assert h.requests("DELETE", video_id) == 1
    assert h.audit() == [("job.submitted", job.id), ("job.cancelled", job.id)]
