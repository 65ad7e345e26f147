"""The tracker (core, no Discord) against the local renderer and a real SQLite file."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bot.adapters.media import probe_video, release_cached_pages
from bot.adapters.sqlite.store import Store
from bot.adapters.videoapi.client import VideoAPIClient
from bot.app import job_lifecycle, job_service, job_tracker
from bot.domain.jobs import WITH_PROVIDER, ChargeState, Job, JobRequest, JobStatus, QueuePlace
from bot.localapi import LocalRendererConfig
from bot.services.tracker import JobTracker
from tests.conftest import RendererFactory
from tests.fakes.provider import InstrumentedRenderer
from tests.helpers import ManualClock, wait_for
from tests.unit.test_page_cache import cached_pages


@dataclass
class RecordingPresenter:
    changes: list[tuple[int, str, int]] = field(default_factory=list)
    delivered: dict[int, bytes] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    async def job_changed(self, job: Job) -> None:
        self.changes.append((job.id, job.status.value, job.progress))

    async def deliver(self, job: Job, media: Path) -> int | None:
        assert job.id not in self.delivered, "delivered twice"
        self.delivered[job.id] = media.read_bytes()
        return 1000 + job.id

    async def job_failed(self, job: Job) -> None:
        self.failed[job.id] = job.error_message or ""

    async def find_delivery(self, job: Job) -> int | None:
        return 1000 + job.id if job.id in self.delivered else None


def request(prompt: str, **changes: object) -> JobRequest:
    values: dict[str, object] = {
        "guild_id": 1,
        "channel_id": 2,
        "user_id": 3,
        "user_name": "ana",
        "prompt": prompt,
        "model": "sora-2",
        "size": "720x1280",
        "seconds": 4,
        "cost": 4,
        "usd": 0.4,
    }
    values.update(changes)
    return JobRequest(**values)  # type: ignore[arg-type]


@pytest.fixture
def renderer_settings() -> dict[str, Any]:
    return {"generation_seconds": 1.0, "queue_seconds": 0.2, "fps": 8, "poll_after_ms": 100}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "bot.db") as db:
        async with db.transaction() as conn:
            from bot.adapters.sql.credits import SqlCreditsRepository
            from bot.domain.credits import GuildPolicy

            await SqlCreditsRepository(db).set_policy(
                1, GuildPolicy(cooldown_seconds=0, max_concurrent=10), conn
            )
        yield db


def tracker_for(
    store: Store, api: VideoAPIClient, presenter: RecordingPresenter, tmp_path: Path
) -> JobTracker:
    return job_tracker(store, api, presenter, tmp_path / "data", poll_interval=0.5, min_poll_interval=0.05)


async def test_three_jobs_share_list_requests_and_are_delivered_once(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    service = job_service(store)
    jobs = [await service.submit(request(f"clip {n}")) for n in range(3)]
    presenter = RecordingPresenter()
    async with VideoAPIClient(renderer.base_url) as api:
        tracker = tracker_for(store, api, presenter, tmp_path)
        async with asyncio.timeout(60):
            await tracker.run_until_idle()
        await tracker.stop()
    assert sorted(presenter.delivered) == [j.id for j in jobs]
    for job in jobs:
        stored = await store.get_job(job.id)
        assert stored is not None
        assert (stored.status, stored.charge_state, stored.delivered_message_id) == (
            JobStatus.COMPLETED,
            ChargeState.CHARGED,
            1000 + job.id,
        )
        path = tmp_path / "job.mp4"
        path.write_bytes(presenter.delivered[job.id])
        assert probe_video(path).duration == pytest.approx(4.0, abs=0.2)
    progress = [p for job_id, _, p in presenter.changes if job_id == jobs[0].id]
    assert progress == sorted(progress)


async def test_one_sweep_refreshes_many_jobs_with_one_list_page(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    service = job_service(store)
    async with VideoAPIClient(renderer.base_url) as api:
        jobs = []
        for n in range(5):
            job = await service.submit(request(f"batched {n}"))
            video = await api.create(prompt=job.prompt, model="sora-2", size="720x1280", seconds=4)
            await store.update_job(job.id, status=JobStatus.QUEUED, provider_video_id=video.id)
            jobs.append(job)
        straggler = await service.submit(request("unknown to the provider"))
        await store.update_job(straggler.id, status=JobStatus.QUEUED, provider_video_id="video_gone")
        api.request_counts.clear()
        presenter = RecordingPresenter()
        tracker = tracker_for(store, api, presenter, tmp_path)
        await tracker.sweep()
        await tracker.stop()
        # Six jobs in flight: one list page for the five it covers, one lookup for the straggler.
        assert api.request_counts == {"GET videos": 1, "GET videos/{id}": 1}
    assert {job_id for job_id, _, _ in presenter.changes} >= {j.id for j in jobs}
    assert "no longer knows" in presenter.failed[straggler.id]


async def test_a_restarted_tracker_resumes_jobs_in_every_state(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    service = job_service(store)
    # Simulate what a crash leaves behind: a job at the provider, and one whose create was in
    # flight (the provider has it, but its id was never stored).
    at_provider = await service.submit(request("already running"))
    lost_answer = await service.submit(request("answer was lost"))
    async with VideoAPIClient(renderer.base_url) as api:
        first = await api.create(prompt="already running", model="sora-2", size="720x1280", seconds=4)
        await api.create(prompt="answer was lost", model="sora-2", size="720x1280", seconds=4)
        await store.update_job(at_provider.id, status=JobStatus.QUEUED, provider_video_id=first.id)
        await store.update_job(lost_answer.id, status=JobStatus.SUBMITTING)
        presenter = RecordingPresenter()
        tracker = tracker_for(store, api, presenter, tmp_path)
        async with asyncio.timeout(60):
            await tracker.run_until_idle()
        await tracker.stop()
    assert sorted(presenter.delivered) == [at_provider.id, lost_answer.id]
    posts = [r for r in renderer.requests if r.method == "POST"]
    assert len(posts) == 2  # the tracker adopted the lost job instead of creating it again


async def test_failures_are_refunded_and_explained(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    service = job_service(store)
    blocked = await service.submit(request("something forbidden"))
    bad = await service.submit(request("impossible", size="999x999"))
    presenter = RecordingPresenter()
    async with VideoAPIClient(renderer.base_url) as api:
        tracker = tracker_for(store, api, presenter, tmp_path)
        async with asyncio.timeout(60):
            await tracker.run_until_idle()
    for job in (blocked, bad):
        stored = await store.get_job(job.id)
        assert stored is not None and (stored.status, stored.charge_state) == (
            JobStatus.FAILED,
            ChargeState.REFUNDED,
        )
    assert "safety system" in presenter.failed[blocked.id]
    assert "refused the request" in presenter.failed[bad.id]
    assert presenter.delivered == {}


async def test_a_job_past_its_deadline_is_failed_and_deleted(
    store: Store, make_renderer: RendererFactory, tmp_path: Path
) -> None:
    slow = await make_renderer(generation_seconds=600, queue_seconds=0.1, poll_after_ms=50)
    async with VideoAPIClient(slow.base_url) as api:
        service = job_service(store)
        job = await service.submit(request("takes forever"))
        presenter = RecordingPresenter()
        tracker = job_tracker(store, api, presenter, tmp_path, poll_interval=0.2, deadline_seconds=0.5)
        async with asyncio.timeout(30):
            await tracker.run_until_idle()
        await tracker.stop()
        assert "took longer than" in presenter.failed[job.id]
        assert any(r.method == "DELETE" for r in slow.requests)
    stored = await store.get_job(job.id)
    assert stored is not None and stored.charge_state is ChargeState.REFUNDED


async def test_without_a_list_endpoint_single_lookups_are_used(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    service = job_service(store)
    for n in range(2):
        await service.submit(request(f"no list {n}"))
    renderer.faults.add(status=405, method="GET", path_prefix="/v1/videos?", count=1)
    presenter = RecordingPresenter()
    async with VideoAPIClient(renderer.base_url) as api:
        api.supports_list = False  # as discovered from a 404/405 on an earlier sweep
        tracker = tracker_for(store, api, presenter, tmp_path)
        async with asyncio.timeout(60):
            await tracker.run_until_idle()
        assert api.request_counts.get("GET videos", 0) == 0
        assert api.request_counts.get("GET videos/{id}", 0) >= 2
    assert len(presenter.delivered) == 2


async def test_a_completion_event_ahead_of_the_provider_goes_back_to_waiting(
    store: Store, make_renderer: RendererFactory, tmp_path: Path
) -> None:
    # Held in progress until the premature download has been refused, then finished at once (the
    # renderer measures every job against the current generation_seconds).
    server = await make_renderer(generation_seconds=3600, queue_seconds=0.1, poll_after_ms=50)
    async with VideoAPIClient(server.base_url, backoff_initial=0.01) as api:
        service = job_service(store)
        job = await service.submit(request("announced too early"))
        presenter = RecordingPresenter()
        tracker = job_tracker(
            store, api, presenter, tmp_path, poll_interval=0.2, push_mode=True, safety_interval=0.3
        )
        video = await api.create(prompt=job.prompt, model="sora-2", size="720x1280", seconds=4)
        stored = await store.update_job(job.id, status=JobStatus.QUEUED, provider_video_id=video.id)
        assert stored.provider_video_id is not None
        # A premature event, and the provider refuses the download because it isn't finished.
        server.faults.add(
            status=404, method="GET", path_prefix=f"/v1/videos/{stored.provider_video_id}/content"
        )
        tracker.notify_video_event(stored.provider_video_id, "video.completed")
        await tracker.sweep()
        idle = asyncio.create_task(tracker.run_until_idle())

        def waiting_again() -> bool:
            statuses = [status for job_id, status, _ in presenter.changes if job_id == job.id]
            return "downloading" in statuses and statuses[-1] in ("queued", "in_progress")

        # The refused download sends the job back to waiting, and the card shows it at once.
        await wait_for(waiting_again, "the card to show the job waiting again")
        server.config.generation_seconds = 0.5
        async with asyncio.timeout(60):
            await idle
        await tracker.stop()
    assert job.id in presenter.delivered and presenter.failed == {}
    statuses = [status for job_id, status, _ in presenter.changes if job_id == job.id]
    # Downloading (the event), waiting again (the refusal), downloading (really finished).
    first_download = statuses.index("downloading")
    assert statuses[-1] == "downloading" and statuses.count("downloading") == 2
    assert {"queued", "in_progress"} & set(statuses[first_download:-1])
    assert server.faults.pending == 0


async def test_a_guild_can_choose_to_charge_for_moderation_blocks(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    from bot.adapters.sql.credits import SqlCreditsRepository
    from bot.domain.credits import GuildPolicy

    async with store.transaction() as conn:
        await SqlCreditsRepository(store).set_policy(
            1, GuildPolicy(cooldown_seconds=0, max_concurrent=10, charge_moderation_blocked=True), conn
        )
    service = job_service(store)
    blocked = await service.submit(request("something forbidden"))
    presenter = RecordingPresenter()
    async with VideoAPIClient(renderer.base_url) as api:
        tracker = tracker_for(store, api, presenter, tmp_path)
        async with asyncio.timeout(60):
            await tracker.run_until_idle()
    stored = await store.get_job(blocked.id)
    assert stored is not None and (stored.status, stored.charge_state) == (
        JobStatus.FAILED,
        ChargeState.CHARGED,
    )
    balance, _ = await service.balance(1, 3)
    assert (balance.usage.used, balance.usage.reserved) == (4, 0)


def hidden_from_list(hidden: set[str]) -> Middleware:
    """A provider whose list leaves some videos out (eventually consistent, or paged away)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.method != "GET" or request.path != "/v1/videos" or not isinstance(response, web.Response):
            return response
        assert isinstance(response.body, bytes)
        page = json.loads(response.body)
        page["data"] = [video for video in page["data"] if video["id"] not in hidden]
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("openai-")}
        return web.json_response(page, status=response.status, headers=headers)

    return middleware


