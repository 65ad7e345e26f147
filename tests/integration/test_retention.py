"""Finding 9: what the bot stops keeping (tokens, files, prompts, audit records, grants), and the
owner-only modes of DATA_DIR and the database. Both real backends and real files on disk; the
clocks are the store's and the service's own parameters."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.sql.credits import SqlCreditsRepository
from bot.adapters.sql.store import SqlStore
from bot.adapters.sqlite.store import Store
from bot.app import credits_service, job_lifecycle, job_service, job_tracker, retention_service
from bot.domain.catalog import default_catalog
from bot.domain.credits import GuildPolicy
from bot.domain.errors import UserError
from bot.domain.jobs import ChargeState, JobStatus, Requester
from bot.services.retention import PROMPT_REMOVED, RetentionPolicy, RetentionService, make_private_dir
from bot.settings import Settings
from tests.backends import Backend
from tests.integration.test_tracker import RecordingPresenter, request

DAY = 86400.0
NOW = time.time()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[SqlStore]:
    async with backend.open() as db:
        async with db.transaction() as conn:
            await SqlCreditsRepository(db).set_policy(1, GuildPolicy(max_concurrent=10), conn)
        yield db


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def finished(store: SqlStore, prompt: str, *, days_ago: float, **changes: object) -> int:
    """A job that finished ``days_ago`` (its submission audited as the product does)."""
    job = await job_service(store).submit(request(prompt, **changes))
    lifecycle = job_lifecycle(store, clock=lambda: NOW - days_ago * DAY)
    await lifecycle.fail(job, "server_error", f"the provider broke while making {prompt!r}")
    return job.id


def touch(path: Path, *, days_ago: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    stamp = NOW - days_ago * DAY
    os.utime(path, (stamp, stamp))
    return path


# --------------------------------------------------------------------------- tokens


async def test_expired_interaction_tokens_are_cleared_on_every_job(store: SqlStore, tmp_path: Path) -> None:
    service = job_service(store)
    expired_active = await service.submit(request("a", interaction_token="tok-a", token_expires_at=NOW - 1))
    fresh_active = await service.submit(request("b", interaction_token="tok-b", token_expires_at=NOW + 600))
    expired_done = await finished(
        store, "c", days_ago=0, interaction_token="tok-c", token_expires_at=NOW - 60
    )
    report = await RetentionService(store, tmp_path / "data", clock=lambda: NOW).run_once()
    assert report.tokens_cleared == 2
    tokens = {
        row[0]: row[1] for row in await store.fetchall("SELECT id, interaction_token FROM jobs ORDER BY id")
    }
    assert tokens == {expired_active.id: None, fresh_active.id: "tok-b", expired_done: None}
    # The active job is untouched otherwise: still pending, still reserved.
    job = await store.get_job(expired_active.id)
    assert job is not None and (job.status, job.charge_state) == (JobStatus.PENDING, ChargeState.RESERVED)


# --------------------------------------------------------------------------- job details


async def test_old_prompts_and_errors_are_removed_but_credits_add_up_the_same(
    store: SqlStore, tmp_path: Path
) -> None:
    old = await finished(store, "an old secret prompt", days_ago=100)
    recent = await finished(store, "a recent prompt", days_ago=10)
    active = await job_service(store).submit(request("still running"))
    credits = credits_service(store)
    before, _ = await credits.balance(1, 3)
    report = await RetentionService(store, tmp_path / "data", clock=lambda: NOW).run_once()
    assert report.job_details_pruned == 1
    old_job, recent_job, active_job = [await store.get_job(i) for i in (old, recent, active.id)]
    assert old_job is not None and recent_job is not None and active_job is not None
    assert (old_job.prompt, old_job.error_message, old_job.error_code) == (
        PROMPT_REMOVED,
        None,
        "server_error",
    )
    assert (old_job.cost, old_job.status, old_job.charge_state) == (4, JobStatus.FAILED, ChargeState.REFUNDED)
    assert recent_job.prompt == "a recent prompt" and recent_job.error_message
    assert active_job.prompt == "still running"
    after, _ = await credits.balance(1, 3)
    assert after == before
    audit = await SqlCreditsRepository(store).audit_entries(1, limit=100)
    submitted = {entry["job_id"]: entry["details"] for entry in audit if entry["action"] == "job.submitted"}
    assert "prompt" not in submitted[old] and submitted[old]["cost"] == 4
    assert submitted[recent]["prompt"] == "a recent prompt"
    dump = json.dumps([dict(r) for r in await store.fetchall("SELECT * FROM jobs")])
    dump += json.dumps([dict(r) for r in await store.fetchall("SELECT * FROM audit_log")])
    assert "old secret" not in dump and "provider broke while making 'an old" not in dump
    # A second pass has nothing left to do.
    again = await RetentionService(store, tmp_path / "data", clock=lambda: NOW).run_once()
    assert again.job_details_pruned == 0


async def test_again_on_a_job_whose_details_or_image_were_pruned_says_why(
    store: SqlStore, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    reference = touch(data_dir / "references" / "1-old.png", days_ago=30)
    old = await finished(store, "pruned", days_ago=100, reference_image_path=str(reference))
    imaged = await finished(store, "kept prompt", days_ago=30, reference_image_path=str(reference))
    await RetentionService(store, data_dir, clock=lambda: NOW).run_once()
    assert not reference.exists()
    service = job_service(store, catalog=default_catalog())
    requester = Requester(guild_id=1, channel_id=2, user_id=3, user_name="ana")
    source = await store.get_job(old)
    assert source is not None
    with pytest.raises(UserError, match=rf"prompt of job #{old} is no longer stored"):
        await service.again_request(source, requester)
    source = await store.get_job(imaged)
    assert source is not None
    with pytest.raises(UserError, match=rf"starting image of job #{imaged} is no longer stored"):
        await service.again_request(source, requester)


# --------------------------------------------------------------------------- audit and grants


async def test_audit_records_and_grants_past_their_retention_are_deleted(
    tmp_path: Path, backend: Backend
) -> None:
    clock = Clock(NOW - 400 * DAY)
    async with backend.open(clock=clock) as store:
        credits = credits_service(store, clock=clock)
        await credits.grant(1, actor_id=9, user_id=3, roles=(), credits=5)
        clock.now = NOW - 2 * DAY
        await credits.grant(1, actor_id=9, user_id=3, roles=(), credits=7)
        clock.now = NOW
        policy = RetentionPolicy(audit_days=365)
        report = await RetentionService(store, tmp_path / "data", policy, clock=clock).run_once()
        assert (report.audit_records_deleted, report.grants_deleted) == (1, 1)
        grants = [row[0] for row in await store.fetchall("SELECT credits FROM grants")]
        audit = await SqlCreditsRepository(store).audit_entries(1)
        assert grants == [7]
        assert [entry["details"]["credits"] for entry in audit] == [7]
        # 0 keeps them forever.
        kept = RetentionService(
            store, tmp_path / "data", RetentionPolicy(audit_days=0), clock=lambda: NOW * 2
        )
        assert (await kept.run_once()).audit_records_deleted == 0


def test_an_audit_retention_shorter_than_a_credit_period_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 days"):
        Settings(audit_retention_days=30, _env_file=None)  # type: ignore[call-arg]
    assert Settings(audit_retention_days=0, _env_file=None).audit_retention_days == 0  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (
        defaults.max_download_bytes,
        defaults.media_retention_days,
        defaults.job_details_retention_days,
        defaults.audit_retention_days,
    ) == (512 * 1024 * 1024, 7, 90, 365)


# --------------------------------------------------------------------------- files


async def test_files_of_jobs_finished_past_the_retention_are_deleted(store: SqlStore, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    media, refs = data_dir / "media", data_dir / "references"
    shared_ref = touch(refs / "100-shared.png", days_ago=20)
    old_ref = touch(refs / "100-old.png", days_ago=20)
    old = await finished(store, "old", days_ago=10, reference_image_path=str(old_ref))
    await finished(store, "old, same image", days_ago=10, reference_image_path=str(shared_ref))
    # An Again of that job, still running, uses the same image.
    running = await job_service(store).submit(request("again", reference_image_path=str(shared_ref)))
    recent = await finished(store, "recent", days_ago=1)
    old_files = [
        touch(media / f"job-{old}.mp4", days_ago=10),
        touch(media / f"job-{old}.fit-8388608.mp4", days_ago=10),
        touch(media / f"video-{old}.thumb.webp", days_ago=10),
        touch(media / "job-99999.mp4.part", days_ago=10),  # a job this database never had
    ]
    kept_files = [
        touch(media / f"job-{recent}.mp4", days_ago=1),
        touch(media / f"job-{running.id}.mp4", days_ago=10),  # written long ago, job still active
        touch(media / "job-88888.mp4", days_ago=0),  # too fresh to be anybody's leftover
        touch(media / "notes.txt", days_ago=100),  # not the bot's naming: not the bot's to delete
        touch(refs / "200-being-prepared.png", days_ago=0),
        shared_ref,
    ]
    report = await RetentionService(
        store, data_dir, RetentionPolicy(media_days=7), clock=lambda: NOW
    ).run_once()
    assert (report.media_files_deleted, report.reference_images_deleted) == (4, 1)
    assert [p.name for p in [*old_files, old_ref] if p.exists()] == []
    assert [p.name for p in kept_files if not p.exists()] == []
    old_job = await store.get_job(old)
    assert old_job is not None and old_job.status is JobStatus.FAILED  # the row stays
    # Forever means forever.
    forever = RetentionService(store, data_dir, RetentionPolicy(media_days=0), clock=lambda: NOW + 999 * DAY)
    assert (await forever.run_once()).media_files_deleted == 0


async def test_retention_runs_when_the_tracker_starts_and_stops_with_it(
    store: SqlStore, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    await job_service(store).submit(request("x", interaction_token="tok", token_expires_at=NOW - 1))
    settings = Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
    retention = retention_service(store, settings)
    tracker = job_tracker(
        store, _NoProvider(), RecordingPresenter(), data_dir, housekeeping=[retention.run_forever]
    )
    tracker.start()
    try:
        async with asyncio.timeout(20):
            while retention.passes == 0:  # noqa: ASYNC110 - the pass has no event to wait on
                await asyncio.sleep(0.01)
    finally:
        await tracker.stop()
    row = await store.fetchone("SELECT interaction_token FROM jobs")
    assert row is not None and row[0] is None
    assert mode(data_dir) == 0o700


class _NoProvider:
    """A provider that is never reached: the job stays pending while the tracker sleeps."""

    last_poll_after = None
    supports_list = None

    def __getattr__(self, name: str) -> object:
        async def unavailable(*args: object, **kwargs: object) -> object:
            await asyncio.Event().wait()  # hangs until the tracker is stopped
            raise AssertionError("unreachable")

        return unavailable


# --------------------------------------------------------------------------- file modes


async def test_the_database_and_its_side_files_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "bot.db"
    previous = os.umask(0)
    try:
        async with Store.open(path) as store:
            await store.set_meta("k", "v")  # WAL mode: -wal and -shm exist now
            assert mode(path) == 0o600
            assert mode(path.with_name("bot.db-wal")) == 0o600
            assert mode(path.with_name("bot.db-shm")) == 0o600
            assert mode(path.parent) == 0o700  # a folder the store created
    finally:
        os.umask(previous)


async def test_an_existing_world_readable_database_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with Store.open(path) as store:
        await store.set_meta("k", "v")
    for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
        if (tmp_path / name).exists():
            os.chmod(tmp_path / name, 0o644)
    async with Store.open(path) as store:
        assert await store.get_meta("k") == "v"
        for name in ("bot.db", "bot.db-wal", "bot.db-shm"):
            if (tmp_path / name).exists():
                assert mode(tmp_path / name) == 0o600, name


def test_data_dir_and_its_folders_become_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "media").mkdir(parents=True)
    (data_dir / "references").mkdir()
    for folder in (data_dir, data_dir / "media", data_dir / "references"):
        os.chmod(folder, 0o755)
    make_private_dir(data_dir)
    assert [mode(f) for f in (data_dir, data_dir / "media", data_dir / "references")] == [0o700] * 3
    fresh = tmp_path / "new" / "data"
    previous = os.umask(0)
    try:
        make_private_dir(fresh)
    finally:
        os.umask(previous)
    assert mode(fresh) == 0o700
