"""``videobot migrate-db``: copy a SQLite installation into an empty PostgreSQL database.

Every table the SQLite file has (jobs, credits and policies, grants, the audit log, meta, webhook
ids, and whatever later migrations added) is copied with the columns both schemas have, from one
SQLite snapshot (a running bot may keep writing; the copy is of one moment), into one PostgreSQL
transaction: the target ends up with all of it or nothing. Job ids and audit ids stay the same, and
each identity counter continues after the highest copied id. A target with any row in any of
these tables is refused, so nothing is ever overwritten or mixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.adapters.postgres.store import PostgresStore
from bot.adapters.sql.store import Tx
from bot.adapters.sqlite.store import Store

#: copied first: other tables refer to jobs (and a remix to an older job)
FIRST = ("jobs",)
BATCH = 1000


class TargetNotEmpty(Exception):
    """The PostgreSQL database already holds data (``tables``: table → rows)."""

    def __init__(self, where: str, tables: dict[str, int]) -> None:
        listed = ", ".join(f"{table} ({rows} rows)" for table, rows in sorted(tables.items()))
        super().__init__(
            f"{where} is not empty: {listed}. migrate-db copies only into an empty database "
            "(create a new one, or drop these rows yourself if they are a failed earlier copy)."
        )
        self.tables = tables


@dataclass(frozen=True)
class CopyReport:
    rows: dict[str, int]  # table → rows copied
    skipped_columns: dict[str, list[str]]  # SQLite columns the PostgreSQL schema does not have
    skipped_tables: list[str]  # SQLite tables the PostgreSQL schema does not have


async def _sqlite_tables(source: Store, tx: Tx) -> list[str]:
    rows = await source.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        tx=tx,
    )
    names = [str(row[0]) for row in rows]
    return [name for name in FIRST if name in names] + [name for name in names if name not in FIRST]


async def _sqlite_columns(source: Store, tx: Tx, table: str) -> list[str]:
    return [str(row[1]) for row in await source.fetchall(f"PRAGMA table_info({table})", tx=tx)]


async def _postgres_columns(target: PostgresStore, tx: Tx) -> tuple[dict[str, list[str]], set[str]]:
    """Each table's columns, and the tables whose ``id`` is an identity (a counter to move on)."""
    rows = await target.fetchall(
        "SELECT table_name, column_name, is_identity FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
        tx=tx,
    )
    found: dict[str, list[str]] = {}
    counted: set[str] = set()
    for table, column, identity in rows:
        found.setdefault(str(table), []).append(str(column))
        if column == "id" and identity == "YES":
            counted.add(str(table))
    return found, counted


async def copy_sqlite_to_postgres(sqlite_path: Path, url: str) -> CopyReport:
    """Copy the SQLite database at ``sqlite_path`` into the (migrated, empty) database at ``url``."""
    async with (
        Store.open(sqlite_path) as source,
        PostgresStore.open(url) as target,
        target.transaction() as out,
    ):
        await target.lock(out, "migrate-db", None)
        columns_there, counted = await _postgres_columns(target, out)
        async with source.snapshot() as snap:
            everything = await _sqlite_tables(source, snap)
            tables = [t for t in everything if t in columns_there]
            filled = {}
            for table in tables:
                row = await target.fetchone(f"SELECT COUNT(*) FROM {table}", tx=out)
                if row is not None and int(row[0]) > 0:
                    filled[table] = int(row[0])
            if filled:
                raise TargetNotEmpty(target.describe(), filled)
            copied: dict[str, int] = {}
            skipped: dict[str, list[str]] = {}
            for table in tables:
                here = await _sqlite_columns(source, snap, table)
                shared = [c for c in here if c in columns_there[table]]
                if missing := [c for c in here if c not in shared]:
                    skipped[table] = missing
                copied[table] = await _copy_table(source, snap, target, out, table, shared)
                if table in counted:
                    await target.fetchone(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)",
                        tx=out,
                    )
    return CopyReport(copied, skipped, [t for t in everything if t not in columns_there])


async def _copy_table(
    source: Store, snap: Tx, target: PostgresStore, out: Tx, table: str, columns: Sequence[str]
) -> int:
    listed = ", ".join(columns)
    total, after = 0, None
    while True:
        # By rowid, in batches: a large history is never held in memory at once.
        where = "" if after is None else "WHERE rowid > ?"
        rows = await source.fetchall(
            f"SELECT rowid, {listed} FROM {table} {where} ORDER BY rowid LIMIT {BATCH}",
            () if after is None else (after,),
            tx=snap,
        )
        if not rows:
            return total
        records: list[tuple[Any, ...]] = [tuple(row)[1:] for row in rows]
        await target.copy_records(out, table, columns, records)
        total += len(records)
        after = rows[-1][0]
