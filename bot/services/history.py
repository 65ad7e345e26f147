"""A member's own history: the pages of ``/videos`` and the videos ``/remix`` offers as they type."""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain.jobs import Job
from bot.services.ports_credits import HistoryRepository

VIDEOS_PAGE_SIZE = 10
MAX_REMIX_CHOICES = 25  # Discord shows at most 25 autocomplete choices


@dataclass(frozen=True)
class VideosPage:
    jobs: list[Job]
    page: int
    pages: int
    total: int


class HistoryService:
    def __init__(self, history: HistoryRepository) -> None:
        self.history = history

    async def videos_page(self, guild_id: int, owner_id: int, page: int) -> VideosPage | None:
        """One page of the member's videos in this server, newest first; None when they have none.
        A page past the end (the list shrank since its button was made) shows the last page."""
        page = max(1, page)
        jobs, total = await self._page(guild_id, owner_id, page)
        if total == 0:
            return None
        pages = -(-total // VIDEOS_PAGE_SIZE)
        if not jobs:
            page = pages
            jobs, total = await self._page(guild_id, owner_id, page)
        return VideosPage(jobs, page, pages, total)

    async def remix_choices(self, guild_id: int, user_id: int, typed: str = "") -> list[Job]:
        """The member's finished, remixable videos here, newest first, narrowed by what they typed."""
        return await self.history.remixable_videos(guild_id, user_id, typed=typed, limit=MAX_REMIX_CHOICES)

    async def _page(self, guild_id: int, owner_id: int, page: int) -> tuple[list[Job], int]:
        return await self.history.jobs_page(
            guild_id, user_id=owner_id, limit=VIDEOS_PAGE_SIZE, offset=(page - 1) * VIDEOS_PAGE_SIZE
        )
