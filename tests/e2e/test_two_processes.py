"""Two real bot processes on one PostgreSQL database, one gateway shard each (README, "Running more than one
process"). One guild lives on each shard; the process of shard 0 is SIGKILLed while its guild's
videos generate. The survivor takes its jobs over once their leases lapse, and every job of both
guilds is delivered exactly once and charged exactly once; the fleet synced its commands once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.backends import PostgresServer
from tests.e2e.conftest import COMMANDS_ROUTE, BotProcess, hold, is_final, mp4_uploads, release
from tests.e2e.databases import SharedDatabase
from tests.fakes.discord import FakeDiscord, InteractionHandle
from tests.fakes.provider import InstrumentedRenderer
from tests.helpers import READY, wait_for

pytestmark = pytest.mark.timeout(180)

LEASE_SECONDS = 3
JOBS_PER_GUILD = 2


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(shard_count=2) as server:
        yield server
        assert server.internal_errors == []


@pytest.fixture
async def database(postgres_server: PostgresServer) -> SharedDatabase:
    return SharedDatabase(await postgres_server.new_database())


@pytest.fixture
async def processes(
    fake: FakeDiscord, renderer: InstrumentedRenderer, database: SharedDatabase, tmp_path: Path
) -> AsyncIterator[list[BotProcess]]:
    bots = []
    for shard in (0, 1):
        workdir = tmp_path / f"process-{shard}"  # its own DATA_DIR, as on its own machine
        workdir.mkdir()
        bot = BotProcess(fake=fake, renderer=renderer, workdir=workdir)
        bot.env.update(
            {
                "DATABASE_URL": database.url,
                "SHARD_COUNT": "2",
                "SHARD_IDS": str(shard),
                "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            }
        )
        bots.append(bot)
    yield bots
    for bot in bots:
        if bot.proc is not None and bot.proc.returncode is None:
            bot.proc.kill()
            await bot.proc.wait()
        assert fake.token not in bot.log()


async def test_a_killed_process_jobs_are_finished_by_the_survivor_exactly_once(
    fake: FakeDiscord,
    renderer: InstrumentedRenderer,
    database: SharedDatabase,
    processes: list[BotProcess],
) -> None:
    guilds = []
    for shard in (0, 1):
        guild = int(fake.add_guild(f"Guild on shard {shard}", shard=shard)["id"])
        guilds.append(guild)
    members = [int(fake.add_user(f"member{n}")["id"]) for n in range(JOBS_PER_GUILD)]
    for guild in guilds:
        for n, member in enumerate(members):
            fake.add_member(member, f"member{n}", guild_id=guild)

    first, second = processes
    await first.start()  # syncs the commands for the fleet
    await second.start(expect_sync=False)
    assert "application commands unchanged; not syncing" in second.log()
    syncs = [r for r in fake.requests if r.method == "PUT" and r.route == COMMANDS_ROUTE]
    assert len(syncs) == 1

    hold(renderer)
    handles: dict[int, list[InteractionHandle]] = {}
    for guild in guilds:
        handles[guild] = [
            await fake.invoke_command("video", {"prompt": f"fleet {guild} {n}"}, user=member, guild_id=guild)
            for n, member in enumerate(members)
        ]
    for guild_handles in handles.values():
        for handle in guild_handles:
            await handle.original_message(
                timeout=30, predicate=lambda m: bool(m.embeds) and "Generating" in str(m.embeds[0])
            )
    shards = {
        shard for shard, event, gid in fake.dispatched if event == "INTERACTION_CREATE" and gid in guilds
    }
    assert shards == {(0, 2), (1, 2)}
    # Each process works the jobs it created: the leases split by guild.
    holders = await database.lease_holders()
    assert len(holders) == 2 * JOBS_PER_GUILD and len(set(holders.values())) == 2

    assert first.proc is not None
    first.proc.kill()
    assert await asyncio.wait_for(first.proc.wait(), 30) == -signal.SIGKILL
    release(renderer)

    for guild_handles in handles.values():
        for handle in guild_handles:
            await handle.original_message(timeout=90, predicate=is_final(READY))
    await second.wait_log("taking it over", timeout=10)

    uploads = mp4_uploads(fake)
    assert len(uploads) == 2 * JOBS_PER_GUILD
    creates = [r for r in renderer.requests if r.method == "POST" and r.path == "/v1/videos"]
    assert len(creates) == 2 * JOBS_PER_GUILD, "a takeover adopts the video, it never submits again"

    async def all_charged() -> list[dict[str, object]] | None:
        jobs = await database.jobs()
        done = [(j["status"], j["charge_state"]) for j in jobs] == [("completed", "charged")] * len(jobs)
        return jobs if done else None

    # The card is posted a moment before the charge is recorded.
    jobs = await wait_for(all_charged, "every job recorded as delivered and charged", timeout=20)
    assert len(jobs) == 2 * JOBS_PER_GUILD
    assert await database.deliveries_charged() == dict.fromkeys((j["id"] for j in jobs), 1)
    await second.stop()
    for line in second.log().splitlines():
        assert "Traceback" not in line, second.log()
