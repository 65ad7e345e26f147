"""Finding 8: downloads are capped and need free disk space, and a failing step backs off.

The provider is the local renderer (real MP4s over real HTTP) or a small aiohttp server for bodies a
renderer never sends; jobs live in a real SQLite file. The disk is the one seam: the tracker takes
its ``disk_usage`` function, so a full disk is simulated without filling one.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import pytest
from aiohttp import web

from bot.adapters.sqlite.store import Store
from bot.adapters.videoapi.client import VideoAPIClient
from bot.app import job_service, job_tracker
from bot.domain.jobs import ChargeState, Job, JobStatus
from bot.domain.provider_errors import DownloadTooLarge
from bot.localapi import LocalRendererConfig
from bot.services.tracker import FREE_SPACE_MARGIN_BYTES, MAX_STEP_FAILURES, JobTracker
from tests.fakes.provider import InstrumentedRenderer
from tests.integration.test_tracker import RecordingPresenter, request


class DiskUsage(NamedTuple):
    """A ``shutil.disk_usage`` answer (for a simulated disk)."""

    total: int
    used: int
    free: int


MIB = 1024 * 1024


@pytest.fixture
async def renderer(tmp_path: Path) -> AsyncIterator[InstrumentedRenderer]:
    config = LocalRendererConfig(
        generation_seconds=0.2, queue_seconds=0.0, fps=8, poll_after_ms=50, data_dir=tmp_path / "renderer"
    )
    async with InstrumentedRenderer(config) as server:
        yield server


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "bot.db") as db:
        yield db


def leftovers(data_dir: Path) -> list[str]:
    media = data_dir / "media"
    return sorted(p.name for p in media.iterdir()) if media.is_dir() else []


async def finished_video(api: VideoAPIClient, prompt: str) -> str:
    """A video the renderer has completed (so it can be downloaded)."""
    video = await api.create(prompt=prompt, model="sora-2", size="720x1280", seconds=4)
    async with asyncio.timeout(30):
        while (await api.retrieve(video.id)).status != "completed":  # noqa: ASYNC110 - polled over HTTP
            await asyncio.sleep(0.05)
    return video.id


class FakeClock:
    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def settle(tracker: JobTracker) -> None:
    """Let the steps the last sweep started finish."""
    async with asyncio.timeout(30):
        while tracker.steps_running:  # noqa: ASYNC110 - step tasks have no shared event
            await asyncio.sleep(0.01)


async def test_a_video_over_the_download_cap_is_fetched_once_and_refunded(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    """The review's attack: a 1 MiB limit and a bigger video gave 5 downloads in 55 ms. Now the
    first answer's Content-Length refuses it: one request, the job failed and refunded, no file."""
    job = await job_service(store).submit(request("too big to fetch"))
    presenter = RecordingPresenter()
    data_dir = tmp_path / "data"
    async with VideoAPIClient(renderer.base_url, max_download_bytes=2000, backoff_initial=0.01) as api:
        tracker = job_tracker(store, api, presenter, data_dir, poll_interval=0.2, min_poll_interval=0.05)
        async with asyncio.timeout(60):
            await tracker.run_until_idle()
        await tracker.stop()
        content_requests = [r for r in renderer.requests if r.path.endswith("/content")]
        assert len(content_requests) == 1
        assert api.request_counts["GET content"] == 1
    stored = await store.get_job(job.id)
    assert stored is not None
    assert (stored.status, stored.charge_state, stored.error_code) == (
        JobStatus.FAILED,
        ChargeState.REFUNDED,
        "download_too_large",
    )
    message = presenter.failed[job.id]
    assert "more than this bot downloads (at most 2 KiB per video)" in message
    assert "Nothing was charged" in message
    assert presenter.delivered == {}
    assert leftovers(data_dir) == []


