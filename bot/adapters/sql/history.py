"""Job history, on either backend: implements ``HistoryRepository`` (the lists ``/videos``,
``/videomod jobs``, ``/quota`` and ``/remix``'s autocomplete show)."""

from __future__ import annotations

from collections.abc import Iterable

from bot.adapters.sql.store import SELECT_JOBS, SqlStore, job_from_row
from bot.domain.jobs import Job, JobStatus

MAX_CHOICES = 25  # Discord shows at most 25 autocomplete choices


def _like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards in ``text`` taken literally (escape character ``\\``)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class SqlHistoryRepository:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def jobs_page(
        self,
        guild_id: int,
        *,
        user_id: int | None = None,
        statuses: Iterable[str] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """One page of a guild's jobs, newest first, and the total count (from the same snapshot, so
        the page and its count agree)."""
        where, args = ["guild_id = ?"], [guild_id]
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        status_list = [str(s) for s in statuses or []]
        if status_list:
            where.append(f"status IN ({', '.join('?' for _ in status_list)})")
            args.extend(status_list)  # type: ignore[arg-type]
        clause = " AND ".join(where)
        async with self.store.snapshot() as snapshot:
            row = await self.store.fetchone(f"SELECT COUNT(*) FROM jobs WHERE {clause}", args, tx=snapshot)
            rows = await self.store.fetchall(
                f"{SELECT_JOBS} WHERE {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
                tx=snapshot,
            )
        return [job_from_row(r) for r in rows], int((row or (0,))[0])

    async def remixable_videos(
        self, guild_id: int, user_id: int, *, typed: str = "", limit: int = MAX_CHOICES
    ) -> list[Job]:
        """The member's finished videos in this server that the provider can remix (they have a
        provider id), newest first. ``typed`` narrows them: a job number (``12`` or ``#12``) matches
        the jobs whose number starts with it, any other text matches the prompt (case-insensitive)."""
        where = ["guild_id = ?", "user_id = ?", "status = ?", "provider_video_id IS NOT NULL"]
        args: list[object] = [guild_id, user_id, JobStatus.COMPLETED.value]
        text = typed.strip()
        like = self.store.LIKE_ANY_CASE
        if text:
            number = text.removeprefix("#")
            if number.isdigit():
                where.append(f"(CAST(id AS TEXT) LIKE ? OR prompt {like} ? ESCAPE '\\')")
                args.extend([f"{number}%", _like_pattern(text)])
            else:
                where.append(f"prompt {like} ? ESCAPE '\\'")
                args.append(_like_pattern(text))
        sql = f"{SELECT_JOBS} WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        rows = await self.store.fetchall(sql, (*args, max(0, min(limit, MAX_CHOICES))))
        return [job_from_row(r) for r in rows]
