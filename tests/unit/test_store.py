from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from bot.adapters.sqlite.store import Store
from bot.domain.jobs import ChargeState, JobChanges, JobRequest, JobStatus


def request(**changes: object) -> JobRequest:
    base: dict[str, object] = {
        "guild_id": 1,
        "channel_id": 2,
        "user_id": 3,
        "user_name": "ana",
        "prompt": "a fox",
        "model": "sora-2",
        "size": "720x1280",
        "seconds": 4,
        "cost": 4,
        "usd": 0.4,
    }
    base.update(changes)
    return JobRequest(**base)  # type: ignore[arg-type]


async def test_migrations_create_a_wal_database_with_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "bot.db"
    async with Store.open(path) as store:
        assert await store.schema_version() >= 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "meta"} <= tables
    # Opening again applies nothing twice.
    async with Store.open(path) as store:
        assert await store.schema_version() >= 1


async def test_job_round_trip_and_active_list(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "bot.db") as store:
        job_id = await store.insert_job(request(prompt="snow"))
        job = await store.get_job(job_id)
        assert job is not None
        assert (job.status, job.charge_state, job.prompt) == (JobStatus.PENDING, ChargeState.RESERVED, "snow")
        await store.update_job(job_id, status=JobStatus.COMPLETED)
        other = await store.insert_job(request())
        assert [j.id for j in await store.active_jobs()] == [other]


async def test_transition_is_a_compare_and_set(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "bot.db") as store:
        job_id = await store.insert_job(request())
        results = await asyncio.gather(
            *(
                store.transition(
                    job_id,
                    expect=(JobStatus.PENDING,),
                    changes=JobChanges(status=JobStatus.FAILED, error_code=str(n)),
                )
                for n in range(10)
            )
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        stored = await store.get_job(job_id)
        assert stored is not None and stored.error_code == winners[0].error_code


async def test_jobs_survive_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with Store.open(path) as store:
        job_id = await store.insert_job(request(interaction_token="tok", token_expires_at=123.0))
        await store.update_job(
            job_id, provider_video_id="video_abc", status=JobStatus.IN_PROGRESS, progress=30
        )
    async with Store.open(path) as store:
        (job,) = await store.active_jobs()
        assert (job.id, job.provider_video_id, job.progress, job.interaction_token) == (
            job_id,
            "video_abc",
            30,
            "tok",
        )


async def test_meta(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "bot.db") as store:
        assert await store.get_meta("k") is None
        await store.set_meta("k", "1")
        await store.set_meta("k", "2")
        assert await store.get_meta("k") == "2"