async def test_status_is_listed_near_the_end_with_single_lookups_only_for_jobs_the_list_misses(
    store: Store, tmp_path: Path
) -> None:
    clock = ManualClock(time.time())
    start = clock.now
    hidden: set[str] = set()
    config = LocalRendererConfig(
        data_dir=tmp_path / "renderer",
        clock=clock,
        generation_seconds=60,
        queue_seconds=0,
        fps=2,
        poll_after_ms=2000,
    )
    async with (
        InstrumentedRenderer(config, middlewares=[hidden_from_list(hidden)]) as renderer,
        VideoAPIClient(renderer.base_url) as api,
    ):
        lifecycle = job_lifecycle(store, api, clock=clock)
        service = job_service(store, lifecycle=lifecycle, clock=clock)
        jobs = [await service.submit(request(f"listed {n}")) for n in range(3)]
        presenter = RecordingPresenter()
        tracker = job_tracker(
            store,
            api,
            presenter,
            tmp_path / "data",
            lifecycle=lifecycle,
            clock=clock,
            poll_interval=5,
            expected_seconds=lambda job: 60.0,
        )
        await tracker.sweep()  # sends the three creates

        async def at_provider() -> list[Job]:
            stored = [await store.get_job(job.id) for job in jobs]
            return [j for j in stored if j is not None and j.provider_video_id and j.status in WITH_PROVIDER]

        sent = await wait_for(lambda: _all_three(at_provider()), "the three jobs at the provider")
        hidden.add(str(sent[2].provider_video_id))
        for job in sent:
            await renderer.wait_rendered(str(job.provider_video_id))
        renderer.requests.clear()
        checks: dict[int, list[str]] = {}
        for second in range(1, 63):
            clock.now = start + second
            await tracker.sweep()
            seen = [r.path for r in renderer.requests if r.method == "GET" and "/content" not in r.path]
            if seen:
                checks[second] = seen
            renderer.requests.clear()
        done = [await store.get_job(job.id) for job in jobs]
        await tracker.stop()
    single = f"/v1/videos/{sent[2].provider_video_id}"
    # Every check is one list page for the jobs it shows and one lookup for the job it doesn't.
    assert {s: p for s, p in checks.items() if p != ["/v1/videos", single]} == {}
    # Far from the expected end (a minute), rarely: two checks at the suggested 2 s until progress
    # has moved (the pace is known), then progress checks 15 s apart at most; near the end, at the
    # provider's suggested 2 s, until the videos are done.
    far = [second for second in checks if second < 54]
    assert far[:2] == [2, 4] and all(b - a <= 15 for a, b in itertools.pairwise([0, *far]))
    assert len(far) <= 5
    near = [second for second in checks if second >= 54]
    assert near[0] <= 56 and near[-1] >= 60 and all(b - a == 2 for a, b in itertools.pairwise(near)), near
    assert all(job is not None and job.status is not JobStatus.IN_PROGRESS for job in done)