async def test_a_video_under_the_cap_downloads_into_an_owner_only_folder(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    job = await job_service(store).submit(request("small enough"))
    presenter = RecordingPresenter()
    data_dir = tmp_path / "data"
    async with VideoAPIClient(renderer.base_url, max_download_bytes=64 * MIB) as api:
        tracker = job_tracker(store, api, presenter, data_dir, poll_interval=0.2, min_poll_interval=0.05)
        async with asyncio.timeout(60):
            await tracker.run_until_idle()
        await tracker.stop()
    assert presenter.delivered[job.id][4:8] == b"ftyp"
    assert stat.S_IMODE((data_dir / "media").stat().st_mode) == 0o700


# --------------------------------------------------------------------------- bodies a renderer never sends


@pytest.fixture
async def odd_server() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """``/videos/chunked/content``: 64 KiB chunks without Content-Length, up to 8 MiB;
    ``/videos/huge/content``: a 10 MiB Content-Length. Counts the bytes each handler wrote."""
    written = {"chunked": 0, "huge": 0}

    async def content(request: web.Request) -> web.StreamResponse:
        name = request.match_info["id"]
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        if name == "huge":
            response.content_length = 10 * MIB
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"\0" * (64 * 1024)
        try:
            for _ in range(128):
                await response.write(chunk)
                written[name] += len(chunk)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client hung up: what this test wants
        return response

    app = web.Application()
    app.router.add_get("/videos/{id}/content", content)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", written
    finally:
        await runner.cleanup()


async def test_a_body_without_content_length_is_cut_at_the_cap(
    odd_server: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    base_url, written = odd_server
    dest = tmp_path / "media" / "job-1.mp4"
    async with VideoAPIClient(base_url, max_download_bytes=300 * 1024) as api:
        with pytest.raises(DownloadTooLarge) as caught:
            await api.download("chunked", dest)
        assert api.request_counts["GET content"] == 1  # not retried
    assert caught.value.limit == 300 * 1024 and caught.value.size is None
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    # The client stopped reading near the cap, far short of the 8 MiB on offer (the socket buffers
    # a little more than what was read).
    assert written["chunked"] < 8 * MIB


async def test_a_content_length_over_the_cap_is_refused_before_the_body_is_read(
    odd_server: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    base_url, _written = odd_server
    dest = tmp_path / "media" / "job-2.mp4"
    room_checks: list[int | None] = []
    async with VideoAPIClient(base_url, max_download_bytes=1 * MIB) as api:
        with pytest.raises(DownloadTooLarge) as caught:
            await api.download("huge", dest, check_room=room_checks.append)
        assert api.request_counts["GET content"] == 1
    assert caught.value.size == 10 * MIB
    assert room_checks == []  # refused before asking for disk space
    assert not dest.exists() and list(dest.parent.iterdir()) == []


# --------------------------------------------------------------------------- a full disk


async def test_a_full_disk_is_retried_with_growing_pauses_then_the_job_is_refunded(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    clock = FakeClock()
    checks: list[float] = []

    def full_disk(path: Path) -> DiskUsage:
        assert path.exists()
        checks.append(clock.now)
        return DiskUsage(total=100 * MIB, used=100 * MIB, free=0)

    data_dir = tmp_path / "data"
    presenter = RecordingPresenter()
    job = await job_service(store).submit(request("no room for this"))
    async with VideoAPIClient(renderer.base_url) as api:
        video_id = await finished_video(api, job.prompt)
        await store.update_job(job.id, status=JobStatus.DOWNLOADING, provider_video_id=video_id)
        api.request_counts.clear()
        tracker = job_tracker(store, api, presenter, data_dir, clock=clock, disk_usage=full_disk)
        retry_times: list[float] = []
        async with asyncio.timeout(60):
            while (stored := await store.get_job(job.id)) and stored.status is JobStatus.DOWNLOADING:
                await tracker.sweep()
                await settle(tracker)
                retry_at = tracker.retry_at(job.id)
                if retry_at is not None and retry_at not in retry_times:
                    retry_times.append(retry_at)
                # Sweeping more often than the backoff must not try more often.
                clock.now += 0.25
        await tracker.stop()
        assert "GET content" not in api.request_counts  # nothing was downloaded into a full disk
    assert len(checks) == MAX_STEP_FAILURES
    pauses = [later - earlier for earlier, later in itertools.pairwise(checks)]
    assert all(pause >= 1.0 for pause in pauses)  # never "on the next sweep" again
    assert pauses == sorted(pauses) and pauses[-1] > 2 * pauses[0]
    waits = [at - check for at, check in zip(retry_times, checks, strict=False)]
    assert waits == sorted(waits)
    stored = await store.get_job(job.id)
    assert stored is not None
    assert (stored.status, stored.charge_state, stored.error_code) == (
        JobStatus.FAILED,
        ChargeState.REFUNDED,
        "disk_full",
    )
    assert "disk was too full" in presenter.failed[job.id]
    assert leftovers(data_dir) == []


async def test_room_for_the_margin_but_not_the_file_refuses_before_writing_then_delivers(
    store: Store, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    """The announced size counts too; once space is freed, the retry (after its backoff) delivers."""
    clock = FakeClock()
    free = [FREE_SPACE_MARGIN_BYTES + 100]  # the pre-check passes, the file does not fit
    partials_seen: list[list[str]] = []
    data_dir = tmp_path / "data"

    def disk(path: Path) -> DiskUsage:
        media = data_dir / "media"
        partials_seen.append(sorted(os.listdir(media)) if media.is_dir() else [])
        return DiskUsage(total=10 * FREE_SPACE_MARGIN_BYTES, used=0, free=free[0])

    presenter = RecordingPresenter()
    job = await job_service(store).submit(request("fits after a clean-up"))
    async with VideoAPIClient(renderer.base_url) as api:
        video_id = await finished_video(api, job.prompt)
        await store.update_job(job.id, status=JobStatus.DOWNLOADING, provider_video_id=video_id)
        api.request_counts.clear()
        tracker = job_tracker(store, api, presenter, data_dir, clock=clock, disk_usage=disk)
        await tracker.sweep()
        await settle(tracker)
        assert api.request_counts["GET content"] == 1
        assert leftovers(data_dir) == []  # refused before the .part file was opened
        retry_at = tracker.retry_at(job.id)
        assert retry_at is not None and retry_at > clock.now
        await tracker.sweep()  # still backing off: no second request
        await settle(tracker)
        assert api.request_counts["GET content"] == 1
        free[0] = 10 * FREE_SPACE_MARGIN_BYTES
        clock.now = retry_at
        async with asyncio.timeout(30):
            while job.id not in presenter.delivered:
                await tracker.sweep()
                await settle(tracker)
        await tracker.stop()
        assert api.request_counts["GET content"] == 2
    stored = await store.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.COMPLETED
    assert presenter.delivered[job.id][4:8] == b"ftyp"
    assert all(not name.endswith(".part") for names in partials_seen for name in names)


class FlakyPresenter(RecordingPresenter):
    """Showing progress fails once (a Discord hiccup): the status step fails and backs off."""

    def __init__(self) -> None:
        super().__init__()
        self.failures_left = 1

    async def job_changed(self, job: Job) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("Discord hiccup")
        await super().job_changed(job)


async def test_a_webhook_event_for_a_job_backing_off_is_kept_for_its_retry(
    store: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    presenter = FlakyPresenter()
    job = await job_service(store).submit(request("event while backing off"))
    # A video that stays unfinished for the whole test: the event is what says "completed".
    config = LocalRendererConfig(generation_seconds=120, queue_seconds=0.0, fps=8, data_dir=tmp_path / "slow")
    async with (
        InstrumentedRenderer(config) as slow,
        VideoAPIClient(slow.base_url, backoff_initial=0.01) as api,
    ):
        video = await api.create(prompt=job.prompt, model="sora-2", size="720x1280", seconds=4)
        await store.update_job(job.id, status=JobStatus.QUEUED, provider_video_id=video.id)
        # Push mode with the safety sweep far away: after the first look, only events move the job.
        tracker = job_tracker(
            store, api, presenter, tmp_path / "data", clock=clock, push_mode=True, safety_interval=3600
        )
        await tracker.sweep()  # the first status look: showing it fails, the job backs off
        await settle(tracker)
        retry_at = tracker.retry_at(job.id)
        assert retry_at is not None
        tracker.notify_video_event(video.id)  # arrives while the job waits out its backoff
        await tracker.sweep()
        await settle(tracker)
        assert presenter.changes == []
        clock.now = retry_at
        await tracker.sweep()  # the retry applies the event that waited
        await settle(tracker)
        await tracker.stop()
    assert (job.id, "downloading", 100) in presenter.changes
