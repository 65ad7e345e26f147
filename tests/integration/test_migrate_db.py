"""``videobot migrate-db --to postgresql://…``: a SQLite installation copied to PostgreSQL, as an
operator runs it (the real command in a subprocess), and read back through the repositories."""

from __future__ import annotations

from pathlib import Path

from bot.adapters.postgres.store import PostgresStore
from bot.adapters.sql.credits import SqlCreditsRepository
from bot.adapters.sql.store import SqlStore
from bot.adapters.sql.webhook_events import WebhookEventLog
from bot.adapters.sqlite.store import Store
from bot.app import credits_service, job_lifecycle, job_service
from bot.domain.credits import GuildPolicy, RoleOverride
from bot.domain.jobs import JobStatus
from tests.backends import PASSWORD, PostgresServer
from tests.integration.test_cli import videobot
from tests.integration.test_credits import GUILD, USER, request


async def seed(store: SqlStore) -> list[int]:
    credits = SqlCreditsRepository(store)
    async with store.transaction() as tx:
        await credits.set_policy(GUILD, GuildPolicy(allowance=40, cooldown_seconds=0, max_concurrent=9), tx)
        await credits.set_role_override(GUILD, RoleOverride(77, allowance=50), tx)
        await credits.set_member_allowance(GUILD, USER, 30, tx)
        await credits.add_grant(GUILD, USER, 5, granted_by=1, conn=tx)
    service = job_service(store)
    first = await service.submit(request(cost=4, interaction_token="tok", token_expires_at=1e10))
    second = await service.submit(request(cost=8))
    await job_lifecycle(store).fail(second, "server_error", "broke")
    await store.update_job(first.id, status=JobStatus.IN_PROGRESS, provider_video_id="video_1", progress=40)
    await store.set_meta("command_hash", "abc")
    await WebhookEventLog(store, window_seconds=600).claim("msg_1")
    return [first.id, second.id]


async def test_migrate_db_copies_everything_and_refuses_a_non_empty_target(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    async with Store.open(tmp_path / "bot.db") as sqlite:
        ids = await seed(sqlite)
        jobs_before = [await sqlite.get_job(job_id) for job_id in ids]
        balance_before, _ = await credits_service(sqlite).balance(GUILD, USER, [77])
        audit_before = await SqlCreditsRepository(sqlite).audit_entries(GUILD)
    url = await postgres_server.new_database()

    result = videobot("migrate-db", "--to", url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "jobs: 2 rows" in result.stdout and "audit_log: 3 rows" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr

    async with PostgresStore.open(url) as pg:
        assert [await pg.get_job(job_id) for job_id in ids] == jobs_before
        assert (await credits_service(pg).balance(GUILD, USER, [77]))[0] == balance_before
        assert await SqlCreditsRepository(pg).audit_entries(GUILD) == audit_before
        assert await pg.get_meta("command_hash") == "abc"
        assert not await WebhookEventLog(pg, window_seconds=600).claim("msg_1")  # still a replay
        # The job numbers continue after the copied ones.
        assert await pg.insert_job(request()) == max(ids) + 1

    again = videobot("migrate-db", "--to", url, cwd=tmp_path)
    assert again.returncode != 0
    assert "is not empty: " in again.stderr and "jobs (3 rows)" in again.stderr
    assert PASSWORD not in again.stdout + again.stderr


def test_migrate_db_help_says_what_it_copies_and_refuses(tmp_path: Path) -> None:
    result = videobot("migrate-db", "--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("usage: videobot migrate-db")
    for text in ("--to", "DATABASE_URL", "empty PostgreSQL", "Refuses a target"):
        assert text in result.stdout


async def test_check_names_the_postgresql_database_but_never_its_password(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = await postgres_server.new_database()
    result = videobot("check", cwd=tmp_path, env={"DATABASE_URL": url, "LOG_LEVEL": "DEBUG"})
    assert "[ok] database: PostgreSQL postgres@127.0.0.1:" in result.stdout, result.stdout
    assert "(schema version" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
