"""HistoryService against a real SQLite file: the pages of ``/videos`` and ``/remix``'s choices."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.adapters.sql.history import SqlHistoryRepository
from bot.adapters.sql.store import SqlStore as Store
from bot.domain.jobs import JobRequest, JobStatus
from bot.services.history import VIDEOS_PAGE_SIZE, HistoryService
from tests.backends import Backend

GUILD, ANA, BO = 1, 10, 11


async def add(store: Store, user_id: int, prompt: str, status: JobStatus, video: str | None = None) -> int:
    request = JobRequest(
        guild_id=GUILD,
        channel_id=2,
        user_id=user_id,
        user_name="ana",
        prompt=prompt,
        model="sora-2",
        size="720x1280",
        seconds=4,
        cost=4,
        usd=0.4,
    )
    job_id = await store.insert_job(request)
    await store.update_job(job_id, status=status, provider_video_id=video)
    return job_id


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    async with backend.open() as db:
        yield db


async def test_videos_pages_are_the_members_own_newest_first(store: Store) -> None:
    history = HistoryService(SqlHistoryRepository(store))
    assert await history.videos_page(GUILD, ANA, 1) is None
    mine = [await add(store, ANA, f"clip {i}", JobStatus.COMPLETED, f"v{i}") for i in range(12)]
    await add(store, BO, "not hers", JobStatus.COMPLETED, "vb")
    first = await history.videos_page(GUILD, ANA, 1)
    assert first is not None
    assert ([j.id for j in first.jobs], first.page, first.pages, first.total) == (
        mine[::-1][:VIDEOS_PAGE_SIZE],
        1,
        2,
        12,
    )
    # A button made when there were more pages still lands somewhere: the last page.
    late = await history.videos_page(GUILD, ANA, 9)
    assert late is not None and ([j.id for j in late.jobs], late.page) == (mine[:2][::-1], 2)
    assert await history.videos_page(GUILD + 1, ANA, 1) is None


async def test_remix_choices_are_finished_remixable_videos_narrowed_by_what_was_typed(store: Store) -> None:
    history = HistoryService(SqlHistoryRepository(store))
    fox = await add(store, ANA, "a red fox", JobStatus.COMPLETED, "v1")
    await add(store, ANA, "a fox that failed", JobStatus.FAILED)
    await add(store, ANA, "a running fox", JobStatus.IN_PROGRESS, "v2")
    cat = await add(store, ANA, "a cat", JobStatus.COMPLETED, "v3")
    await add(store, BO, "their fox", JobStatus.COMPLETED, "v4")
    assert [j.id for j in await history.remix_choices(GUILD, ANA)] == [cat, fox]
    assert [j.id for j in await history.remix_choices(GUILD, ANA, "FOX")] == [fox]
    assert [j.id for j in await history.remix_choices(GUILD, ANA, f"#{cat}")] == [cat]
    assert await history.remix_choices(GUILD, BO, "cat") == []
