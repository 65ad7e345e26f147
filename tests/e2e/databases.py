"""The database several bot processes share in the multi-process tests (a PostgreSQL database on the
session's throwaway server, ``tests.backends``), and what those tests read from it (as an
operator would, with SQL)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass
class SharedDatabase:
    url: str

    async def _rows(self, sql: str) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.url)
        try:
            return [dict(row) for row in await conn.fetch(sql)]
        finally:
            await conn.close()

    async def lease_holders(self) -> dict[int, str | None]:
        rows = await self._rows(
            "SELECT id, lease_owner FROM jobs WHERE status NOT IN ('completed', 'failed', 'cancelled')"
        )
        return {int(r["id"]): r["lease_owner"] for r in rows}

    async def jobs(self) -> list[dict[str, Any]]:
        return await self._rows("SELECT id, status, charge_state, lease_owner FROM jobs ORDER BY id")

    async def deliveries_charged(self) -> dict[int, int]:
        rows = await self._rows(
            "SELECT job_id, count(*) AS n FROM audit_log WHERE action = 'job.delivered' GROUP BY job_id"
        )
        return {int(r["job_id"]): int(r["n"]) for r in rows}
