"""The cog layer: the real ``VideoBot`` (its cogs, command tree, views, services and SQLite store) in
the test's own event loop, below the end-to-end tests.

The bot logs in over REST to the fake Discord, so ``setup_hook`` loads the cogs and syncs the
commands as in production, but it opens no gateway: the fake hands each interaction payload
straight to discord.py's own INTERACTION_CREATE parser, which builds a real ``discord.Interaction``
and dispatches it through ``bot.tree`` (or the view store for buttons and forms). Replies go over
real HTTP to the fake, which records them. No subprocess, no websocket, no startup wait.

``bot`` is one step up: the whole bot as ``videobot run`` wires it (tracker, HTTP server, media
links), connected to the fake's gateway, in this event loop (tests/inprocess.py). It has the
end-to-end ``bot`` fixture's interface, so tests about what members see run here without the cost
of a process start; tests about the process itself (restarts, crashes, its log) stay in tests/e2e."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.sqlite.store import Store
from bot.adapters.videoapi.client import VideoAPIClient
from bot.app import build_bot
from bot.discord.bot import VideoBot
from bot.domain.catalog import load_catalog
from bot.settings import Settings
from tests.fakes.discord import FakeDiscord, Intent, patched_discord
from tests.fakes.provider import InstrumentedRenderer
from tests.inprocess import InProcessBot


@pytest.fixture
def renderer_settings() -> dict[str, Any]:
    """Quick renders: these tests are about what members see, not about pacing."""
    return {"generation_seconds": 0.5, "queue_seconds": 0.1, "fps": 8, "poll_after_ms": 100}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """More ``Settings`` fields for ``videobot``; a test module overrides this fixture to change them."""
    return {}


@pytest.fixture
async def videobot(
    fake: FakeDiscord,
    renderer: InstrumentedRenderer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    settings_overrides: dict[str, Any],
) -> AsyncIterator[VideoBot]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        discord_token=fake.token,
        discord_api_base_url=fake.api_base,
        discord_gateway_url=fake.gateway_url,
        video_api_base_url=renderer.base_url,
        database_url=f"sqlite:///{tmp_path / 'bot.db'}",
        data_dir=tmp_path / "data",
        poll_interval_seconds=0.2,
        progress_edit_interval_seconds=0.2,
        **settings_overrides,
    )
    settings.data_dir.mkdir(parents=True)
    with patched_discord(fake):
        api_client = VideoAPIClient(
            renderer.base_url,
            requests_per_minute=settings.video_api_requests_per_minute,
            creates_per_minute=settings.video_api_creates_per_minute,
        )
        async with Store.open(settings.database_path) as store, api_client as api:
            # Wired as ``videobot run`` wires it (bot.cli.run_bot), minus the gateway and HTTP server.
            bot = build_bot(settings, store=store, api=api, catalog=load_catalog(None))
            async with bot:
                await bot.login(fake.token)  # REST only; runs setup_hook (cogs, command sync)
                state = bot._connection
                # What the gateway would have sent first: the guild, so members resolve their roles.
                state.parse_guild_create(fake.guild_create_payload(fake.guild, Intent.GUILDS))
                fake.interaction_sink = state.parse_interaction_create
                yield bot
                fake.interaction_sink = None
    # What the end-to-end tests check in the bot's log: nothing failed behind the replies.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert fake.token not in caplog.text


@pytest.fixture
async def bot(
    fake: FakeDiscord, renderer: InstrumentedRenderer, tmp_path: Path
) -> AsyncIterator[InProcessBot]:
    """The whole bot as ``videobot run`` wires it, gateway included, in this event loop: the
    end-to-end ``bot`` fixture's interface without the process (see tests/inprocess.py)."""
    process = InProcessBot(fake=fake, renderer=renderer, workdir=tmp_path)
    async with process.running_context():
        yield process