async def test_jobs_near_their_end_below_a_page_of_newer_ones_are_checked_with_one_list_page(
    store: Store, tmp_path: Path
) -> None:
    """With more jobs in flight than a list page holds, the ones near their end are the oldest, far
    down the newest-first list: the check starts its page just above them instead of at the top."""
    clock = ManualClock(time.time())
    config = LocalRendererConfig(
        data_dir=tmp_path / "renderer", clock=clock, generation_seconds=600, queue_seconds=0, fps=1
    )
    async with InstrumentedRenderer(config) as renderer, VideoAPIClient(renderer.base_url) as api:
        lifecycle = job_lifecycle(store, api, clock=clock)
        service = job_service(store, lifecycle=lifecycle, clock=clock)
        old: list[Job] = []
        # Three jobs a minute's video is nearly done for, then 110 newer ones far from their end.
        for n, submitted in [
            *((n, clock.now - 58) for n in range(3)),
            *((n, clock.now - 20) for n in range(3, 113)),
        ]:
            job = await service.submit(request(f"deep {n}", user_id=100 + n))
            video = await api.create(prompt=job.prompt, model="sora-2", size="720x1280", seconds=4)
            await store.update_job(
                job.id, status=JobStatus.IN_PROGRESS, provider_video_id=video.id, submitted_at=submitted
            )
            if n < 3:
                old.append(job)
        ids = {job.id for job in old}
        presenter = RecordingPresenter()
        tracker = job_tracker(
            store,
            api,
            presenter,
            tmp_path / "data",
            lifecycle=lifecycle,
            clock=clock,
            expected_seconds=lambda job: 60.0 if job.id in ids else 600.0,
        )
        await tracker.sweep()  # the first look covers every job (two pages)
        renderer.requests.clear()
        clock.now += 2.5  # the three old ones are due again, the newer ones not for a while
        await tracker.sweep()
        await tracker.stop()
    # One page, and no single lookups: the three were on it (from the top they are on the second).
    status_requests = [r for r in renderer.requests if r.method == "GET"]
    assert [r.path for r in status_requests] == ["/v1/videos"], [r.path for r in status_requests]
    assert presenter.failed == {}


