"""Fixtures the whole suite shares: the fake Discord and the local renderer.

Every server here listens on a port the OS picks and writes under ``tmp_path``, so tests run in
parallel (``pytest -n auto``) without sharing anything."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from bot.localapi import LocalRendererConfig
from tests.fakes.discord import FakeDiscord
from tests.fakes.provider import InstrumentedRenderer

pytest_plugins = ["tests.backends"]  # the `backend` fixture: SQLite and PostgreSQL

RendererFactory = Callable[..., Awaitable[InstrumentedRenderer]]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` starts two workers per core: the suite mostly waits (on sockets, subprocesses and
    PostgreSQL), so one worker per core left the cores about half idle (2 cores: 120 s with 2
    workers, 93 s with 4). Timing in the tests is bounded waits, never guesses, so it tolerates the
    oversubscription."""
    return 2 * (os.cpu_count() or 1)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as server:
        yield server
        # A bug inside the fake must not masquerade as a bot bug.
        assert server.internal_errors == []


@pytest.fixture
def renderer_settings() -> dict[str, Any]:
    """``LocalRendererConfig`` fields for ``renderer`` and ``make_renderer``; directories and modules
    override this fixture to set the pace their tests need."""
    return {}


@pytest.fixture
async def make_renderer(tmp_path: Path, renderer_settings: dict[str, Any]) -> AsyncIterator[RendererFactory]:
    """Start local renderers from ``renderer_settings`` with keyword overrides; all stop at teardown.

    They are ``InstrumentedRenderer``s (the product's renderer plus a request log and fault injection),
    so any test can look at what the bot sent or make the provider fail."""
    numbers = itertools.count(1)
    async with AsyncExitStack() as stack:

        async def start(**overrides: Any) -> InstrumentedRenderer:
            n = next(numbers)
            values = {"data_dir": tmp_path / ("renderer" if n == 1 else f"renderer-{n}")}
            values.update(renderer_settings)
            values.update(overrides)
            server = InstrumentedRenderer(LocalRendererConfig(**values))
            await stack.enter_async_context(server)
            return server

        yield start


@pytest.fixture
async def renderer(make_renderer: RendererFactory) -> InstrumentedRenderer:
    return await make_renderer()
