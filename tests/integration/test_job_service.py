"""Job use cases and the lifecycle against each real backend and the local renderer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.sql.credits import SqlCreditsRepository
from bot.adapters.sql.store import SqlStore
from bot.adapters.videoapi.client import VideoAPIClient
from bot.app import job_lifecycle, job_service, job_tracker
from bot.domain.credits import GuildPolicy
from bot.domain.errors import JobNotCancellable
from bot.domain.jobs import ChargeState, JobStatus
from bot.localapi import LocalRendererConfig
from bot.services.lifecycle import JobLifecycle
from tests.backends import Backend
from tests.fakes.provider import InstrumentedRenderer
from tests.integration.test_tracker import RecordingPresenter, request


async def audit_actions(store: SqlStore) -> list[tuple[str, int]]:
    rows = await store.fetchall("SELECT action, job_id FROM audit_log ORDER BY id")
    return [(str(a), int(j)) for a, j in rows]


async def test_a_lost_create_answer_is_adopted_once_and_never_another_jobs_video(
    tmp_path: Path, backend: Backend
) -> None:
    config = LocalRendererConfig(generation_seconds=0.5, queue_seconds=0.1, fps=8, poll_after_ms=50)
    async with (
        backend.open() as store,
        InstrumentedRenderer(config) as server,
        VideoAPIClient(server.base_url, backoff_initial=0.01) as api,
    ):
        async with store.transaction() as conn:
            await SqlCreditsRepository(store).set_policy(
                1, GuildPolicy(cooldown_seconds=0, max_concurrent=10), conn
            )
        service = job_service(store)
        # Another job already owns a video with the same request: it must not be adopted.
        owner = await service.submit(request("paid once"))
        theirs = await api.create(prompt="paid once", model="sora-2", size="720x1280", seconds=4)
        await store.update_job(owner.id, status=JobStatus.QUEUED, provider_video_id=theirs.id)
        lost = await service.submit(request("paid once"))
        # The provider makes the video, but its answer is lost (502 after processing).
        server.faults.add(status=502, method="POST", path_prefix="/v1/videos", after_processing=True)
        presenter = RecordingPresenter()
        tracker = job_tracker(
            store, api, presenter, tmp_path / "data", poll_interval=0.2, min_poll_interval=0.05
        )
        async with asyncio.timeout(60):
            await tracker.run_until_idle()
        await tracker.stop()
        posts = [r for r in server.requests if r.method == "POST"]
        assert len(posts) == 2  # our own create for "theirs", and the lost one: never sent again
        stored = await store.get_job(lost.id)
        assert stored is not None and stored.status is JobStatus.COMPLETED
        assert stored.provider_video_id not in (None, theirs.id)
        assert sorted(presenter.delivered) == [owner.id, lost.id]


async def test_cancel_refunds_audits_and_deletes_at_the_provider_once(backend: Backend) -> None:
    config = LocalRendererConfig(generation_seconds=60, queue_seconds=0.1, fps=8, poll_after_ms=50)
    async with (
        backend.open() as store,
        InstrumentedRenderer(config) as server,
        VideoAPIClient(server.base_url, backoff_initial=0.01) as api,
    ):
        lifecycle = job_lifecycle(store, api)
        service = job_service(store, lifecycle=lifecycle)
        job = await service.submit(request("stop me"))
        video = await api.create(prompt="stop me", model="sora-2", size="720x1280", seconds=4)
        await store.update_job(job.id, status=JobStatus.IN_PROGRESS, provider_video_id=video.id)

        cancelled = await service.cancel(job.id, actor_id=42)
        assert (cancelled.status, cancelled.charge_state) == (JobStatus.CANCELLED, ChargeState.REFUNDED)
        with pytest.raises(JobNotCancellable) as refused:
            await service.cancel(job.id, actor_id=42)
        assert (refused.value.job_id, refused.value.status) == (job.id, "cancelled")
        assert "nothing to cancel" in refused.value.user_message
        await lifecycle.close()
        deletes = [r for r in server.requests if r.method == "DELETE"]
        assert [r.path for r in deletes] == [f"/v1/videos/{video.id}"]
        assert await audit_actions(store) == [("job.submitted", job.id), ("job.cancelled", job.id)]


async def test_a_guild_that_charges_moderation_blocks_gets_a_charged_failure(backend: Backend) -> None:
    async with backend.open() as store:
        async with store.transaction() as conn:
            await SqlCreditsRepository(store).set_policy(1, GuildPolicy(charge_moderation_blocked=True), conn)
        lifecycle = job_lifecycle(store)
        service = job_service(store, lifecycle=lifecycle)
        blocked = await service.submit(request("blocked"))
        failed = await lifecycle.fail(blocked, "moderation_blocked", "declined")
        assert failed is not None and failed.charge_state is ChargeState.CHARGED
        assert await lifecycle.fail(blocked, "moderation_blocked", "declined") is None  # exactly once
        row = await store.fetchone("SELECT details FROM audit_log WHERE action = 'job.failed'")
        assert row is not None and json.loads(row[0]) == {"code": "moderation_blocked", "charged": True}


class AuditThatFailsOnce(SqlCreditsRepository):
    """The real audit log, except that the first record of ``action`` fails, as a full disk or a
    lost database connection would, after the job's own update was written."""

    def __init__(self, store: SqlStore, action: str) -> None:
        super().__init__(store)
        self.action = action
        self.failed = False

    async def audit(self, action: str, **record: Any) -> None:
        if action == self.action and not self.failed:
            self.failed = True
            raise OSError("disk I/O error")
        await super().audit(action, **record)


async def test_a_charge_and_its_audit_record_commit_together_or_not_at_all(backend: Backend) -> None:
    async with backend.open() as store:
        audit = AuditThatFailsOnce(store, "job.delivered")
        lifecycle = JobLifecycle(store, audit, audit)
        job = await job_service(store, lifecycle=lifecycle).submit(request("charged once"))
        await store.update_job(job.id, status=JobStatus.UPLOADING, provider_video_id="video_1")
        uploading = await store.get_job(job.id)
        assert uploading is not None
        with pytest.raises(OSError):
            await lifecycle.delivered(uploading, 77)
        # Nothing of the delivery stands: not charged, not recorded; the delivery can be retried.
        after = await store.get_job(job.id)
        assert after is not None
        assert (after.status, after.charge_state) == (JobStatus.UPLOADING, ChargeState.RESERVED)
        assert await audit_actions(store) == [("job.submitted", job.id)]
        delivered = await lifecycle.delivered(after, 77)
        assert delivered is not None and delivered.charge_state is ChargeState.CHARGED
        assert await audit_actions(store) == [("job.submitted", job.id), ("job.delivered", job.id)]
