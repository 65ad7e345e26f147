"""The aiosqlite store: one SQLite file, and the only package with SQL in it (with the repositories
beside this module, which use the public API below).

Migrations are numbered files in ``migrations/`` applied in order at open; the applied version is
SQLite's ``user_version``. Every read-modify-write runs in ``BEGIN IMMEDIATE`` so two writers never
interleave. The connection is shared by every coroutine and SQLite isolates connections, not
coroutines, so one lock orders everything on it: a read waits for an open transaction to finish
instead of seeing its uncommitted changes (and a read issued after a transaction began sees what it
committed, which is the order members observe: the card says "ready", then ``/quota`` agrees).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from bot.domain.jobs import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    ChargeState,
    Job,
    JobChanges,
    JobRequest,
    JobStatus,
)

log = logging.getLogger(__name__)

_JOB_COLUMNS = tuple(f.name for f in fields(Job))
_ACTIVE = tuple(s.value for s in ACTIVE_STATUSES)
_IN_ACTIVE = f"status IN ({', '.join('?' for _ in _ACTIVE)})"
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


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in resources.files("bot.adapters.sqlite").joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def job_from_row(row: Any) -> Job:
    """A ``jobs`` row as a ``Job``; every repository that reads jobs maps them with this."""
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
        self._lock = asyncio.Lock()
        # What holds the lock: "write" (``transaction()``) or "read" (``snapshot()``), and which task,
        # so a read that forgot to pass its own transaction fails instead of waiting for itself.
        self._open: Literal["write", "read"] | None = None
        self._owner: asyncio.Task[Any] | None = None

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
        except BaseException:
            await conn.close()
            raise
        await asyncio.to_thread(restrict_files, path)  # -wal/-shm exist now; older ones may be 0644
        return store

    async def close(self) -> None:
        await self._conn.close()

    def now(self) -> float:
        """The store's clock (Unix seconds), which stamps every row it writes."""
        return self._clock()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``: takes the lock up front so the read part of a
        read-modify-write sees what it will modify. Pass what it yields back to ``fetchone``,
        ``fetchall`` and ``execute`` (or as a repository's ``conn``) to run inside it."""
        async with self._holding("write"):
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """Several reads that must agree with each other (one read transaction, so neither this
        process nor another one can commit between them). Read-only: ``execute`` refuses it."""
        async with self._holding("read"):
            await self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                await self._conn.execute("COMMIT")

    @contextlib.asynccontextmanager
    async def _holding(self, mode: Literal["write", "read"]) -> AsyncIterator[None]:
        self._refuse_waiting_for_itself()
        async with self._lock:
            self._open, self._owner = mode, asyncio.current_task()
            try:
                yield
            finally:
                self._open, self._owner = None, None

    def _refuse_waiting_for_itself(self) -> None:
        if self._owner is not None and self._owner is asyncio.current_task():
            raise RuntimeError(
                "this task has a transaction open on the store: pass it (tx=/conn=) instead of "
                "starting another read or transaction, which would wait for itself forever"
            )

    def _within(self, tx: object, *, write: bool = False) -> aiosqlite.Connection:
        """The connection, if ``tx`` is this task's open ``transaction()`` (or, to read, ``snapshot()``)."""
        if tx is not self._conn or self._open is None or self._owner is not asyncio.current_task():
            raise ValueError("not an open transaction of this store")
        if write and self._open != "write":
            raise ValueError("writes need a transaction(), not a snapshot()")
        return self._conn

    async def fetchall(
        self, sql: str, params: Sequence[Any] = (), *, tx: object | None = None
    ) -> list[aiosqlite.Row]:
        """Rows of one query: inside ``tx`` when given (it sees its own writes), else the last
        committed state, after any transaction open now has finished."""
        # execute_fetchall is one trip to the connection's thread (execute, fetch, close are three).
        if tx is not None:
            return list(await self._within(tx).execute_fetchall(sql, params))
        async with self._holding("read"):
            return list(await self._conn.execute_fetchall(sql, params))

    async def fetchone(
        self, sql: str, params: Sequence[Any] = (), *, tx: object | None = None
    ) -> aiosqlite.Row | None:
        """The first row of a query (meant for ones that return at most one)."""
        rows = await self.fetchall(sql, params, tx=tx)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Sequence[Any] = (), *, tx: object) -> int:
        """Run one write inside ``tx`` (from ``transaction()``); returns the last inserted row id."""
        row = await self._within(tx, write=True).execute_insert(sql, params)  # one trip to the thread
        return int(row[0]) if row else 0

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
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def ping(self) -> bool:
        return (await self.fetchone("SELECT 1")) is not None

    # -- meta ----------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        row = await self.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        async with self.transaction() as tx:
            await self.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
                tx=tx,
            )

    async def swap_meta(self, key: str, value: str) -> str | None:
        """Set ``key`` to ``value`` and return its previous value (None: unset), in one transaction."""
        async with self.transaction() as tx:
            row = await self.fetchone("SELECT value FROM meta WHERE key = ?", (key,), tx=tx)
            await self.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
                tx=tx,
            )
        return str(row[0]) if row else None

    # -- jobs ----------------------------------------------------------------------------------

    async def insert_job(self, request: JobRequest, conn: object | None = None) -> int:
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
            return await self.execute(sql, tuple(values.values()), tx=conn)
        async with self.transaction() as tx:
            return await self.execute(sql, tuple(values.values()), tx=tx)

    async def get_job(self, job_id: int, *, tx: object | None = None) -> Job | None:
        row = await self.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,), tx=tx)
        return job_from_row(row) if row else None

    async def active_jobs(self) -> list[Job]:
        sql = f"SELECT * FROM jobs WHERE status IN ({', '.join('?' for _ in _ACTIVE)}) ORDER BY id"
        return [job_from_row(row) for row in await self.fetchall(sql, _ACTIVE)]

    # -- leases (``bot.services.leases``) --------------------------------------------------------

    async def lease_jobs(
        self,
        owner: str,
        *,
        now: float,
        until: float,
        renew_before: float,
        shards: Sequence[int] = (0,),
        shard_count: int = 1,
        others_after: float = 0.0,
    ) -> list[Job]:
        """The unfinished jobs ``owner`` holds a lease on, after taking (until ``until``) the ones
        nobody holds and those whose lease lapsed before ``now``, and renewing its own that expire
        before ``renew_before``. A new job is taken at once by a process with its guild's shard
        (``shards`` of ``shard_count``: the one whose member asked), by any other once it has
        waited ``others_after`` seconds; released and lapsed ones by anyone. One ``BEGIN
        IMMEDIATE`` transaction: SQLite's write lock makes it the one taker, as ``FOR UPDATE SKIP
        LOCKED`` does on PostgreSQL."""
        mine = _shard_clause(shards, shard_count)
        async with self.transaction() as tx:
            taken = await self.fetchall(
                f"SELECT id, lease_owner FROM jobs WHERE {_IN_ACTIVE} AND lease_owner IS NOT NULL "
                "AND lease_owner != ? AND lease_expires_at < ?",
                (*_ACTIVE, owner, now),
                tx=tx,
            )
            for row in taken:
                log.info("job %s: taking it over (the lease of %s lapsed)", row[0], row[1])
            await tx.execute(
                f"UPDATE jobs SET lease_owner = ?, lease_expires_at = ? WHERE {_IN_ACTIVE} AND ("
                f"(lease_owner IS NULL AND (lease_expires_at IS NOT NULL OR {mine} OR created_at < ?)) "
                "OR (lease_owner != ? AND lease_expires_at < ?) "
                "OR (lease_owner = ? AND lease_expires_at < ?))",
                (owner, until, *_ACTIVE, now - others_after, owner, now, owner, renew_before),
            )
            rows = await self.fetchall(
                f"SELECT * FROM jobs WHERE {_IN_ACTIVE} AND lease_owner = ? ORDER BY id",
                (*_ACTIVE, owner),
                tx=tx,
            )
        return [job_from_row(row) for row in rows]

    async def release_leases(self, owner: str) -> int:
        """Give up every lease ``owner`` holds (a clean shutdown: another process takes the jobs at
        once instead of after the lease lapses). Returns how many."""
        async with self.transaction() as tx:
            cursor = await tx.execute(
                f"UPDATE jobs SET lease_owner = NULL, lease_expires_at = 0 WHERE lease_owner = ? AND {_IN_ACTIVE}",
                (owner, *_ACTIVE),
            )
            return cursor.rowcount

    async def lease_holders(self) -> dict[int, str | None]:
        """Unfinished job id → the owner of its lease (None: nobody), for operators and tests."""
        rows = await self.fetchall(f"SELECT id, lease_owner FROM jobs WHERE {_IN_ACTIVE}", _ACTIVE)
        return {int(row[0]): row[1] for row in rows}

    async def known_provider_ids(self, video_ids: Iterable[str]) -> set[str]:
        """Which of these provider video ids already belong to a job."""
        ids = list(video_ids)
        if not ids:
            return set()
        sql = f"SELECT provider_video_id FROM jobs WHERE provider_video_id IN ({', '.join('?' for _ in ids)})"
        return {str(row[0]) for row in await self.fetchall(sql, ids)}

    async def update_job(self, job_id: int, changes: JobChanges | None = None, /, **columns: Any) -> Job:
        """Set columns of one job whatever its status, and return it as stored. For data that is not
        a status change (the lifecycle records replies this way) and for seeding history in tests;
        ``columns`` are ``JobChanges`` fields by name."""
        change = changes if changes is not None else JobChanges(**columns)
        async with self.transaction() as conn:
            await self._update(conn, job_id, change)
            job = await self.get_job(job_id, tx=conn)
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
            current = await self.fetchone(
                f"SELECT status FROM jobs WHERE id = ? AND status IN ({', '.join('?' for _ in expected)})",
                (job_id, *expected),
                tx=conn,
            )
            if current is None:
                return None
            await self._update(conn, job_id, changes)
            # Read back inside the transaction: the caller gets exactly the row it wrote.
            return await self.get_job(job_id, tx=conn)

    async def _update(self, conn: aiosqlite.Connection, job_id: int, changes: JobChanges) -> None:
        values = changes.columns()
        values["updated_at"] = self._clock()
        assignments = ", ".join(f"{column} = ?" for column in values)
        await conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), job_id))

    # -- retention (``bot.services.retention``) -------------------------------------------------

    async def clear_expired_tokens(self, now: float) -> int:
        """Forget interaction tokens past their expiry, on every job (they are credentials, and
        useless by then: the presenter uses channel routes). Returns how many were cleared."""
        async with self.transaction() as tx:
            cursor = await tx.execute(
                "UPDATE jobs SET interaction_token = NULL WHERE interaction_token IS NOT NULL "
                "AND (token_expires_at IS NULL OR token_expires_at < ?)",
                (now,),
            )
            return cursor.rowcount

    async def prune_job_details(self, finished_before: float, placeholder: str) -> int:
        """Replace the prompt (with ``placeholder``) and drop the error text of jobs that finished
        before ``finished_before``, and the prompt in their submission's audit record. The rows
        stay: credits, usage reports, history and remix lineage count them."""
        final = tuple(s.value for s in FINAL_STATUSES)
        async with self.transaction() as tx:
            cursor = await tx.execute(
                f"UPDATE jobs SET prompt = ?, error_message = NULL "
                f"WHERE status IN ({', '.join('?' for _ in final)}) AND finished_at < ? AND prompt != ? "
                "RETURNING id",
                (placeholder, *final, finished_before, placeholder),
            )
            ids = [int(row[0]) for row in await cursor.fetchall()]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                await tx.execute(
                    "UPDATE audit_log SET details = json_remove(details, '$.prompt') "
                    f"WHERE job_id IN ({', '.join('?' for _ in chunk)}) AND json_valid(details) "
                    "AND json_extract(details, '$.prompt') IS NOT NULL",
                    chunk,
                )
            return len(ids)

    async def prune_records(self, before: float) -> tuple[int, int]:
        """Delete audit records and grants created before ``before``: (audit rows, grants)."""
        async with self.transaction() as tx:
            audit = await tx.execute("DELETE FROM audit_log WHERE created_at < ?", (before,))
            grants = await tx.execute("DELETE FROM grants WHERE created_at < ?", (before,))
            return audit.rowcount, grants.rowcount

    async def jobs_keeping_files(self, finished_since: float) -> tuple[set[int], set[str]]:
        """Ids of the jobs whose files stay (unfinished, or finished at or after ``finished_since``)
        and the reference images they use, from one snapshot."""
        where = f"{_IN_ACTIVE} OR finished_at IS NULL OR finished_at >= ?"
        async with self.snapshot() as snap:
            ids = await self.fetchall(
                f"SELECT id FROM jobs WHERE {where}", (*_ACTIVE, finished_since), tx=snap
            )
            refs = await self.fetchall(
                f"SELECT DISTINCT reference_image_path FROM jobs WHERE reference_image_path IS NOT NULL "
                f"AND ({where})",
                (*_ACTIVE, finished_since),
                tx=snap,
            )
        return {int(row[0]) for row in ids}, {str(row[0]) for row in refs}


def _shard_clause(shards: Sequence[int], shard_count: int) -> str:
    """SQL true for jobs whose guild is on one of ``shards`` (Discord's ``(guild_id >> 22) %
    shard_count``; jobs outside guilds belong to shard 0). Only integers are inlined."""
    ids = ", ".join(str(int(shard)) for shard in shards) or "-1"
    return f"((COALESCE(guild_id, 0) >> 22) % {int(shard_count)}) IN ({ids})"


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (they contain no semicolons inside strings or triggers)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def inspect_database(path: Path) -> tuple[bool, str]:
    """(ok, one line) about the database as it is on disk, for ``videobot check``: opened read-only
    and immutable, so that checking creates nothing (not even the WAL side files)."""
    if not path.exists():
        return True, f"{path} not created yet (`videobot run` creates it)"
    latest = max((version for version, _, _ in _migrations()), default=0)
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
