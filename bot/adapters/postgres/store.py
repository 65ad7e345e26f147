"""The PostgreSQL backend of the store, through an asyncpg pool, for running several bot processes
on one database (``DATABASE_URL=postgresql://USER:PASS@HOST:PORT/DB``).

The queries are ``bot.adapters.sql``'s, written with ``?`` placeholders; this backend numbers them
(``$1``, ``$2`` …) once per distinct statement.

**Concurrency: READ COMMITTED plus explicit locks** (not SERIALIZABLE with retries: a transaction
here is the body of the caller's ``async with``, which cannot be replayed). Transactions of any
number of processes run at once; each read whose answer decides a write locks what it read, so
the write cannot be based on a stale answer:

- a job's compare-and-set (``transition``) reads the row ``FOR UPDATE``: a second transition of the
  same job waits, then sees the new status and does nothing (delivery and refunds stay exactly-once);
- a credits reservation (and any settings change) first takes the guild's lock,
  ``pg_advisory_xact_lock`` on ``guild:<id>`` (``lock()``), inside its transaction: the balance it
  checks and the job it inserts commit before the next reservation of that guild reads anything, in
  whichever process it runs — 20 submissions with room for 3 reserve exactly 3. Guilds do not wait
  for each other;
- upserts (``ON CONFLICT``), the webhook id claim and blind writes are atomic statements already.

Snapshots (``snapshot()``) are ``REPEATABLE READ READ ONLY`` transactions: one committed state.

Migrations are ``migrations/NNN_*.sql``, applied at start in one transaction under a
transaction-scoped advisory lock, so processes starting together apply each exactly once; the
applied versions are rows of ``schema_migrations``.

The password is registered with the log redaction and appears in no ``repr``, log line or message
(``describe()`` names user, host, port and database only).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg

from bot.adapters.sql.store import SqlStore, migration_files
from bot.domain.errors import ConfigError
from bot.logsafety import register_secret
from bot.settings import url_password

log = logging.getLogger(__name__)

#: the advisory lock (``hashtextextended`` of this text) held while migrating
MIGRATION_LOCK = "videobot:migrations"
DEFAULT_POOL_SIZE = 10
CONNECT_TIMEOUT = 10.0


def describe_url(url: str) -> str:
    """``user@host:port/db`` of a PostgreSQL URL, without the password."""
    parts = urllib.parse.urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"{user}{parts.hostname or 'localhost'}{port}{parts.path or '/'}"


@functools.lru_cache(maxsize=1024)
def numbered(sql: str) -> str:
    """``?`` placeholders as ``$1``, ``$2`` … (a ``?`` inside quotes stays)."""
    out: list[str] = []
    number = 0
    quote: str | None = None
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "?":
            number += 1
            out.append(f"${number}")
            continue
        out.append(char)
    return "".join(out)


class PostgresStore(SqlStore):
    """A pool of connections to one PostgreSQL database. Open with
    ``async with PostgresStore.open(url) as store:``."""

    backend = "postgresql"
    FOR_UPDATE = " FOR UPDATE"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    LIKE_ANY_CASE = "ILIKE"

    def __init__(self, pool: asyncpg.Pool, where: str, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self._pool = pool
        self.where = where

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool, for what is not a query (``LISTEN``/``NOTIFY`` on a held connection)."""
        return self._pool

    def __repr__(self) -> str:
        return f"<PostgresStore {self.where}>"

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, url: str, *, clock: Callable[[], float] = time.time, pool_size: int = DEFAULT_POOL_SIZE
    ) -> AsyncIterator[PostgresStore]:
        store = await cls.connect(url, clock=clock, pool_size=pool_size)
        try:
            yield store
        finally:
            await store.close()

    @classmethod
    async def connect(
        cls, url: str, *, clock: Callable[[], float] = time.time, pool_size: int = DEFAULT_POOL_SIZE
    ) -> PostgresStore:
        register_secret(url_password(url))
        where = describe_url(url)
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            # One line for the operator (``videobot run`` exits with it; Compose restarts the bot).
            raise ConfigError(f"DATABASE_URL: PostgreSQL at {where} refused the connection: {exc}") from None
        store = cls(pool, where, clock)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        await self._pool.close()

    def describe(self) -> str:
        return f"PostgreSQL {self.where}"

    @contextlib.asynccontextmanager
    async def _begin(self, *, write: bool) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            if write:
                transaction = conn.transaction(isolation="read_committed")
            else:
                transaction = conn.transaction(isolation="repeatable_read", readonly=True)
            async with transaction:
                yield conn

    async def _rows(self, conn: Any | None, sql: str, params: Sequence[Any]) -> list[Any]:
        target = conn if conn is not None else self._pool
        return list(await target.fetch(numbered(sql), *params))

    async def _write(self, conn: Any, sql: str, params: Sequence[Any]) -> int:
        status = await conn.execute(numbered(sql), *params)
        last = str(status).rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def lock(self, tx: object, scope: str, key: int | str | None) -> None:
        """``pg_advisory_xact_lock`` on ``scope:key``, released when ``tx`` commits or rolls back."""
        conn = self._within(tx, write=True)
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{scope}:{key}")

    async def copy_records(
        self, tx: object, table: str, columns: Sequence[str], records: list[tuple[Any, ...]]
    ) -> None:
        """Bulk-insert ``records`` into ``table`` inside ``tx`` (``COPY``; for ``migrate-db``)."""
        conn = self._within(tx, write=True)
        await conn.copy_records_to_table(table, records=records, columns=list(columns))

    def drop_json_key(self, column: str, key: str) -> tuple[str, str]:
        return (f"({column}::jsonb - '{key}')::text", f"{column}::jsonb ->> '{key}' IS NOT NULL")

    async def _migrate(self) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
            current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            for version, name, sql in migration_files("bot.adapters.postgres"):
                if version <= current:
                    continue
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations(version, name, applied_at) VALUES ($1, $2, $3)",
                    version,
                    name,
                    time.time(),
                )
                log.info("PostgreSQL schema migrated to %s (%s)", version, name)

    async def schema_version(self) -> int:
        row = await self.fetchone("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(row[0]) if row else 0


async def inspect_postgres(url: str) -> tuple[bool, str]:
    """(ok, one line) about the PostgreSQL database, for ``videobot check``: reads, writes nothing."""
    register_secret(url_password(url))
    where = f"PostgreSQL {describe_url(url)}"
    latest = max((version for version, _, _ in migration_files("bot.adapters.postgres")), default=0)
    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        return False, f"{where} cannot be reached ({exc})"
    try:
        migrated = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        version = (
            int(await conn.fetchval("SELECT MAX(version) FROM schema_migrations") or 0) if migrated else 0
        )
    finally:
        await conn.close()
    if version > latest:
        return False, f"{where} has schema version {version}, newer than this videobot ({latest})"
    later = "" if version == latest else f"; `videobot run` will migrate it to {latest}"
    return True, f"{where} (schema version {version}{later})"
