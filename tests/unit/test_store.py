from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from bot.adapters.postgres.store import PostgresStore
from bot.adapters.sqlite.store import Store
from bot.domain.errors import ConfigError
from bot.domain.jobs import ChargeState, JobChanges, JobRequest, JobStatus
from tests.backends import PASSWORD, Backend, PostgresServer


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


async def test_job_round_trip_and_active_list(backend: Backend) -> None:
    async with backend.open() as store:
        job_id = await store.insert_job(request(prompt="snow"))
        job = await store.get_job(job_id)
        assert job is not None
        assert (job.status, job.charge_state, job.prompt) == (JobStatus.PENDING, ChargeState.RESERVED, "snow")
        await store.update_job(job_id, status=JobStatus.COMPLETED)
        other = await store.insert_job(request())
        assert [j.id for j in await store.active_jobs()] == [other]


async def test_transition_is_a_compare_and_set_across_two_stores(backend: Backend) -> None:
    """Ten racing transitions on each of two stores (two processes' connections or pools on one
    database): one wins (on PostgreSQL the row lock, ``FOR UPDATE``, makes it fleet-wide)."""
    async with backend.open() as first, backend.open() as second:
        job_id = await first.insert_job(request())
        results = await asyncio.gather(
            *(
                store.transition(
                    job_id,
                    expect=(JobStatus.PENDING,),
                    changes=JobChanges(status=JobStatus.FAILED, error_code=str(n)),
                )
                for n, store in enumerate([first, second] * 10)
            )
        )
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        stored = await second.get_job(job_id)
        assert stored is not None and stored.error_code == winners[0].error_code


async def test_jobs_survive_reopening_the_database(backend: Backend) -> None:
    async with backend.open() as store:
        job_id = await store.insert_job(request(interaction_token="tok", token_expires_at=123.0))
        await store.update_job(
            job_id, provider_video_id="video_abc", status=JobStatus.IN_PROGRESS, progress=30
        )
    async with backend.open() as store:
        (job,) = await store.active_jobs()
        assert (job.id, job.provider_video_id, job.progress, job.interaction_token) == (
            job_id,
            "video_abc",
            30,
            "tok",
        )


async def test_meta(backend: Backend) -> None:
    async with backend.open() as store:
        assert await store.get_meta("k") is None
        await store.set_meta("k", "1")
        await store.set_meta("k", "2")
        assert await store.get_meta("k") == "2"


async def test_postgresql_migrations_run_once_when_processes_start_together(
    postgres_server: PostgresServer,
) -> None:
    url = await postgres_server.new_database()
    # An empty database (the template is migrated already): drop what the template brought.
    async with PostgresStore.open(url) as store, store.transaction() as tx:
        await store.execute("DROP SCHEMA public CASCADE", tx=tx)
        await store.execute("CREATE SCHEMA public", tx=tx)
    stores = await asyncio.gather(*(PostgresStore.connect(url) for _ in range(4)))
    try:
        versions = {await store.schema_version() for store in stores}
        rows = await stores[0].fetchall("SELECT version FROM schema_migrations ORDER BY version")
        assert len(versions) == 1 and [r[0] for r in rows] == sorted({r[0] for r in rows})
        assert versions == {rows[-1][0]}
    finally:
        for store in stores:
            await store.close()


async def test_the_postgresql_password_never_shows(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    if backend.kind == "sqlite":
        return
    url = await backend.url()
    assert PASSWORD in url
    caplog.set_level(logging.DEBUG)
    async with PostgresStore.open(url) as store:
        shown = f"{store!r} {store.describe()}"
    assert PASSWORD not in shown and "127.0.0.1" in shown
    assert PASSWORD not in caplog.text
    with pytest.raises(
        ConfigError, match=r"DATABASE_URL: PostgreSQL at postgres@127\.0\.0\.1:1/x"
    ) as refused:
        await PostgresStore.connect(f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/x")
    assert PASSWORD not in str(refused.value)
