"""The aiosqlite store: the only module with SQL in it.

Migrations are numbered files in ``migrations/`` applied in order at open; the applied version is
SQLite's ``user_version``. WAL keeps readers and the writer out of each other's way; every
read-modify-write runs in ``BEGIN IMMEDIATE`` so two writers never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from bot.domain.credits import GuildPolicy, RoleOverride, Usage
from bot.domain.jobs import ACTIVE_STATUSES, ChargeState, Job, JobChanges, JobRequest, JobStatus

_JOB_COLUMNS = tuple(f.name for f in fields(Job))
_ACTIVE = tuple(s.value for s in ACTIVE_STATUSES)


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("bot.adapters.sqlite").joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def _job_from_row(row: Any) -> Job:
    values = {name: row[name] for name in _JOB_COLUMNS}
    values["status"] = JobStatus(values["status"])
    values["charge_state"] = ChargeState(values["charge_state"])
    return Job(**values)


class Store:
    """One SQLite file. Open with ``async with Store.open(path) as store:``."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, clock: Callable[[], float]) -> None:
        self._conn = conn
        self.path = path
        self._clock = clock
        self._write_lock = asyncio.Lock()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, path: Path, *, clock: Callable[[], float] = time.time) -> AsyncIterator[Store]:
        store = await cls.connect(path, clock=clock)
        try:
            yield store
        finally:
            await store.close()

    @classmethod
    async def connect(cls, path: Path, *, clock: Callable[[], float] = time.time) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=10000")
        await conn.execute("PRAGMA synchronous=NORMAL")
        store = cls(conn, path, clock)
        await store._migrate()
        return store

    async def close(self) -> None:
        await self._conn.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: takes the write lock up front so the read part of a
        read-modify-write sees what it will modify."""
        async with self._write_lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")

    async def _migrate(self) -> None:
        async with self._conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        current = int(row[0]) if row else 0
        for version, _name, sql in _migrations():
            if version <= current:
                continue
            async with self.transaction() as conn:
                for statement in _split_sql(sql):
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version={version}")

    async def schema_version(self) -> int:
        async with self._conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def ping(self) -> bool:
        async with self._conn.execute("SELECT 1") as cur:
            return (await cur.fetchone()) is not None

    # -- meta ----------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- jobs ----------------------------------------------------------------------------------

    async def insert_job(self, request: JobRequest, conn: aiosqlite.Connection | None = None) -> int:
        """Insert a job with its credits reserved. Pass ``conn`` to join an open transaction."""
        now = self._clock()
        values = {
            **{f.name: getattr(request, f.name) for f in fields(JobRequest)},
            "status": JobStatus.PENDING.value,
            "charge_state": ChargeState.RESERVED.value,
            "created_at": now,
            "updated_at": now,
        }
        sql = f"INSERT INTO jobs({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})"
        if conn is not None:
            cur = await conn.execute(sql, tuple(values.values()))
            return int(cur.lastrowid or 0)
        async with self.transaction() as tx:
            cur = await tx.execute(sql, tuple(values.values()))
            return int(cur.lastrowid or 0)

    async def get_job(self, job_id: int) -> Job | None:
        async with self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return _job_from_row(row) if row else None

    async def active_jobs(self) -> list[Job]:
        sql = f"SELECT * FROM jobs WHERE status IN ({', '.join('?' for _ in _ACTIVE)}) ORDER BY id"
        async with self._conn.execute(sql, _ACTIVE) as cur:
            return [_job_from_row(row) for row in await cur.fetchall()]

    async def known_provider_ids(self, video_ids: Iterable[str]) -> set[str]:
        """Which of these provider video ids already belong to a job."""
        ids = list(video_ids)
        if not ids:
            return set()
        sql = f"SELECT provider_video_id FROM jobs WHERE provider_video_id IN ({', '.join('?' for _ in ids)})"
        async with self._conn.execute(sql, ids) as cur:
            return {str(row[0]) for row in await cur.fetchall()}

    async def update_job(self, job_id: int, changes: JobChanges | None = None, /, **columns: Any) -> Job:
        """Set columns of one job whatever its status, and return it as stored. For data that is not
        a status change (the lifecycle records replies this way) and for seeding history in tests;
        ``columns`` are ``JobChanges`` fields by name."""
        change = changes if changes is not None else JobChanges(**columns)
        async with self.transaction() as conn:
            await self._update(conn, job_id, change)
        job = await self.get_job(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    async def transition(
        self, job_id: int, *, expect: Iterable[JobStatus], changes: JobChanges
    ) -> Job | None:
        """Update a job only if its status is one of ``expect`` (a compare-and-set).

        Returns the updated job, or None when another actor (a cancel, a duplicate webhook) got there
        first. This is what keeps delivery and refunds exactly-once. ``services.lifecycle`` is its
        only caller.
        """
        expected = tuple(s.value for s in expect)
        async with self.transaction() as conn:
            async with conn.execute(
                f"SELECT status FROM jobs WHERE id = ? AND status IN ({', '.join('?' for _ in expected)})",
                (job_id, *expected),
            ) as cur:
                if await cur.fetchone() is None:
                    return None
            await self._update(conn, job_id, changes)
        return await self.get_job(job_id)

    async def _update(self, conn: aiosqlite.Connection, job_id: int, changes: JobChanges) -> None:
        values = changes.columns()
        values["updated_at"] = self._clock()
        assignments = ", ".join(f"{column} = ?" for column in values)
        await conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), job_id))


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (they contain no semicolons inside strings or triggers)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


class CreditsStore:
    """Queries for credits, policy, grants and the audit log, on a ``Store``'s connection.

    Methods that take ``conn`` run inside the caller's transaction (the reservation check and the
    insert must see the same numbers).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def _conn(self) -> aiosqlite.Connection:
        return self.store._conn

    async def policy(self, guild_id: int, conn: aiosqlite.Connection | None = None) -> GuildPolicy:
        async with (conn or self._conn).execute(
            "SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,)
        ) as cur:
            row = await cur.fetchone()
        return GuildPolicy.from_json(json.loads(row[0])) if row else GuildPolicy()

    async def set_policy(self, guild_id: int, policy: GuildPolicy, conn: aiosqlite.Connection) -> None:
        await conn.execute(
            "INSERT INTO guild_settings(guild_id, settings, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(guild_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
            (guild_id, json.dumps(policy.to_json()), self.store._clock()),
        )

    async def role_overrides(
        self, guild_id: int, conn: aiosqlite.Connection | None = None
    ) -> list[RoleOverride]:
        async with (conn or self._conn).execute(
            "SELECT role_id, allowance, max_concurrent FROM role_overrides WHERE guild_id = ? ORDER BY role_id",
            (guild_id,),
        ) as cur:
            return [RoleOverride(int(r[0]), r[1], r[2]) for r in await cur.fetchall()]

    async def set_role_override(
        self, guild_id: int, override: RoleOverride, conn: aiosqlite.Connection
    ) -> None:
        if override.allowance is None and override.max_concurrent is None:
            await conn.execute(
                "DELETE FROM role_overrides WHERE guild_id = ? AND role_id = ?", (guild_id, override.role_id)
            )
            return
        await conn.execute(
            "INSERT INTO role_overrides(guild_id, role_id, allowance, max_concurrent) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(guild_id, role_id) DO UPDATE SET allowance = excluded.allowance, "
            "max_concurrent = excluded.max_concurrent",
            (guild_id, override.role_id, override.allowance, override.max_concurrent),
        )

    async def member_quota(
        self, guild_id: int, user_id: int, conn: aiosqlite.Connection | None = None
    ) -> tuple[int | None, float | None]:
        """(allowance set by a moderator, time of the last manual reset)."""
        async with (conn or self._conn).execute(
            "SELECT allowance, reset_at FROM member_quotas WHERE guild_id = ? AND user_id = ?",
            (guild_id, user_id),
        ) as cur:
            row = await cur.fetchone()
        return (row[0], row[1]) if row else (None, None)

    async def set_member_allowance(
        self, guild_id: int, user_id: int, allowance: int | None, conn: aiosqlite.Connection
    ) -> None:
        await conn.execute(
            "INSERT INTO member_quotas(guild_id, user_id, allowance) VALUES (?, ?, ?) "
            "ON CONFLICT(guild_id, user_id) DO UPDATE SET allowance = excluded.allowance",
            (guild_id, user_id, allowance),
        )

    async def reset_member(self, guild_id: int, user_id: int, conn: aiosqlite.Connection) -> None:
        """Forget what the member used so far this period (reserved jobs stay reserved)."""
        await conn.execute(
            "INSERT INTO member_quotas(guild_id, user_id, reset_at) VALUES (?, ?, ?) "
            "ON CONFLICT(guild_id, user_id) DO UPDATE SET reset_at = excluded.reset_at",
            (guild_id, user_id, self.store._clock()),
        )

    async def add_grant(
        self, guild_id: int, user_id: int, credits: int, granted_by: int, conn: aiosqlite.Connection
    ) -> None:
        await conn.execute(
            "INSERT INTO grants(guild_id, user_id, credits, granted_by, created_at) VALUES (?, ?, ?, ?, ?)",
            (guild_id, user_id, credits, granted_by, self.store._clock()),
        )

    async def usage(
        self,
        guild_id: int,
        user_id: int,
        *,
        since: float,
        guild_since: float,
        conn: aiosqlite.Connection | None = None,
    ) -> Usage:
        db = conn or self._conn
        async with db.execute(
            """
            SELECT
              COALESCE(SUM(CASE WHEN charge_state = 'charged' AND created_at >= ? THEN cost END), 0),
              COALESCE(SUM(CASE WHEN charge_state = 'reserved' THEN cost END), 0),
              COUNT(CASE WHEN status NOT IN ('completed', 'failed', 'cancelled') THEN 1 END),
              MAX(created_at)
            FROM jobs WHERE guild_id = ? AND user_id = ?
            """,
            (since, guild_id, user_id),
        ) as cur:
            used, reserved, active, last = await cur.fetchone() or (0, 0, 0, None)
        async with db.execute(
            "SELECT COALESCE(SUM(credits), 0) FROM grants WHERE guild_id = ? AND user_id = ? AND created_at >= ?",
            (guild_id, user_id, since),
        ) as cur:
            granted = (await cur.fetchone() or (0,))[0]
        async with db.execute(
            "SELECT COALESCE(SUM(cost), 0) FROM jobs WHERE guild_id = ? AND created_at >= ? "
            "AND charge_state IN ('charged', 'reserved')",
            (guild_id, guild_since),
        ) as cur:
            guild_spent = (await cur.fetchone() or (0,))[0]
        return Usage(
            used=int(used),
            reserved=int(reserved),
            granted=int(granted),
            active_jobs=int(active),
            last_submitted_at=last,
            guild_spent=int(guild_spent),
        )

    async def audit(
        self,
        action: str,
        *,
        guild_id: int | None,
        actor_id: int | None,
        target_user_id: int | None = None,
        job_id: int | None = None,
        details: Mapping[str, Any] | None = None,
        conn: aiosqlite.Connection | None = None,
    ) -> None:
        sql = (
            "INSERT INTO audit_log(guild_id, actor_id, action, target_user_id, job_id, details, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        args = (
            guild_id,
            actor_id,
            action,
            target_user_id,
            job_id,
            json.dumps(dict(details or {})),
            self.store._clock(),
        )
        if conn is not None:
            await conn.execute(sql, args)
            return
        async with self.store.transaction() as tx:
            await tx.execute(sql, args)

    async def audit_entries(self, guild_id: int, *, limit: int = 50) -> list[dict[str, Any]]:
        async with self._conn.execute(
            "SELECT * FROM audit_log WHERE guild_id = ? ORDER BY id DESC LIMIT ?", (guild_id, limit)
        ) as cur:
            return [dict(row) | {"details": json.loads(row["details"])} for row in await cur.fetchall()]

    async def jobs_page(
        self,
        guild_id: int,
        *,
        user_id: int | None = None,
        statuses: Iterable[str] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """One page of a guild's jobs, newest first, and the total count."""
        where, args = ["guild_id = ?"], [guild_id]
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        status_list = list(statuses or [])
        if status_list:
            where.append(f"status IN ({', '.join('?' for _ in status_list)})")
            args.extend(status_list)  # type: ignore[arg-type]
        clause = " AND ".join(where)
        async with self._conn.execute(f"SELECT COUNT(*) FROM jobs WHERE {clause}", args) as cur:
            total = int((await cur.fetchone() or (0,))[0])
        async with self._conn.execute(
            f"SELECT * FROM jobs WHERE {clause} ORDER BY id DESC LIMIT ? OFFSET ?", (*args, limit, offset)
        ) as cur:
            return [_job_from_row(row) for row in await cur.fetchall()], total

    async def usage_report(self, guild_id: int, *, since: float, until: float) -> dict[str, Any]:
        """Jobs, seconds, credits and estimated USD by model and outcome, and the top members."""
        async with self._conn.execute(
            """
            SELECT model, status, charge_state, COUNT(*) AS jobs, SUM(seconds) AS seconds,
                   SUM(cost) AS credits, SUM(usd) AS usd
            FROM jobs WHERE guild_id = ? AND created_at >= ? AND created_at < ?
            GROUP BY model, status, charge_state ORDER BY model, status
            """,
            (guild_id, since, until),
        ) as cur:
            by_model = [dict(row) for row in await cur.fetchall()]
        async with self._conn.execute(
            """
            SELECT user_id, MAX(user_name) AS user_name, COUNT(*) AS jobs, SUM(seconds) AS seconds,
                   SUM(cost) AS credits, SUM(usd) AS usd
            FROM jobs WHERE guild_id = ? AND created_at >= ? AND created_at < ? AND charge_state = 'charged'
            GROUP BY user_id ORDER BY credits DESC, user_id LIMIT 10
            """,
            (guild_id, since, until),
        ) as cur:
            top = [dict(row) for row in await cur.fetchall()]
        return {"by_model": by_model, "top_members": top}
