"""Credits and history: what ``CreditsService`` and ``HistoryService`` need from storage.

Protocols the SQLite adapter (``bot.adapters.sqlite.credits`` and ``.history``) implements; no SQL
and no driver types here. (Kept apart from the jobs ports so the two could be written side by side;
``Transaction`` is meant to be the one transaction handle of every repository on the same store.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from bot.domain.credits import GuildPolicy, RoleOverride, Usage, UsageReport
from bot.domain.jobs import Job


class Transaction(Protocol):
    """An open unit of work from a repository's ``transaction()`` (or a read-only ``snapshot()``).

    Opaque on purpose: a service only passes it back, as ``conn``, to repositories on the same
    store, so their reads and writes happen in it; the adapter refuses anything else."""


class CreditsRepository(Protocol):
    """Policy, per-member quotas, grants and the audit log of each guild.

    Methods with an optional ``conn`` read the last committed state without one (never another
    coroutine's unfinished transaction); methods that write require it, so a change and its audit
    record commit together."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Read-modify-write: writers are serialised, and the reads inside see what will be changed."""
        ...

    def snapshot(self) -> AbstractAsyncContextManager[Transaction]:
        """Several reads that must agree (a balance): one consistent committed state. Read-only."""
        ...

    async def policy(self, guild_id: int, conn: Transaction | None = None) -> GuildPolicy: ...

    async def set_policy(self, guild_id: int, policy: GuildPolicy, conn: Transaction) -> None: ...

    async def role_overrides(self, guild_id: int, conn: Transaction | None = None) -> list[RoleOverride]: ...

    async def set_role_override(self, guild_id: int, override: RoleOverride, conn: Transaction) -> None:
        """Both limits None removes the role's override."""
        ...

    async def member_quota(
        self, guild_id: int, user_id: int, conn: Transaction | None = None
    ) -> tuple[int | None, float | None]:
        """(allowance set by a moderator, time of the last manual reset)."""
        ...

    async def set_member_allowance(
        self, guild_id: int, user_id: int, allowance: int | None, conn: Transaction
    ) -> None: ...

    async def reset_member(self, guild_id: int, user_id: int, conn: Transaction) -> None: ...

    async def add_grant(
        self, guild_id: int, user_id: int, credits: int, granted_by: int, conn: Transaction
    ) -> None: ...

    async def usage(
        self,
        guild_id: int,
        user_id: int,
        *,
        since: float,
        guild_since: float,
        conn: Transaction | None = None,
    ) -> Usage: ...

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
    ) -> None: ...

    async def audit_entries(self, guild_id: int, *, limit: int = 50) -> list[dict[str, Any]]: ...

    async def usage_report(self, guild_id: int, *, since: float, until: float) -> UsageReport: ...


class HistoryRepository(Protocol):
    """The jobs of a guild as lists: a member's own videos, the moderators' job list, remix sources."""

    async def jobs_page(
        self,
        guild_id: int,
        *,
        user_id: int | None = None,
        statuses: Iterable[str] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """One page of a guild's jobs, newest first, and the total count (taken together)."""
        ...

    async def remixable_videos(
        self, guild_id: int, user_id: int, *, typed: str = "", limit: int = 25
    ) -> list[Job]:
        """The member's finished videos the provider can remix, newest first, narrowed by ``typed``."""
        ...
