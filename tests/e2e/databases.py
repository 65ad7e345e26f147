"""The database several bot processes share in the multi-process tests, and what those tests read
from it (as an operator would, with SQL)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class SharedDatabase:
    url: str
    path: Path

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        with contextlib.closing(sqlite3.connect(self.path, timeout=10)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql).fetchall()]

    async def lease_holders(self) -> dict[int, str | None]:
        rows = self._rows(
            "SELECT id, lease_owner FROM jobs WHERE status NOT IN ('completed', 'failed', 'cancelled')"
        )
        return {int(r["id"]): r["lease_owner"] for r in rows}

    async def jobs(self) -> list[dict[str, Any]]:
        return self._rows("SELECT id, status, charge_state, lease_owner FROM jobs ORDER BY id")

    async def deliveries_charged(self) -> dict[int, int]:
        rows = self._rows(
            "SELECT job_id, count(*) AS n FROM audit_log WHERE action = 'job.delivered' GROUP BY job_id"
        )
        return {int(r["job_id"]): int(r["n"]) for r in rows}


@contextlib.asynccontextmanager
async def shared_database(tmp_path: Path) -> AsyncIterator[SharedDatabase]:
    path = tmp_path / "shared" / "videobot.db"
    path.parent.mkdir(parents=True)
    yield SharedDatabase(url=f"sqlite:///{path}", path=path)
