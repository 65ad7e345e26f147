"""The real bot process on PostgreSQL (``DATABASE_URL=postgresql://…``): it names the database
without the password, delivers a video and charges it once, and keeps the command-sync hash there."""

from __future__ import annotations

from bot.adapters.postgres.store import PostgresStore
from bot.discord.bot import COMMAND_HASH_KEY
from bot.domain.jobs import ChargeState, Job, JobStatus
from tests.backends import PASSWORD, PostgresServer
from tests.e2e.conftest import BotProcess, is_final, mp4_uploads
from tests.fakes.discord import FakeDiscord
from tests.helpers import READY, wait_for


async def test_the_bot_runs_on_postgresql_and_never_shows_its_password(
    bot: BotProcess, fake: FakeDiscord, postgres_server: PostgresServer
) -> None:
    url = await postgres_server.new_database()
    bot.env = {"DATABASE_URL": url, "LOG_LEVEL": "DEBUG"}
    await bot.start()
    await bot.wait_log("database: PostgreSQL postgres@127.0.0.1:")
    mark = fake.mark()
    handle = await fake.invoke_command("video", {"prompt": "a heron on a post", "seconds": 4})
    await handle.original_message(timeout=60, predicate=is_final(READY))
    assert len(mp4_uploads(fake, mark)) == 1

    async with PostgresStore.open(url) as store:

        async def settled() -> Job | None:
            (row,) = await store.fetchall("SELECT id FROM jobs")
            job = await store.get_job(int(row[0]))
            return job if job is not None and job.status is JobStatus.COMPLETED else None

        job = await wait_for(settled, "the job recorded as completed in PostgreSQL")
        assert (job.charge_state, job.prompt) == (ChargeState.CHARGED, "a heron on a post")
        # The command-sync hash is in the database too: any process of the fleet sees it.
        assert await store.get_meta(COMMAND_HASH_KEY) is not None
    await bot.stop()
    assert PASSWORD not in bot.log()
    assert not bot.database.exists()  # nothing went to the SQLite default
