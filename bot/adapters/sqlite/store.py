"""The SQLite backend of the store: one file through aiosqlite, the embedded default.

Migrations are numbered files in ``migrations/`` applied in order at open; the applied version is
SQLite's ``user_version``. Every read-modify-write runs in ``BEGIN IMMEDIATE`` so two writers never
interleave (in this process or another one on the same file).

Two connections, because SQLite isolates connections, not coroutines. The writer is shared by every
transaction, one at a time (a lock orders them). Plain reads and snapshots go to a second,
read-only connection (WAL mode lets it read while the writer writes): a read never sees another
coroutine's uncommitted transaction, never waits behind one, and sees everything committed before
it was issued, which is the order members observe (the card says "ready" after the commit, then
``/quota`` agrees). Without it, a ``/video`` acknowledgement waited behind every queued write of a
busy tracker (the limit check before it is a read). The queries themselves are
``bot.adapters.sql``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from bot.adapters.sql.store import SqlStore, migration_files, split_sql

log = logging.getLogger(__name__)

# The database holds interaction tokens, the media-link key and members' prompts: owner-only.
FILE_MODE = 0o600
SIDE_FILES = ("-wal", "-shm", "-journal")


def _create_private(path: Path) -> None:
    """Create the database file owner-only before SQLite opens it (SQLite would create it with the
    process umask, usually 0644, and gives -wal/-shm the main file's mode), and narrow existing
    ones. ``os.open``'s mode is masked by the umask, which only removes bits; the chmod makes the
    mode exact."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    restrict_files(path)


def restrict_files(path: Path) -> None:
    """The database file and the side files SQLite keeps next to it, ``FILE_MODE``."""
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in SIDE_FILES)):
        try:
            if candidate.exists() and candidate.stat().st_mode & 0o777 != FILE_MODE:
                os.chmod(candidate, FILE_MODE)
        except OSError as exc:  # not ours (a volume owned by another user): say so, keep running
            log.warning("could not make %s owner-only: %s", candidate, exc.strerror)


async def _open_reader(path: Path) -> aiosqlite.Connection:
    """The read-only connection (see the module docstring)."""
    reader = await aiosqlite.connect(path, isolation_level=None)
    try:
        reader.row_factory = aiosqlite.Row
        await reader.execute("PRAGMA query_only=ON")
        await reader.execute("PRAGMA busy_timeout=10000")
    except BaseException:
        await reader.close()
        raise
    return reader


class Store(SqlStore):
    """One SQLite file. Open with ``async with Store.open(path) as store:``."""

    backend = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: Path, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self._conn = conn
        self.path = path
        self._lock = asyncio.Lock()
        self._reader: aiosqlite.Connection | None = None  # opened once the schema is migrated
        self._read_lock = asyncio.Lock()  # a snapshot's statements run together

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
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        await asyncio.to_thread(_create_private, path)
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.execute("PRAGMA busy_timeout=10000")
            await conn.execute("PRAGMA synchronous=NORMAL")
            store = cls(conn, path, clock)
            await store._migrate()
            store._reader = await _open_reader(path)
        except BaseException:
            await conn.close()
            raise
        await asyncio.to_thread(restrict_files, path)  # -wal/-shm exist now; older ones may be 0644
        return store

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        await self._conn.close()

    def describe(self) -> str:
        return f"SQLite {self.path}"

    @contextlib.asynccontextmanager
    async def _begin(self, *, write: bool) -> AsyncIterator[aiosqlite.Connection]:
        if write or self._reader is None:  # before the reader is open (migrations): the writer
            conn, lock = self._conn, self._lock
        else:
            conn, lock = self._reader, self._read_lock
        async with lock:
            try:
                await conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except asyncio.CancelledError:
                # The BEGIN still runs on the connection's thread: undo it (queued after it), or
                # the next transaction on this connection would find one open.
                with contextlib.suppress(sqlite3.Error):
                    await conn.execute("ROLLBACK")
                raise
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    async def _rows(self, conn: Any | None, sql: str, params: Sequence[Any]) -> list[Any]:
        # execute_fetchall is one trip to the connection's thread (execute, fetch, close are three).
        if conn is not None:
            return list(await conn.execute_fetchall(sql, params))
        if self._reader is None:
            async with self._lock:
                return list(await self._conn.execute_fetchall(sql, params))
        async with self._read_lock:
            return list(await self._reader.execute_fetchall(sql, params))

    async def _write(self, conn: Any, sql: str, params: Sequence[Any]) -> int:
        async with conn.execute(sql, params) as cursor:
            return int(cursor.rowcount)

    async def lock(self, tx: object, scope: str, key: int | str | None) -> None:
        """Nothing to take: ``BEGIN IMMEDIATE`` holds the whole database's write lock already."""
        self._within(tx, write=True)

    def drop_json_key(self, column: str, key: str) -> tuple[str, str]:
        path = f"'$.{key}'"
        return (
            f"json_remove({column}, {path})",
            f"json_valid({column}) AND json_extract({column}, {path}) IS NOT NULL",
        )

    async def _migrate(self) -> None:
        current = await self.schema_version()
        for version, _name, sql in migration_files("bot.adapters.sqlite"):
            if version <= current:
                continue
            async with self.transaction() as tx:
                for statement in split_sql(sql):
                    await self.execute(statement, tx=tx)
                await self.execute(f"PRAGMA user_version={version}", tx=tx)

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0


def inspect_database(path: Path) -> tuple[bool, str]:
    """(ok, one line) about the database as it is on disk, for ``videobot check``: opened read-only
    and immutable, so that checking creates nothing (not even the WAL side files)."""
    if not path.exists():
        return True, f"{path} not created yet (`videobot run` creates it)"
    latest = max((version for version, _, _ in migration_files("bot.adapters.sqlite")), default=0)
    try:
        uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        return False, f"{path} cannot be read as SQLite ({exc})"
    if version > latest:
        return False, f"{path} has schema version {version}, newer than this videobot ({latest})"
    later = "" if version == latest else f"; `videobot run` will migrate it to {latest}"
    return True, f"{path} (schema version {version}{later})"