async def test_a_provider_faster_than_the_models_typical_time_is_noticed_soon(
    store: Store, tmp_path: Path
) -> None:
    """The catalog says a minute; the provider takes 5 s. Until two checks see the progress move,
    the next check is at most half the job's time at the provider away, so the finished video is
    noticed within a few seconds, not at the first 15 s progress check."""
    clock = ManualClock(time.time())
    start = clock.now
    config = LocalRendererConfig(
        data_dir=tmp_path / "renderer", clock=clock, generation_seconds=5, queue_seconds=0, fps=2
    )
    async with InstrumentedRenderer(config) as renderer, VideoAPIClient(renderer.base_url) as api:
        lifecycle = job_lifecycle(store, api, clock=clock)
        service = job_service(store, lifecycle=lifecycle, clock=clock)
        job = await service.submit(request("quicker than expected"))
        presenter = RecordingPresenter()
        tracker = job_tracker(
            store,
            api,
            presenter,
            tmp_path / "data",
            lifecycle=lifecycle,
            clock=clock,
            poll_interval=1,
            expected_seconds=lambda job: 60.0,
        )
        await tracker.sweep()  # sends the create
        sent = await wait_for(lambda: _with_provider_id(store, job.id), "the job at the provider")
        await renderer.wait_rendered(str(sent.provider_video_id))
        noticed = None
        for second in range(1, 16):
            clock.now = start + second
            await tracker.sweep()
            current = await store.get_job(job.id)
            if current is not None and current.status not in WITH_PROVIDER:
                noticed = second
                break
        await tracker.stop()
    checks = [r for r in renderer.requests if r.method == "GET" and "/content" not in r.path]
    assert noticed is not None and noticed <= 8, noticed
    assert len(checks) <= 5


