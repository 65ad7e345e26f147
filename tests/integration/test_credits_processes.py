"""The credits race across processes: two real bot-built job services (``bot.app.open_store`` from
``DATABASE_URL``, as ``videobot run`` builds them) in two processes on one PostgreSQL, ten
submissions each at the same moment, room for three: exactly three are reserved."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from bot.adapters.postgres.store import PostgresStore
from bot.app import job_service
from tests.backends import PostgresServer
from tests.integration.test_credits import GUILD, USER, set_policy

ROOT = Path(__file__).resolve().parents[2]


async def start_racer(url: str, tmp_path: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "DATABASE_URL": url, "DATA_DIR": str(tmp_path / "data")}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.credit_race",
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def test_two_processes_on_one_postgresql_reserve_exactly_the_room_there_is(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = await postgres_server.new_database()
    async with PostgresStore.open(url) as store:
        await set_policy(job_service(store), allowance=12, cooldown_seconds=0, max_concurrent=20)
    racers = [await start_racer(url, tmp_path / f"p{n}") for n in range(2)]
    try:
        async with asyncio.timeout(60):
            for racer in racers:
                assert racer.stdout is not None
                assert (await racer.stdout.readline()).strip() == b"ready"
            for racer in racers:  # both are connected: start them together
                assert racer.stdin is not None
                racer.stdin.write(b"go\n")
                await racer.stdin.drain()
            outputs = [json.loads(await racer.stdout.readline()) for racer in racers if racer.stdout]
            codes = [await racer.wait() for racer in racers]
    finally:
        for racer in racers:
            if racer.returncode is None:
                racer.kill()
                await racer.wait()
    assert codes == [0, 0]
    assert [out["errors"] for out in outputs] == [[], []]
    accepted = [job for out in outputs for job in out["accepted"]]
    refused = [message for out in outputs for message in out["refused"]]
    assert (len(accepted), len(refused)) == (3, 17)
    assert all("you have 0 left" in message for message in refused)
    async with PostgresStore.open(url) as store:
        balance, _ = await job_service(store).balance(GUILD, USER)
        assert (balance.usage.reserved, balance.remaining) == (12, 0)
