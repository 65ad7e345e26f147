"""Wake-ups across processes on PostgreSQL (``LISTEN/NOTIFY``): a provider webhook received by one
process reaches the process that works the job at once. Both trackers run in push mode with a
safety sweep far beyond the test, so only the wake-up can make the job move."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.postgres.notify import PostgresWakeupBus
from bot.adapters.postgres.store import PostgresStore
from bot.adapters.sql.credits import SqlCreditsRepository
from bot.adapters.videoapi.client import VideoAPIClient
from bot.app import job_service
from bot.domain.credits import GuildPolicy
from bot.domain.jobs import JobStatus
from bot.services.wakeups import FleetWakeups
from tests.backends import PostgresServer
from tests.fakes.provider import InstrumentedRenderer
from tests.helpers import wait_for
from tests.integration.test_leases import leased_tracker
from tests.integration.test_tracker import RecordingPresenter, request

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def renderer_settings() -> dict[str, Any]:
    return {"generation_seconds": 0.3, "queue_seconds": 0.1, "fps": 6, "poll_after_ms": 100}


@pytest.fixture
async def stores(postgres_server: PostgresServer) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    url = await postgres_server.new_database()
    async with PostgresStore.open(url, pool_size=3) as first, PostgresStore.open(url, pool_size=3) as second:
        async with first.transaction() as conn:
            await SqlCreditsRepository(first).set_policy(
                1, GuildPolicy(cooldown_seconds=0, max_concurrent=10), conn
            )
        yield first, second


async def test_messages_reach_the_other_processes_not_the_sender(
    stores: tuple[PostgresStore, PostgresStore],
) -> None:
    heard: dict[str, list[object]] = {"a": [], "b": []}
    fleet = {name: FleetWakeups(PostgresWakeupBus(store)) for name, store in zip("ab", stores, strict=True)}
    for name, wakeups in fleet.items():
        wakeups.deliver_to(
            lambda name=name: heard[name].append("wake"),  # type: ignore[misc]
            lambda video, event, name=name: heard[name].append((video, event)),  # type: ignore[misc]
        )
    listeners = [asyncio.create_task(w.listen_forever()) for w in fleet.values()]
    try:
        # Until both listen: a wake-up sent before then is simply not heard (the sweeps cover it).
        async def b_listens() -> bool:
            fleet["a"].job_changed()
            return fleet["b"].received > 0

        await wait_for(b_listens, "process b to hear process a", interval=0.1)
        heard["a"].clear()
        heard["b"].clear()
        fleet["b"].received = 0
        fleet["a"].video_event("video_123", "video.completed")
        await wait_for(lambda: ("video_123", "video.completed") in heard["b"], "the webhook to reach b")
        # The sender acted locally once and did not hear itself.
        assert heard["a"] == [("video_123", "video.completed")]
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)


async def test_a_webhook_received_by_another_process_moves_the_job_where_it_is_worked(
    stores: tuple[PostgresStore, PostgresStore], renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    a, b = stores
    job = await job_service(a).submit(request("pushed elsewhere"))  # guild 1: shard 0, process a
    discord = RecordingPresenter()
    wakeups = {name: FleetWakeups(PostgresWakeupBus(store)) for name, store in (("a", a), ("b", b))}
    async with VideoAPIClient(renderer.base_url) as api_a, VideoAPIClient(renderer.base_url) as api_b:
        push = {"push_mode": True, "safety_interval": 3600.0}
        first, _ = leased_tracker(
            a,
            api_a,
            discord,
            tmp_path / "a",
            "a",
            shard=0,
            housekeeping=[wakeups["a"].listen_forever],
            **push,
        )
        second, _ = leased_tracker(
            b,
            api_b,
            discord,
            tmp_path / "b",
            "b",
            shard=1,
            housekeeping=[wakeups["b"].listen_forever],
            **push,
        )
        for name, tracker in (("a", first), ("b", second)):
            wakeups[name].deliver_to(tracker.wake, tracker.notify_video_event)
        first.start()
        second.start()
        try:

            async def at_provider() -> str | None:
                current = await a.get_job(job.id)
                return current.provider_video_id if current and current.status is JobStatus.QUEUED else None

            video_id = await wait_for(at_provider, "process a to submit the job")

            async def finished_at_provider() -> bool:
                return (await api_b.retrieve(video_id)).status == "completed"

            await wait_for(finished_at_provider, "the provider to finish the video", interval=0.1)
            assert discord.delivered == {}  # nobody polls: the video waits for its webhook

            # The webhook lands on process b, which does not work this job.
            async def delivered() -> bool:
                wakeups["b"].video_event(video_id, "video.completed")  # resent until a listens
                return job.id in discord.delivered

            await wait_for(delivered, "process a to deliver on b's webhook", interval=0.2)
        finally:
            await first.stop()
            await second.stop()
    stored = await a.get_job(job.id)
    assert stored is not None and stored.status in (JobStatus.UPLOADING, JobStatus.COMPLETED)
    owners = await a.fetchall("SELECT lease_owner FROM jobs WHERE id = ?", (job.id,))
    assert owners[0][0] == "a"
