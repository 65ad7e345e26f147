"""Jobs leased across processes: two stores on one database (two connections to one SQLite file,
or two pools on one PostgreSQL, as two processes would open them), each tracker working only the jobs it holds the lease of; one "dies" and the other
takes its jobs over once the leases lapse and delivers each of them exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.sql.credits import SqlCreditsRepository
from bot.adapters.sql.store import SqlStore
from bot.adapters.videoapi.client import VideoAPIClient
from bot.app import job_lifecycle, job_service, job_tracker
from bot.domain.credits import GuildPolicy
from bot.domain.jobs import ChargeState, JobStatus
from bot.services.leases import LeasedJobs, lease_owner_id
from bot.services.tracker import JobTracker
from tests.backends import Backend
from tests.fakes.provider import InstrumentedRenderer
from tests.helpers import wait_for
from tests.integration.test_tracker import RecordingPresenter, request

pytestmark = pytest.mark.timeout(60)

LEASE = 1.0


@pytest.fixture
def renderer_settings() -> dict[str, Any]:
    return {"generation_seconds": 1.5, "queue_seconds": 0.2, "fps": 6, "poll_after_ms": 100}


@pytest.fixture
async def stores(backend: Backend) -> AsyncIterator[tuple[SqlStore, SqlStore]]:
    """Two processes' stores on one database (SQLite file, or PostgreSQL)."""
    async with backend.open("shared") as first, backend.open("shared") as second:
        async with first.transaction() as conn:
            await SqlCreditsRepository(first).set_policy(
                1, GuildPolicy(cooldown_seconds=0, max_concurrent=10), conn
            )
        yield first, second


