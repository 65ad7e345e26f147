"""Credits, policy, grants and the audit log, on either backend: implements ``CreditsRepository``.

Methods that take ``conn`` run inside the caller's transaction (the reservation check and the job
insert must see the same numbers); without it they read the last committed state. A write
transaction that reads a guild's policy takes the guild's lock first (``SqlStore.lock``), so a
reservation's check-then-insert is atomic against every other one of that guild in any process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from bot.adapters.sql.store import SqlStore
from bot.domain.credits import GuildPolicy, MemberUsage, ModelUsage, RoleOverride, Usage, UsageReport
from bot.services.ports import Transaction


class SqlCreditsRepository:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self.store.transaction()

    def snapshot(self) -> AbstractAsyncContextManager[Transaction]:
        return self.store.snapshot()

    async def policy(self, guild_id: int, conn: Transaction | None = None) -> GuildPolicy:
        """The guild's policy. Read in a write transaction, this is where a reservation or a settings
        change starts, so it takes the guild's lock first: what the transaction reads next (usage,
        allowances, the policy itself) stays true until it commits."""
        if conn is not None and self.store.writing(conn):
            await self.store.lock(conn, "guild", guild_id)
        row = await self.store.fetchone(
            "SELECT settings FROM guild_settings WHERE guild_id = ?", (guild_id,), tx=conn
        )
        return GuildPolicy.from_json(json.loads(row[0])) if row else GuildPolicy()

    async def set_policy(self, guild_id: int, policy: GuildPolicy, conn: Transaction) -> None:
        await self.store.execute(
            "INSERT INTO guild_settings(guild_id, settings, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(guild_id) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
            (guild_id, json.dumps(policy.to_json()), self.store.now()),
            tx=conn,
        )

    async def role_overrides(self, guild_id: int, conn: Transaction | None = None) -> list[RoleOverride]:
        rows = await self.store.fetchall(
            "SELECT role_id, allowance, max_concurrent FROM role_overrides WHERE guild_id = ? ORDER BY role_id",
            (guild_id,),
            tx=conn,
        )
        return [RoleOverride(int(r[0]), r[1], r[2]) for r in rows]

    async def set_role_override(self, guild_id: int, override: RoleOverride, conn: Transaction) -> None:
        if override.allowance is None and override.max_concurrent is None:
            await self.store.execute(
                "DELETE FROM role_overrides WHERE guild_id = ? AND role_id = ?",
                (guild_id, override.role_id),
                tx=conn,
            )
            return
        await self.store.execute(
            "INSERT INTO role_overrides(guild_id, role_id, allowance, max_concurrent) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(guild_id, role_id) DO UPDATE SET allowance = excluded.allowance, "
            "max_concurrent = excluded.max_concurrent",
            (guild_id, override.role_id, override.allowance, override.max_concurrent),
            tx=conn,
        )

    async def member_quota(
        self, guild_id: int, user_id: int, conn: Transaction | None = None
    ) -> tuple[int | None, float | None]:
        """(allowance set by a moderator, time of the last manual reset)."""
        row = await self.store.fetchone(
            "SELECT allowance, reset_at FROM member_quotas WHERE guild_id = ? AND user_id = ?",
            (guild_id, user_id),
            tx=conn,
        )
        return (row[0], row[1]) if row else (None, None)

    async def set_member_allowance(
        self, guild_id: int, user_id: int, allowance: int | None, conn: Transaction
    ) -> None:
        await self.store.execute(
            "INSERT INTO member_quotas(guild_id, user_id, allowance) VALUES (?, ?, ?) "
            "ON CONFLICT(guild_id, user_id) DO UPDATE SET allowance = excluded.allowance",
            (guild_id, user_id, allowance),
            tx=conn,
        )

    async def reset_member(self, guild_id: int, user_id: int, conn: Transaction) -> None:
        """Forget what the member used so far this period (reserved jobs stay reserved)."""
        await self.store.execute(
            "INSERT INTO member_quotas(guild_id, user_id, reset_at) VALUES (?, ?, ?) "
            "ON CONFLICT(guild_id, user_id) DO UPDATE SET reset_at = excluded.reset_at",
            (guild_id, user_id, self.store.now()),
            tx=conn,
        )

    async def add_grant(
        self, guild_id: int, user_id: int, credits: int, granted_by: int, conn: Transaction
    ) -> None:
        await self.store.execute(
            "INSERT INTO grants(guild_id, user_id, credits, granted_by, created_at) VALUES (?, ?, ?, ?, ?)",
            (guild_id, user_id, credits, granted_by, self.store.now()),
            tx=conn,
        )

    async def usage(
        self,
        guild_id: int,
        user_id: int,
        *,
        since: float,
        guild_since: float,
        conn: Transaction | None = None,
    ) -> Usage:
        # One statement (one trip to the database, consistent by itself): the member's jobs, their
        # grants, and the guild's spend.
        row = await self.store.fetchone(
            """
            SELECT mine.used, mine.reserved, mine.active, mine.last, given.granted, guild.spent
            FROM (
              SELECT
                COALESCE(SUM(CASE WHEN charge_state = 'charged' AND created_at >= ? THEN cost END), 0) AS used,
                COALESCE(SUM(CASE WHEN charge_state = 'reserved' THEN cost END), 0) AS reserved,
                COUNT(CASE WHEN status NOT IN ('completed', 'failed', 'cancelled') THEN 1 END) AS active,
                MAX(created_at) AS last
              FROM jobs WHERE guild_id = ? AND user_id = ?
            ) AS mine, (
              SELECT COALESCE(SUM(credits), 0) AS granted
              FROM grants WHERE guild_id = ? AND user_id = ? AND created_at >= ?
            ) AS given, (
              SELECT COALESCE(SUM(cost), 0) AS spent FROM jobs
              WHERE guild_id = ? AND created_at >= ? AND charge_state IN ('charged', 'reserved')
            ) AS guild
            """,
            (since, guild_id, user_id, guild_id, user_id, since, guild_id, guild_since),
            tx=conn,
        )
        used, reserved, active, last, granted, guild_spent = row or (0, 0, 0, None, 0, 0)
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
        conn: Transaction | None = None,
    ) -> None:
        """Record an action; without ``conn`` it commits on its own."""
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
            self.store.now(),
        )
        if conn is not None:
            await self.store.execute(sql, args, tx=conn)
            return
        async with self.store.transaction() as tx:
            await self.store.execute(sql, args, tx=tx)

    async def audit_entries(self, guild_id: int, *, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self.store.fetchall(
            "SELECT * FROM audit_log WHERE guild_id = ? ORDER BY id DESC LIMIT ?", (guild_id, limit)
        )
        return [dict(row) | {"details": json.loads(row["details"])} for row in rows]

    async def usage_report(self, guild_id: int, *, since: float, until: float) -> UsageReport:
        """Jobs, seconds, credits and estimated USD by model and outcome, and the top members."""
        async with self.store.snapshot() as snapshot:
            by_model = await self.store.fetchall(
                """
                SELECT model, status, charge_state, COUNT(*) AS jobs,
                       CAST(SUM(seconds) AS BIGINT) AS seconds, CAST(SUM(cost) AS BIGINT) AS credits,
                       SUM(usd) AS usd
                FROM jobs WHERE guild_id = ? AND created_at >= ? AND created_at < ?
                GROUP BY model, status, charge_state ORDER BY model, status
                """,
                (guild_id, since, until),
                tx=snapshot,
            )
            top = await self.store.fetchall(
                """
                SELECT user_id, MAX(user_name) AS user_name, COUNT(*) AS jobs,
                       CAST(SUM(seconds) AS BIGINT) AS seconds, CAST(SUM(cost) AS BIGINT) AS credits,
                       SUM(usd) AS usd
                FROM jobs WHERE guild_id = ? AND created_at >= ? AND created_at < ? AND charge_state = 'charged'
                GROUP BY user_id ORDER BY credits DESC, user_id LIMIT 10
                """,
                (guild_id, since, until),
                tx=snapshot,
            )
        return UsageReport(
            by_model=tuple(ModelUsage(**dict(row)) for row in by_model),
            top_members=tuple(MemberUsage(**dict(row)) for row in top),
        )