async def _with_provider_id(store: Store, job_id: int) -> Job | None:
    job = await store.get_job(job_id)
    return job if job is not None and job.provider_video_id else None


async def _all_three(jobs: Awaitable[list[Job]]) -> list[Job] | None:
    found = await jobs
    return found if len(found) == 3 else None


@dataclass
class QueueRecordingPresenter(RecordingPresenter):
    places: list[tuple[int, int]] = field(default_factory=list)

    async def queue_changed(self, job: Job, place: QueuePlace) -> None:
        self.places.append((job.id, place.place))


async def test_a_waiting_jobs_place_is_shown_when_it_changes_at_most_every_30_seconds(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    clock = ManualClock(time.time())
    service = job_service(store)
    jobs = [await service.submit(request(f"in line {n}")) for n in range(4)]
    for n, job in enumerate(jobs):
        await store.update_job(job.id, reply_message_id=5000 + n)  # each has its card
    presenter = QueueRecordingPresenter()
    # One create a minute: the first goes at once, the second waits for the budget.
    async with VideoAPIClient(renderer.base_url, requests_per_minute=60, creates_per_minute=1) as api:
        tracker = job_tracker(
            store,
            api,
            presenter,
            tmp_path / "data",
            clock=clock,
            max_concurrent_submissions=1,
            submission_rate=lambda: 0.5,
        )
        await tracker.sweep()
        # Behind the one being sent, each in creation order, with an estimate from the rate.
        assert presenter.places == [(jobs[1].id, 2), (jobs[2].id, 3), (jobs[3].id, 4)]
        assert tracker.queue_place(jobs[3].id) == QueuePlace(4, clock.now + 8)

        async def first_sent() -> bool:
            job = await store.get_job(jobs[0].id)
            return job is not None and job.status in WITH_PROVIDER

        await wait_for(first_sent, "the first job to be sent")
        presenter.places.clear()
        clock.advance(10)
        await tracker.sweep()
        assert presenter.places == []  # moved up, but told less than 30 s ago
        assert tracker.queue_place(jobs[3].id) == QueuePlace(3, clock.now + 6)
        clock.advance(21)
        await tracker.sweep()
        assert presenter.places == [(jobs[2].id, 2), (jobs[3].id, 3)]
        clock.advance(31)
        await tracker.sweep()
        assert presenter.places == [(jobs[2].id, 2), (jobs[3].id, 3)]  # unchanged: not told again
        await tracker.stop()


async def test_with_webhooks_a_completion_is_downloaded_at_once_without_a_status_check(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    service = job_service(store)
    job = await service.submit(request("pushed"))
    async with VideoAPIClient(renderer.base_url) as api:
        video = await api.create(prompt=job.prompt, model="sora-2", size="720x1280", seconds=4)
        await store.update_job(job.id, status=JobStatus.QUEUED, provider_video_id=video.id)
        await renderer.wait_rendered(video.id)
        await wait_for(lambda: renderer.video(video.id)["status"] == "completed", "the video to finish")
        renderer.requests.clear()
        presenter = RecordingPresenter()
        tracker = job_tracker(store, api, presenter, tmp_path / "data", push_mode=True, safety_interval=3600)
        tracker.notify_video_event(video.id, "video.completed")
        await tracker.sweep()
        await wait_for(lambda: job.id in presenter.delivered, "the delivery")
        await tracker.stop()
    assert [(r.method, r.path) for r in renderer.requests] == [("GET", f"/v1/videos/{video.id}/content")]


async def test_a_posted_video_stays_on_disk_and_leaves_the_page_cache(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    """What the composition root wires: once a video is posted, its file is set aside (kept for a
    re-delivery or a link, its memory freed for the next download)."""
    job = await job_service(store).submit(request("set aside"))
    presenter = RecordingPresenter()
    async with VideoAPIClient(renderer.base_url) as api:
        tracker = job_tracker(
            store,
            api,
            presenter,
            tmp_path / "data",
            poll_interval=0.5,
            min_poll_interval=0.05,
            set_aside=release_cached_pages,
        )
        async with asyncio.timeout(60):
            await tracker.run_until_idle()
        await tracker.stop()
    stored = await store.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.COMPLETED
    kept = tracker.media_path(job)
    assert cached_pages(kept) == 0
    assert kept.read_bytes() == presenter.delivered[job.id]
    assert cached_pages(kept) > 0  # (the check sees pages that are cached)