async def test_a_lease_is_held_by_one_owner_until_it_lapses_or_is_released(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    a, b = stores
    service = job_service(a)
    ids = [(await service.submit(request(f"leased {n}"))).id for n in range(3)]
    now = 1000.0
    taken = await a.lease_jobs("a", now=now, until=now + 30, renew_before=now + 20)
    assert [job.id for job in taken] == ids
    assert await b.lease_jobs("b", now=now + 1, until=now + 31, renew_before=now + 21) == []
    # Renewing: "a" still holds them; a lease well within its time is not rewritten.
    assert [j.id for j in await a.lease_jobs("a", now=now + 5, until=now + 35, renew_before=now + 25)] == ids
    # "a" stops renewing (it died): after the expiry "b" takes every one.
    later = now + 31
    assert [
        j.id for j in await b.lease_jobs("b", now=later, until=later + 30, renew_before=later + 20)
    ] == ids
    assert await a.lease_jobs("a", now=later, until=later + 30, renew_before=later + 20) == []
    assert set((await a.lease_holders()).values()) == {"b"}
    # A finished job leaves the leases; a released one is free for the next taker at once.
    await job_lifecycle(a).fail(taken[0], "x", "gone")
    assert await b.release_leases("b") == 2
    assert [
        j.id for j in await a.lease_jobs("a", now=later, until=later + 30, renew_before=later + 20)
    ] == ids[1:]


def test_the_owner_id_is_kept_in_the_data_dir(tmp_path: Path) -> None:
    first = lease_owner_id(tmp_path / "one")
    assert lease_owner_id(tmp_path / "one") == first  # a restart takes its own leases back at once
    assert lease_owner_id(tmp_path / "two") != first


def leased_tracker(
    store: SqlStore,
    api: VideoAPIClient,
    presenter: RecordingPresenter,
    data_dir: Path,
    owner: str,
    shard: int,
    **options: Any,
) -> tuple[JobTracker, LeasedJobs]:
    wake = asyncio.Event()
    leases = LeasedJobs(store, owner, lease_seconds=LEASE, shards=[shard], shard_count=2, on_taken=wake.set)
    tracker = job_tracker(
        store,
        api,
        presenter,
        data_dir,
        lifecycle=job_lifecycle(store, api),
        jobs=leases,
        wake_event=wake,
        poll_interval=0.3,
        min_poll_interval=0.05,
        housekeeping=[leases.renew_forever, *options.pop("housekeeping", [])],
        **options,
    )
    return tracker, leases


async def test_when_a_process_dies_the_other_takes_its_jobs_and_delivers_each_once(
    stores: tuple[SqlStore, SqlStore], renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    a, b = stores
    service = job_service(a)
    # Guild 1 is on shard 0 of 2 ((1 >> 22) % 2): process a's, the one its members' submits reach.
    ids = [(await service.submit(request(f"taken over {n}"))).id for n in range(4)]
    discord = RecordingPresenter()  # what both processes post to
    async with VideoAPIClient(renderer.base_url) as api_a, VideoAPIClient(renderer.base_url) as api_b:
        first, _ = leased_tracker(a, api_a, discord, tmp_path / "a", "a", shard=0)
        second, second_leases = leased_tracker(b, api_b, discord, tmp_path / "b", "b", shard=1)
        first.start()
        second.start()
        try:

            async def generating_at_a() -> bool:
                holders = await a.lease_holders()
                jobs = [await a.get_job(i) for i in ids]
                return set(holders.values()) == {"a"} and all(
                    j is not None and j.status in (JobStatus.QUEUED, JobStatus.IN_PROGRESS) for j in jobs
                )

            await wait_for(generating_at_a, "process a to take every job to the provider")
            assert second_leases.held == set()  # b works nothing while a's leases are renewed
            # Process a dies: it stops without giving its leases back.
            await first.stop()
            await wait_for(lambda: sorted(discord.delivered) == ids, "every job to be delivered", timeout=30)

            async def recorded() -> bool:
                jobs = [await a.get_job(i) for i in ids]
                return all(job is not None and job.status is JobStatus.COMPLETED for job in jobs)

            await wait_for(recorded, "every delivery to be recorded")  # just after the post
        finally:
            await first.stop()
            await second.stop()
    # Process b finished every one (a finished job keeps the lease it was finished under).
    owners = await a.fetchall("SELECT id, lease_owner FROM jobs ORDER BY id")
    assert [(int(row[0]), row[1]) for row in owners] == [(i, "b") for i in ids]
    for job_id in ids:
        job = await a.get_job(job_id)
        assert job is not None
        assert (job.status, job.charge_state) == (JobStatus.COMPLETED, ChargeState.CHARGED)
    charged = await a.fetchall(
        "SELECT job_id, count(*) FROM audit_log WHERE action = 'job.delivered' GROUP BY job_id"
    )
    assert {int(row[0]): int(row[1]) for row in charged} == dict.fromkeys(ids, 1)
    # Each job was made once at the provider: a takeover adopts the video, it does not re-submit.
    creates = [r for r in renderer.requests if r.method == "POST" and r.path == "/v1/videos"]
    assert len(creates) == len(ids)


async def test_a_new_job_goes_to_the_process_of_its_guilds_shard_first(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    a, _ = stores
    on_shard_1 = 1 << 22  # (guild_id >> 22) % 2 == 1
    job = await job_service(a).submit(request("shard one", guild_id=on_shard_1))
    now = job.created_at + 1
    mine = await a.lease_jobs(
        "a", now=now, until=now + 30, renew_before=now + 20, shards=[0], shard_count=2, others_after=30
    )
    assert mine == []
    # Shard 1's process would have taken it at once; when it did not, anyone takes it after the wait.
    later = job.created_at + 31
    taken = await a.lease_jobs(
        "a", now=later, until=later + 30, renew_before=later + 20, shards=[0], shard_count=2, others_after=30
    )
    assert [j.id for j in taken] == [job.id]


async def test_a_job_changed_by_another_process_is_read_afresh_and_the_rest_come_from_the_last_look(
    stores: tuple[SqlStore, SqlStore],
) -> None:
    """The holder keeps the jobs of its last look and re-reads only rows whose revision moved: a
    change made through the other process's connection (a moderator's cancel there) is seen at
    once, and an unchanged job is the very object of the last look."""
    a, b = stores
    ids = [(await job_service(a).submit(request(f"revised {n}"))).id for n in range(3)]
    now = 1000.0
    first = await a.lease_jobs("a", now=now, until=now + 30, renew_before=now + 20)
    assert [job.id for job in first] == ids
    changed = await job_lifecycle(b).submitting(first[1])
    assert changed is not None and changed.status is JobStatus.SUBMITTING
    second = await a.lease_jobs("a", now=now + 1, until=now + 31, renew_before=now + 21)
    assert [job.status for job in second] == [JobStatus.PENDING, JobStatus.SUBMITTING, JobStatus.PENDING]
    assert second[0] is first[0] and second[2] is first[2]
    assert second[1] == changed
    # Cancelled through the other process: it leaves the holder's jobs.
    await job_lifecycle(b).cancel(changed.id, actor_id=9)
    assert [
        job.id for job in await a.lease_jobs("a", now=now + 2, until=now + 32, renew_before=now + 22)
    ] == [
        ids[0],
        ids[2],
    ]


async def test_leases_come_due_together_and_a_look_with_nothing_due_leaves_the_write_lock_alone(
    backend: Backend, stores: tuple[SqlStore, SqlStore]
) -> None:
    a, b = stores
    service = job_service(a)
    early = (await service.submit(request("early"))).id
    now = 1000.0
    await a.lease_jobs("a", now=now, until=now + 30, renew_before=now + 20)
    late = (await service.submit(request("late"))).id
    await a.lease_jobs("a", now=now + 5, until=now + 35, renew_before=now + 25)
    expiry = "SELECT id, lease_expires_at FROM jobs ORDER BY id"
    # Taking the late one renewed the early one with it: held leases come due together, so they
    # are renewed in one write now and then, not one job at a time at every other look.
    assert [(int(r[0]), float(r[1])) for r in await a.fetchall(expiry)] == [
        (early, now + 35),
        (late, now + 35),
    ]
    await a.lease_jobs("a", now=now + 16, until=now + 46, renew_before=now + 36)
    assert [(int(r[0]), float(r[1])) for r in await a.fetchall(expiry)] == [
        (early, now + 46),
        (late, now + 46),
    ]
    if backend.kind != "sqlite":
        return
    # SQLite has one write lock. With another process holding it (a long submission), a look that
    # has nothing to take or renew still answers: it needs only a read.
    async with b.transaction() as held:
        await b.execute("UPDATE meta SET value = value WHERE key = 'nothing'", tx=held)
        looked = await asyncio.wait_for(
            a.lease_jobs("a", now=now + 17, until=now + 47, renew_before=now + 37), timeout=10
        )
    assert [job.id for job in looked] == [early, late]
