"""Benchmark: one bot process against two on one PostgreSQL (same machine), offline; prints ONE JSON
document. README, "Running more than one process", says what the figures mean.

Both modes run the same workload on a fresh database, fake Discord (two gateway shards, one guild on
each) and local renderer: ``--jobs`` members (half in each guild) each run ``/video`` once, evenly
over ``--arrival-seconds``; every render takes ``--generation-seconds``, so all of them are in flight
together. ``one_process`` connects both shards in one ``python -m bot run``; ``two_processes`` runs
one process per shard, each with half the provider budget. Per job: provider requests, Discord
requests, bot CPU milliseconds; peak RSS per process. Then ``takeover``: two processes, ``--kill-jobs``
jobs held mid-render in the guild of shard 0, that process SIGKILLed; the figures are the seconds
from the kill until the survivor has taken every job over and until all are delivered.

On 2 cores this measures the overhead of a second process and the takeover time, not scale-out.
Run ``python bench/fleet.py`` (about 7 minutes), ``--quick`` for a short smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/fleet.py` puts bench/, not the repository, on the path
    sys.path.insert(0, str(REPO))

import asyncpg  # noqa: E402

from bench.run import (  # noqa: E402
    BENCH_CATALOG,
    MODEL,
    RENDER_FPS,
    SMALL_SECONDS,
    SMALL_SIZE,
    STARTUP_TIMEOUT,
    ProcessUnderTest,
    base_environment,
    free_port,
    per_job,
    prompt_for,
)
from bot.localapi import LocalRendererConfig  # noqa: E402
from tests.backends import PostgresCluster, PostgresServer  # noqa: E402
from tests.fakes.discord import FakeDiscord, InteractionHandle  # noqa: E402
from tests.fakes.provider import InstrumentedRenderer  # noqa: E402

PROVIDER_RPM: Final = 6000  # the fleet's provider budget; each of N processes gets 1/N of it
LEASE_SECONDS: Final = 10


@dataclass
class Fleet:
    fake: FakeDiscord
    renderer: InstrumentedRenderer
    database_url: str
    processes: list[ProcessUnderTest]
    guilds: list[int]


def bot_environment(
    workdir: Path, fake: FakeDiscord, renderer: InstrumentedRenderer, **extra: str
) -> dict[str, str]:
    env = base_environment(workdir)
    catalog = workdir / "models.toml"
    catalog.write_text(BENCH_CATALOG, encoding="utf-8")
    env.update(
        {
            "DISCORD_TOKEN": fake.token,
            "DISCORD_API_BASE_URL": fake.api_base,
            "DISCORD_GATEWAY_URL": fake.gateway_url,
            "VIDEO_API_BASE_URL": renderer.base_url,
            "MODELS_FILE": str(catalog),
            "DATA_DIR": str(workdir / "data"),
            "LOG_LEVEL": "INFO",
            "SHARD_COUNT": "2",
            "JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            **extra,
        }
    )
    return env


@contextlib.asynccontextmanager
async def fleet(
    root: Path, server: PostgresServer, *, processes: int, members: int, generation_seconds: float
) -> Any:
    root.mkdir(parents=True)
    url = await server.new_database()
    config = LocalRendererConfig(
        data_dir=root / "renderer",
        generation_seconds=generation_seconds,
        queue_seconds=0.5,
        fps=RENDER_FPS,
        models={MODEL: [SMALL_SIZE]},  # the bench catalog's size (the renderer's defaults lack it)
        poll_after_ms=2000,
    )
    async with FakeDiscord(shard_count=2) as fake, InstrumentedRenderer(config) as renderer:
        guilds = [int(fake.add_guild(f"Shard {shard}", shard=shard)["id"]) for shard in (0, 1)]
        for n in range(members):
            user = int(fake.add_user(f"member{n}")["id"])
            fake.add_member(user, f"member{n}", guild_id=guilds[n % 2])
        bots = []
        for index in range(processes):
            workdir = root / f"process-{index}"
            workdir.mkdir()
            extra = {
                "DATABASE_URL": url,
                "VIDEO_API_REQUESTS_PER_MINUTE": str(PROVIDER_RPM // processes),
                "HTTP_PORT": str(free_port()),
            }
            if processes > 1:
                extra["SHARD_IDS"] = str(index)
            env = bot_environment(workdir, fake, renderer, **extra)
            argv = [sys.executable, "-m", "bot", "run"]
            bots.append(ProcessUnderTest(argv, env, workdir, workdir / "bot.log"))
        try:
            for bot in bots:
                await bot.start()
                await bot.wait_log("tracker", STARTUP_TIMEOUT)
            await fake.wait_shards_connected({0, 1}, timeout=STARTUP_TIMEOUT)
            yield Fleet(fake, renderer, url, bots, guilds)
        finally:
            for bot in bots:
                await bot.stop()


async def submit(
    fleet: Fleet, count: int, arrival_seconds: float, *, guilds: list[int] | None = None
) -> list[InteractionHandle]:
    members = [
        (int(m["user"]["id"]), gid)
        for gid in (guilds or fleet.guilds)
        for m in fleet.fake.guilds[gid]["members"]
        if m["user"]["username"].startswith("member")
    ]
    handles = []
    start = time.monotonic()
    for index, (user, guild) in enumerate(members[:count]):
        await asyncio.sleep(max(0.0, start + arrival_seconds * index / max(count, 1) - time.monotonic()))
        options = {"prompt": prompt_for(index), "model": MODEL, "size": SMALL_SIZE, "seconds": SMALL_SECONDS}
        handles.append(await fleet.fake.invoke_command("video", options, user=user, guild_id=guild))
    return handles


async def delivered(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'completed'"))
    finally:
        await conn.close()


async def statuses(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT status, coalesce(error_code, '') AS code, count(*) AS n FROM jobs GROUP BY 1, 2"
        )
        return {f"{row['status']} {row['code']}".strip(): int(row["n"]) for row in rows}
    finally:
        await conn.close()


async def wait_delivered(url: str, count: int, timeout: float) -> None:  # noqa: ASYNC109
    try:
        async with asyncio.timeout(timeout):
            while await delivered(url) < count:
                if sum(n for state, n in (await statuses(url)).items() if state.startswith("failed")):
                    raise TimeoutError  # a failed job will never be delivered: say so now
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise TimeoutError(
            f"{count} deliveries not done in {timeout} s; jobs by status: {await statuses(url)}"
        ) from None


async def throughput_mode(
    root: Path, server: PostgresServer, processes: int, args: argparse.Namespace, say: Any
) -> dict[str, Any]:
    say(f"{processes} process(es): {args.jobs} jobs")
    async with fleet(
        root, server, processes=processes, members=args.jobs, generation_seconds=args.generation_seconds
    ) as f:
        discord_before, provider_before = f.fake.mark(), len(f.renderer.requests)
        cpu_before = [bot.cpu_seconds() for bot in f.processes]
        started = time.monotonic()
        await submit(f, args.jobs, args.arrival_seconds)
        await wait_delivered(f.database_url, args.jobs, args.timeout)
        elapsed = time.monotonic() - started
        cpu = [bot.cpu_seconds() - before for bot, before in zip(f.processes, cpu_before, strict=True)]
        rss = [bot.peak_rss_bytes() for bot in f.processes]
        discord = len(f.fake.requests) - discord_before
        provider = len(f.renderer.requests) - provider_before
    return {
        "processes": processes,
        "jobs": args.jobs,
        "seconds_to_deliver_all": round(elapsed, 1),
        "per_job": {
            "provider_requests": round(per_job(provider, args.jobs), 2),
            "discord_requests": round(per_job(discord, args.jobs), 2),
            "bot_cpu_ms": round(per_job(sum(cpu) * 1000, args.jobs), 1),
        },
        "bot_cpu_seconds_per_process": [round(c, 1) for c in cpu],
        "peak_rss_mib_per_process": [round(r / 2**20, 1) for r in rss],
    }


async def takeover_mode(
    root: Path, server: PostgresServer, args: argparse.Namespace, say: Any
) -> dict[str, Any]:
    say(f"takeover: {args.kill_jobs} jobs on the killed process, JOB_LEASE_SECONDS={LEASE_SECONDS}")
    async with fleet(root, server, processes=2, members=2 * args.kill_jobs, generation_seconds=3600) as f:
        await submit(f, args.kill_jobs, 0.0, guilds=[f.guilds[0]])
        conn = await asyncpg.connect(f.database_url)
        try:
            async with asyncio.timeout(120):
                while (  # noqa: ASYNC110 - the bot processes write it
                    await conn.fetchval("SELECT count(*) FROM jobs WHERE status IN ('queued', 'in_progress')")
                    < args.kill_jobs
                ):
                    await asyncio.sleep(0.2)
            victim = f.processes[0]
            owner = await conn.fetchval("SELECT DISTINCT lease_owner FROM jobs")
            assert victim.proc is not None
            victim.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await victim.proc.wait()
            f.renderer.config.generation_seconds = args.generation_seconds  # the renders finish now
            async with asyncio.timeout(LEASE_SECONDS * 6):
                while await conn.fetchval("SELECT count(*) FROM jobs WHERE lease_owner = $1", owner):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            taken_over = time.monotonic() - killed
        finally:
            await conn.close()
        await wait_delivered(f.database_url, args.kill_jobs, args.timeout)
        all_delivered = time.monotonic() - killed
        uploads = sum(1 for r in f.fake.requests if any(file.filename.endswith(".mp4") for file in r.files))
    return {
        "jobs_on_killed_process": args.kill_jobs,
        "job_lease_seconds": LEASE_SECONDS,
        "seconds_kill_to_all_taken_over": round(taken_over, 2),
        "seconds_kill_to_all_delivered": round(all_delivered, 2),
        "mp4_uploads": uploads,
    }


async def run(args: argparse.Namespace, say: Any) -> dict[str, Any]:
    cluster = PostgresCluster()
    admin_url = cluster.start()
    server = PostgresServer(admin_url, prefix="fleetbench")
    try:
        await server.make_template()
        with tempfile.TemporaryDirectory(prefix="videobot-fleet-bench-") as tmp:
            root = Path(tmp)
            one = await throughput_mode(root / "one", server, 1, args, say)
            two = await throughput_mode(root / "two", server, 2, args, say)
            takeover = await takeover_mode(root / "takeover", server, args, say)
    finally:
        cluster.stop()
    return {
        "benchmark": "fleet",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "workload": {
            "jobs": args.jobs,
            "arrival_seconds": args.arrival_seconds,
            "generation_seconds": args.generation_seconds,
            "provider_rpm_fleet": PROVIDER_RPM,
        },
        "one_process": one,
        "two_processes": two,
        "takeover": takeover,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--arrival-seconds", type=float, default=30.0)
    parser.add_argument("--generation-seconds", type=float, default=40.0)
    parser.add_argument("--kill-jobs", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=240.0, help="per mode, seconds")
    parser.add_argument("--quick", action="store_true", help="40 jobs, short renders (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.arrival_seconds, args.generation_seconds, args.kill_jobs = 40, 4.0, 4.0, 6
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    result = asyncio.run(run(args, say))
    result["bench_seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
