"""Gateway shards: the real ``VideoBot`` (discord.py's ``AutoShardedBot``) against the fake Discord
with two shards. Each guild's events reach only the session of its shard; several processes (here,
two bots in one loop, each with one shard and its own store connection to one database) sync the
commands once; ``/healthz`` reports each shard of the process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest
from pydantic import ValidationError

from bot.adapters.http.server import check_health
from bot.adapters.sqlite.store import Store
from bot.adapters.videoapi.client import VideoAPIClient
from bot.app import build_bot, health_checks_for
from bot.discord.bot import VideoBot
from bot.domain.catalog import load_catalog
from bot.settings import Settings
from tests.fakes.discord import ROUTE_GLOBAL_COMMANDS, FakeDiscord, patched_discord
from tests.fakes.provider import InstrumentedRenderer
from tests.helpers import ephemeral_content, wait_for

pytestmark = pytest.mark.timeout(60)

INTERACTION = "INTERACTION_CREATE"


@pytest.fixture(autouse=True)
def identify_without_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """discord.py waits 5 s before each IDENTIFY after the first (Discord's identify rate). The fake
    does not limit identifies, and these tests are about which shard serves which guild, not about
    pacing: the shards identify one after another without the pause."""

    async def no_pause(self: discord.Client, shard_id: int | None, *, initial: bool = False) -> None:
        return None

    monkeypatch.setattr(discord.Client, "before_identify_hook", no_pause)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(shard_count=2) as server:
        yield server
        assert server.internal_errors == []


def settings_for(fake: FakeDiscord, renderer: InstrumentedRenderer, tmp_path: Path, **extra: Any) -> Settings:
    data_dir = tmp_path / f"data-{extra.get('shard_ids', 'all')}"
    data_dir.mkdir(parents=True, exist_ok=True)
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        discord_token=fake.token,
        discord_api_base_url=fake.api_base,
        discord_gateway_url=fake.gateway_url,
        video_api_base_url=renderer.base_url,
        database_url=f"sqlite:///{tmp_path / 'shared.db'}",
        data_dir=data_dir,
        **extra,
    )


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[VideoBot]:
    """One bot process's worth: its own store connection and provider client, connected to the
    gateway with its shards."""
    async with (
        Store.open(settings.database_path) as store,
        VideoAPIClient(settings.video_api_base_url) as api,
    ):
        bot = build_bot(settings, store=store, api=api, catalog=load_catalog(None))
        async with bot:
            task = asyncio.create_task(bot.start(settings.require_token().get_secret_value()))
            try:
                ready = asyncio.create_task(bot.wait_until_ready())
                done, _ = await asyncio.wait({ready, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    task.result()  # a failed start, with its own error
                assert ready in done, "the bot did not become ready"
                yield bot
            finally:
                await bot.close()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


def guild_on(fake: FakeDiscord, shard: int) -> int:
    guild = fake.add_guild(f"Shard {shard} guild", shard=shard)
    gid = int(guild["id"])
    fake.add_member(int(fake.default_user["id"]), "alice", guild_id=gid)
    assert fake.shard_for(gid) == shard
    return gid


async def quota_reply(fake: FakeDiscord, guild_id: int) -> str:
    handle = await fake.invoke_command("quota", guild_id=guild_id)
    return ephemeral_content((await handle.wait_response(timeout=10)).json)


def shards_that_got(fake: FakeDiscord, guild_id: int) -> set[tuple[int, int]]:
    return {shard for shard, event, gid in fake.dispatched if event == INTERACTION and gid == guild_id}


async def test_one_process_connects_every_shard_and_each_guild_is_served_on_its_own(
    fake: FakeDiscord, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    first, second = guild_on(fake, 0), guild_on(fake, 1)
    with patched_discord(fake):
        async with running(settings_for(fake, renderer, tmp_path, shard_count=2)) as bot:
            identifies = [p["d"]["shard"] for p in fake.gateway_received if p.get("op") == 2]
            assert sorted(identifies) == [[0, 2], [1, 2]]
            assert {g.id: g.shard_id for g in bot.guilds if g.id in (first, second)} == {first: 0, second: 1}

            for gid in (first, second):
                assert (await quota_reply(fake, gid)).startswith("**60** credits left")
            assert shards_that_got(fake, first) == {(0, 2)}
            assert shards_that_got(fake, second) == {(1, 2)}

            report = await check_health(health_checks_for(bot))
            assert report["gateway"] is True
            assert [(s["id"], s["connected"]) for s in report["shards"]] == [(0, True), (1, True)]
            assert all(isinstance(s["latency_ms"], float | None) for s in report["shards"])

            # A shard that drops is reported as such (and the gateway as not connected).
            shard = bot.get_shard(1)
            assert shard is not None
            await shard.disconnect()
            report = await check_health(health_checks_for(bot))
            assert report["gateway"] is False
            assert [(s["id"], s["connected"]) for s in report["shards"]] == [(0, True), (1, False)]


async def test_two_processes_with_one_shard_each_sync_the_commands_once_and_split_the_guilds(
    fake: FakeDiscord, renderer: InstrumentedRenderer, tmp_path: Path
) -> None:
    first, second = guild_on(fake, 0), guild_on(fake, 1)
    with patched_discord(fake):
        async with (
            running(settings_for(fake, renderer, tmp_path, shard_count=2, shard_ids="0")) as zero,
            running(settings_for(fake, renderer, tmp_path, shard_count=2, shard_ids="1")) as one,
        ):
            assert {g.id for g in zero.guilds} >= {first} and second not in {g.id for g in zero.guilds}
            assert {g.id for g in one.guilds} >= {second} and first not in {g.id for g in one.guilds}
            for gid in (first, second):
                assert (await quota_reply(fake, gid)).startswith("**60** credits left")
            assert shards_that_got(fake, first) == {(0, 2)}
            assert shards_that_got(fake, second) == {(1, 2)}
            assert [s["id"] for s in zero.shard_health()] == [0]
            assert [s["id"] for s in one.shard_health()] == [1]
    syncs = [r for r in fake.requests if r.method == "PUT" and r.route == ROUTE_GLOBAL_COMMANDS]
    assert len(syncs) == 1, "the fleet syncs its commands once, not once per process"


async def test_a_client_without_a_shard_count_takes_the_one_discord_recommends(fake: FakeDiscord) -> None:
    fake.shard_count = 2
    with patched_discord(fake):
        client = discord.AutoShardedClient(intents=discord.Intents.none())
        task = asyncio.create_task(client.start(fake.token))
        try:
            await fake.wait_shards_connected({0, 1}, timeout=20)
            assert client.shard_count == 2
        finally:
            await client.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    await wait_for(lambda: not fake.connected_shards, "the shards to disconnect")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SHARD_COUNT": "2", "SHARD_IDS": "2"},
            "SHARD_IDS lists shard 2, but SHARD_COUNT=2 numbers the shards 0 to 1",
        ),
        ({"SHARD_COUNT": "4", "SHARD_IDS": "1,1"}, "SHARD_IDS lists a shard twice (1,1)"),
        ({"SHARD_COUNT": "2", "SHARD_IDS": "zero"}, "must be shard numbers separated by commas"),
        ({"SHARD_COUNT": "0"}, "greater than or equal to 1"),
    ],
)
def test_shard_settings_out_of_range_are_refused_with_what_to_fix(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert message in str(caught.value)


def test_shard_ids_default_to_all_and_blank_means_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARD_COUNT", "3")
    monkeypatch.setenv("SHARD_IDS", "")
    assert Settings(_env_file=None).shards == [0, 1, 2]  # type: ignore[call-arg]
    monkeypatch.setenv("SHARD_IDS", " 2, 0")
    assert Settings(_env_file=None).shards == [2, 0]  # type: ignore[call-arg]


def test_each_process_of_a_fleet_takes_its_share_of_the_shared_discord_buckets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHARD_COUNT", "4")
    assert Settings(_env_file=None).fleet_share == 1.0  # type: ignore[call-arg]
    monkeypatch.setenv("SHARD_IDS", "2")
    assert Settings(_env_file=None).fleet_share == 0.25  # type: ignore[call-arg]
