"""Queries behind a member's own history: the videos ``/remix`` offers as they type.

Runs on a ``Store``'s connection like ``CreditsStore``; the paged job list ``/videos`` shows is
``CreditsStore.jobs_page``, shared with ``/videomod jobs``.
"""

from __future__ import annotations

import aiosqlite

from bot.adapters.sqlite.store import Store, _job_from_row
from bot.domain.jobs import Job, JobStatus

MAX_CHOICES = 25  # Discord shows at most 25 autocomplete choices


def _like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards in ``text`` taken literally (escape character ``\\``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class HistoryStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def _conn(self) -> aiosqlite.Connection:
        return self.store._conn

    async def remixable_videos(
        self, guild_id: int, user_id: int, *, typed: str = "", limit: int = MAX_CHOICES
    ) -> list[Job]:
        """The member's finished videos in this server that the provider can remix (they have a
        provider id), newest first. ``typed`` narrows them: a job number (``12`` or ``#12``) matches
        the jobs whose number starts with it, any other text matches the prompt (case-insensitive)."""
        where = ["guild_id = ?", "user_id = ?", "status = ?", "provider_video_id IS NOT NULL"]
        args: list[object] = [guild_id, user_id, JobStatus.COMPLETED.value]
        text = typed.strip()
        if text:
            number = text.removeprefix("#")
            if number.isdigit():
                where.append("(CAST(id AS TEXT) LIKE ? OR prompt LIKE ? ESCAPE '\\')")
                args.extend([f"{number}%", _like_pattern(text)])
            else:
                where.append("prompt LIKE ? ESCAPE '\\'")
                args.append(_like_pattern(text))
        sql = f"SELECT * FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        async with self._conn.execute(sql, (*args, max(0, min(limit, MAX_CHOICES)))) as cur:
            return [_job_from_row(row) for row in await cur.fetchall()]
