"""The store both database backends share: every query of the job repository, retention and the
small key/value facts, written once in the SQL that SQLite and PostgreSQL both speak (``?``
placeholders, which the PostgreSQL backend numbers; ``RETURNING``; ``ON CONFLICT``).

A backend (``bot.adapters.sqlite.store.Store``, ``bot.adapters.postgres.store.PostgresStore``)
supplies the connection: how a transaction, a read-only snapshot and a plain read run, and the few
places where the two differ in meaning rather than spelling:

- ``FOR_UPDATE``: SQLite's ``BEGIN IMMEDIATE`` already holds the database's one write lock, so the
  read of a read-modify-write needs nothing more; PostgreSQL runs transactions concurrently (READ
  COMMITTED) and locks the row it read with ``SELECT … FOR UPDATE``.
- ``lock(tx, scope, key)``: a lock on something that is not one row (a guild's credits), held until
  the transaction ends; a no-op on SQLite for the same reason.
- ``LIKE_ANY_CASE``, ``drop_json_key``: spelling with no common form.

Every transaction a task opens is this task's only one on the store: a read that forgot to pass
it fails at once instead of reading outside it (or, on SQLite, waiting for itself forever).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any, ClassVar

from bot.domain.jobs import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    ChargeState,
    Job,
    JobChanges,
    JobKind,
    JobRequest,
    JobStatus,
)

log = logging.getLogger(__name__)

_JOB_COLUMNS = tuple(f.name for f in fields(Job))
#: ``SELECT <every Job field, in the dataclass's order> FROM jobs``: what ``job_from_row`` reads.
SELECT_JOBS = f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs"
_ENUMS = (
    (_JOB_COLUMNS.index("status"), {s.value: s for s in JobStatus}),
    (_JOB_COLUMNS.index("charge_state"), {s.value: s for s in ChargeState}),
    (_JOB_COLUMNS.index("kind"), {s.value: s for s in JobKind}),
)
_SELECT_REVISED_JOBS = f"SELECT {', '.join(_JOB_COLUMNS)}, revision FROM jobs"
_IDS_PER_QUERY = 500  # well under SQLite's and asyncpg's limits on bound parameters
_ACTIVE = tuple(s.value for s in ACTIVE_STATUSES)
_IN_ACTIVE = f"status IN ({', '.join('?' for _ in _ACTIVE)})"


def marks(values: Sized) -> str:
    """``?, ?, ?`` for an ``IN (…)`` list of ``values``."""
    return ", ".join("?" for _ in range(len(values)))


def job_from_row(row: Any) -> Job:
    """A row of ``SELECT_JOBS`` as a ``Job``; every repository that reads jobs maps them with this.
    By position, not by name: a sweep maps every job in flight, and looking each column up by name
    cost three times as much (12 ms per 1,000 rows, against 4)."""
    values = list(row)
    for index, members in _ENUMS:
        value = values[index]
        member = members.get(value)
        if member is None:
            raise ValueError(f"unknown value {value!r} in column {_JOB_COLUMNS[index]} of job {values[0]}")
        values[index] = member
    return Job(*values)


@dataclass(eq=False)
class Tx:
    """An open transaction (``write``) or snapshot of one store, usable by the task that opened it
    (the ``Transaction`` the service ports pass around)."""

    store: SqlStore
    conn: Any
    write: bool
    task: asyncio.Task[Any] | None = field(default_factory=asyncio.current_task)
    open: bool = True


class SqlStore(abc.ABC):
    """Jobs, retention and meta over a backend's connection (see the module docstring)."""

    FOR_UPDATE: ClassVar[str] = ""
    # Rows another transaction has locked are passed over, not waited for (taking job leases).
    SKIP_LOCKED: ClassVar[str] = ""
    LIKE_ANY_CASE: ClassVar[str] = "LIKE"
    #: ``postgresql`` or ``sqlite``: for messages and ``videobot check``.
    backend: ClassVar[str]

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._open_by_task: dict[asyncio.Task[Any], Tx] = {}
        # Job id -> (revision, the Job as read at it): what ``_held_jobs`` need not read again.
        self._seen_jobs: dict[int, tuple[int, Job]] = {}

    # -- what a backend provides ---------------------------------------------------------------

    @abc.abstractmethod
    def _begin(self, *, write: bool) -> contextlib.AbstractAsyncContextManager[Any]:
        """A connection inside a transaction (``write``) or a read-only consistent snapshot."""

    @abc.abstractmethod
    async def _rows(self, conn: Any | None, sql: str, params: Sequence[Any]) -> list[Any]:
        """Rows of ``sql`` on ``conn`` (None: the last committed state, outside any transaction)."""

    @abc.abstractmethod
    async def _write(self, conn: Any, sql: str, params: Sequence[Any]) -> int:
        """Run one statement on ``conn``; how many rows it changed."""

    @abc.abstractmethod
    async def lock(self, tx: object, scope: str, key: int | str | None) -> None:
        """Hold a lock named ``scope``/``key`` until ``tx`` ends (every writer that reads before it
        writes the same thing takes it first)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def describe(self) -> str:
        """Which database, for the start-up line and ``videobot check`` (never a password)."""

    @abc.abstractmethod
    async def schema_version(self) -> int: ...

    @abc.abstractmethod
    def drop_json_key(self, column: str, key: str) -> tuple[str, str]:
        """(``SET`` expression, ``WHERE`` condition) removing ``key`` from the JSON text in ``column``
        where it is present."""

    # -- transactions --------------------------------------------------------------------------

    def now(self) -> float:
        """The store's clock (Unix seconds), which stamps every row it writes."""
        return self._clock()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A read-modify-write: the read part sees what it will modify (SQLite: ``BEGIN
        IMMEDIATE``; PostgreSQL: READ COMMITTED plus the row and scope locks the queries take).
        Pass what it yields back to ``fetchone``, ``fetchall`` and ``execute`` (or as a
        repository's ``conn``) to run inside it."""
        async with self._opening(write=True) as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def _joining(self, conn: object | None) -> AsyncIterator[Any]:
        """``conn`` when the caller has a transaction open (the work commits with the rest of it),
        else a transaction of its own."""
        if conn is not None:
            yield conn
            return
        async with self.transaction() as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Tx]:
        """Several reads that must agree with each other (one consistent committed state, so no
        process can commit between them). Read-only: ``execute`` refuses it."""
        async with self._opening(write=False) as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def _opening(self, *, write: bool) -> AsyncIterator[Tx]:
        self._refuse_waiting_for_itself()
        async with self._begin(write=write) as conn:
            tx = Tx(self, conn, write)
            if tx.task is not None:
                self._open_by_task[tx.task] = tx
            try:
                yield tx
            finally:
                tx.open = False
                if tx.task is not None:
                    self._open_by_task.pop(tx.task, None)

    def _refuse_waiting_for_itself(self) -> None:
        task = asyncio.current_task()
        if task is not None and task in self._open_by_task:
            raise RuntimeError(
                "this task has a transaction open on the store: pass it (tx=/conn=) instead of "
                "starting another read or transaction, which would wait for itself forever"
            )

    def _within(self, tx: object, *, write: bool = False) -> Any:
        """The connection, if ``tx`` is this task's open ``transaction()`` (or, to read, ``snapshot()``)."""
        if (
            not isinstance(tx, Tx)
            or tx.store is not self
            or not tx.open
            or tx.task is not asyncio.current_task()
        ):
            raise ValueError("not an open transaction of this store")
        if write and not tx.write:
            raise ValueError("writes need a transaction(), not a snapshot()")
        return tx.conn

    def writing(self, tx: object) -> bool:
        """``tx`` is an open write transaction of this store (a lock is worth taking in it)."""
        return isinstance(tx, Tx) and tx.store is self and tx.write and tx.open

    async def fetchall(self, sql: str, params: Sequence[Any] = (), *, tx: object | None = None) -> list[Any]:
        """Rows of one query (indexable by position and by column name; ``dict(row)`` works): inside
        ``tx`` when given (it sees its own writes), else the last committed state."""
        if tx is not None:
            return await self._rows(self._within(tx), sql, params)
        self._refuse_waiting_for_itself()
        return await self._rows(None, sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] = (), *, tx: object | None = None) -> Any | None:
        """The first row of a query (meant for ones that return at most one)."""
        rows = await self.fetchall(sql, params, tx=tx)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Sequence[Any] = (), *, tx: object) -> int:
        """Run one write inside ``tx`` (from ``transaction()``); returns how many rows it changed."""
        return await self._write(self._within(tx, write=True), sql, params)

    async def insert(self, sql: str, params: Sequence[Any] = (), *, tx: object) -> int:
        """Run one ``INSERT`` into a table with an ``id`` key inside ``tx``; returns the new id."""
        rows = await self._rows(self._within(tx, write=True), f"{sql} RETURNING id", params)
        return int(rows[0][0])

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
        """Set ``key`` to ``value`` and return its previous value (None: unset), atomically: of two
        processes swapping in the same value, only the first sees an older one."""
        async with self.transaction() as tx:
            await self.lock(tx, "meta", key)
            row = await self.fetchone(f"SELECT value FROM meta WHERE key = ?{self.FOR_UPDATE}", (key,), tx=tx)
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
        sql = f"INSERT INTO jobs({', '.join(values)}) VALUES ({marks(values)})"
        async with self._joining(conn) as tx:
            return await self.insert(sql, tuple(values.values()), tx=tx)

    async def get_job(self, job_id: int, *, tx: object | None = None) -> Job | None:
        row = await self.fetchone(f"{SELECT_JOBS} WHERE id = ?", (job_id,), tx=tx)
        return job_from_row(row) if row else None

    async def active_jobs(self) -> list[Job]:
        sql = f"{SELECT_JOBS} WHERE {_IN_ACTIVE} ORDER BY id"
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
        nobody holds and those whose lease lapsed before ``now``, and renewing its own once one of
        them expires before ``renew_before`` (all of them together: renewed one by one, leases taken
        over time would each come due at another sweep). A new job is taken at once by a process
        with its guild's shard (``shards`` of ``shard_count``: the one whose member asked), by any
        other once it has waited ``others_after`` seconds; released and lapsed ones by anyone.

        Most calls find nothing to take or renew: that is checked with a plain read, which then
        answers, and the write lock is left to the submissions and transitions. Otherwise one
        transaction: on PostgreSQL the rows are picked ``FOR UPDATE SKIP LOCKED`` (two processes
        taking at once split the free jobs instead of waiting on each other); on SQLite ``BEGIN
        IMMEDIATE``'s write lock makes this the one taker."""
        mine = _shard_clause(shards, shard_count)
        claimable = (
            f"{_IN_ACTIVE} AND ("
            f"(lease_owner IS NULL AND (lease_expires_at IS NOT NULL OR {mine} OR created_at < ?)) "
            "OR (lease_owner != ? AND lease_expires_at < ?) "
            "OR (lease_owner = ? AND lease_expires_at < ?))"
        )

        def claimable_params(own_expiring_before: float) -> tuple[Any, ...]:
            return (*_ACTIVE, now - others_after, owner, now, owner, own_expiring_before)

        due = await self.fetchone(
            f"SELECT 1 FROM jobs WHERE {claimable} LIMIT 1", claimable_params(renew_before)
        )
        if due is None:
            return await self._held_jobs(owner)
        async with self.transaction() as tx:
            taken = await self.fetchall(
                f"SELECT id, lease_owner FROM jobs WHERE {_IN_ACTIVE} AND lease_owner IS NOT NULL "
                f"AND lease_owner != ? AND lease_expires_at < ?{self.SKIP_LOCKED}",
                (*_ACTIVE, owner, now),
                tx=tx,
            )
            for row in taken:
                log.info("job %s: taking it over (the lease of %s lapsed)", row[0], row[1])
            await self.execute(
                f"UPDATE jobs SET lease_owner = ?, lease_expires_at = ? WHERE id IN ("
                f"SELECT id FROM jobs WHERE {claimable}{self.SKIP_LOCKED})",
                (owner, until, *claimable_params(until)),
                tx=tx,
            )
            return await self._held_jobs(owner, tx)

    async def _held_jobs(self, owner: str, tx: Tx | None = None) -> list[Job]:
        """The unfinished jobs ``owner`` holds, by id. Only the rows whose revision moved since the
        last look are read and mapped again; the rest are the ``Job`` objects of that look (they are
        frozen), so a sweep with 1,000 jobs in flight reads 1,000 pairs of numbers, not 1,000 rows.

        Outside a transaction the reads are separate statements (no snapshot holding the read
        connection between them, which the members' acknowledgements wait for): a job that changes
        in between is read as it is by then, and one that ended or moved meanwhile is left out."""
        rows = await self.fetchall(
            f"SELECT id, revision FROM jobs WHERE {_IN_ACTIVE} AND lease_owner = ? ORDER BY id",
            (*_ACTIVE, owner),
            tx=tx,
        )
        seen = self._seen_jobs
        found: dict[int, Job] = {}
        changed: list[int] = []
        for job_id, revision in rows:
            hit = seen.get(job_id)
            if hit is not None and hit[0] == revision:
                found[job_id] = hit[1]
            else:
                changed.append(job_id)
        for start in range(0, len(changed), _IDS_PER_QUERY):
            some = changed[start : start + _IDS_PER_QUERY]
            for row in await self.fetchall(
                f"{_SELECT_REVISED_JOBS} WHERE id IN ({marks(some)}) AND {_IN_ACTIVE} AND lease_owner = ?",
                (*some, *_ACTIVE, owner),
                tx=tx,
            ):
                *values, revision = row
                job = job_from_row(values)
                found[job.id] = job
                seen[job.id] = (revision, job)
        if len(seen) > len(found):
            self._seen_jobs = {job_id: hit for job_id, hit in seen.items() if job_id in found}
        return [found[job_id] for job_id, _ in rows if job_id in found]

    async def release_leases(self, owner: str) -> int:
        """Give up every lease ``owner`` holds (a clean shutdown: another process takes the jobs at
        once instead of after the lease lapses). Returns how many."""
        async with self.transaction() as tx:
            return await self.execute(
                f"UPDATE jobs SET lease_owner = NULL, lease_expires_at = 0 WHERE lease_owner = ? AND {_IN_ACTIVE}",
                (owner, *_ACTIVE),
                tx=tx,
            )

    async def lease_holders(self) -> dict[int, str | None]:
        """Unfinished job id → the owner of its lease (None: nobody), for operators and tests."""
        rows = await self.fetchall(f"SELECT id, lease_owner FROM jobs WHERE {_IN_ACTIVE}", _ACTIVE)
        return {int(row[0]): row[1] for row in rows}

    async def known_provider_ids(self, video_ids: Iterable[str]) -> set[str]:
        """Which of these provider video ids already belong to a job."""
        ids = list(video_ids)
        if not ids:
            return set()
        sql = f"SELECT provider_video_id FROM jobs WHERE provider_video_id IN ({marks(ids)})"
        return {str(row[0]) for row in await self.fetchall(sql, ids)}

    async def update_job(self, job_id: int, changes: JobChanges | None = None, /, **columns: Any) -> Job:
        """Set columns of one job whatever its status, and return it as stored. For data that is not
        a status change (the lifecycle records replies this way) and for seeding history in tests;
        ``columns`` are ``JobChanges`` fields by name."""
        change = changes if changes is not None else JobChanges(**columns)
        async with self.transaction() as tx:
            await self._update(tx, job_id, change)
            job = await self.get_job(job_id, tx=tx)
        if job is None:
            raise KeyError(job_id)
        return job

    async def transition(
        self,
        job_id: int,
        *,
        expect: Iterable[JobStatus],
        changes: JobChanges,
        conn: object | None = None,
    ) -> Job | None:
        """Update a job only if its status is one of ``expect`` (a compare-and-set).

        Returns the updated job, or None when another actor (a cancel, a duplicate webhook, another
        process) got there first. This is what keeps delivery and refunds exactly-once: on
        PostgreSQL the read locks the row (``FOR UPDATE``), so a concurrent transition waits, then
        sees the new status and finds nothing. ``services.lifecycle`` is its only caller.
        """
        expected = tuple(s.value for s in expect)
        async with self._joining(conn) as tx:
            current = await self.fetchone(
                f"SELECT status FROM jobs WHERE id = ? AND status IN ({marks(expected)}){self.FOR_UPDATE}",
                (job_id, *expected),
                tx=tx,
            )
            if current is None:
                return None
            await self._update(tx, job_id, changes)
            # Read back inside the transaction: the caller gets exactly the row it wrote.
            return await self.get_job(job_id, tx=tx)

    async def _update(self, tx: Tx, job_id: int, changes: JobChanges) -> None:
        values = changes.columns()
        values["updated_at"] = self._clock()
        assignments = ", ".join(f"{column} = ?" for column in values)
        await self.execute(
            f"UPDATE jobs SET {assignments}, revision = revision + 1 WHERE id = ?",
            (*values.values(), job_id),
            tx=tx,
        )

    # -- reference images (``bot.services.references``) -----------------------------------------

    async def save_reference_image(self, name: str, data: bytes) -> None:
        async with self.transaction() as tx:
            await self.execute(
                "INSERT INTO reference_images(name, data, created_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO NOTHING",
                (name, data, self._clock()),
                tx=tx,
            )

    async def reference_image(self, name: str) -> bytes | None:
        row = await self.fetchone("SELECT data FROM reference_images WHERE name = ?", (name,))
        return bytes(row[0]) if row else None

    # -- retention (``bot.services.retention``) -------------------------------------------------

    async def clear_expired_tokens(self, now: float) -> int:
        """Forget interaction tokens past their expiry, on every job (they are credentials, and
        useless by then: the presenter uses channel routes). Returns how many were cleared."""
        async with self.transaction() as tx:
            return await self.execute(
                "UPDATE jobs SET interaction_token = NULL, revision = revision + 1 WHERE interaction_token IS NOT NULL "
                "AND (token_expires_at IS NULL OR token_expires_at < ?)",
                (now,),
                tx=tx,
            )

    async def prune_job_details(self, finished_before: float, placeholder: str) -> int:
        """Replace the prompt (with ``placeholder``) and drop the error text of jobs that finished
        before ``finished_before``, and the prompt in their submission's audit record. The rows
        stay: credits, usage reports, history and remix lineage count them."""
        final = tuple(s.value for s in FINAL_STATUSES)
        drop, present = self.drop_json_key("details", "prompt")
        async with self.transaction() as tx:
            rows = await self._rows(
                self._within(tx, write=True),
                f"UPDATE jobs SET prompt = ?, error_message = NULL, revision = revision + 1 "
                f"WHERE status IN ({marks(final)}) AND finished_at < ? AND prompt != ? "
                "RETURNING id",
                (placeholder, *final, finished_before, placeholder),
            )
            ids = [int(row[0]) for row in rows]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                await self.execute(
                    f"UPDATE audit_log SET details = {drop} WHERE job_id IN ({marks(chunk)}) AND {present}",
                    chunk,
                    tx=tx,
                )
            return len(ids)

    async def prune_records(self, before: float) -> tuple[int, int]:
        """Delete audit records and grants created before ``before``: (audit rows, grants)."""
        async with self.transaction() as tx:
            audit = await self.execute("DELETE FROM audit_log WHERE created_at < ?", (before,), tx=tx)
            grants = await self.execute("DELETE FROM grants WHERE created_at < ?", (before,), tx=tx)
            return audit, grants

    async def jobs_keeping_files(self, finished_since: float) -> tuple[set[int], set[str]]:
        """Ids of the jobs whose files stay (unfinished, or finished at or after ``finished_since``)
        and the reference images and edit clips they use, from one snapshot."""
        where = f"{_IN_ACTIVE} OR finished_at IS NULL OR finished_at >= ?"
        async with self.snapshot() as snap:
            ids = await self.fetchall(
                f"SELECT id FROM jobs WHERE {where}", (*_ACTIVE, finished_since), tx=snap
            )
            refs = await self.fetchall(
                f"SELECT DISTINCT reference_image_path FROM jobs WHERE reference_image_path IS NOT NULL "
                f"AND ({where}) UNION SELECT DISTINCT clip_path FROM jobs WHERE clip_path IS NOT NULL "
                f"AND ({where})",
                (*_ACTIVE, finished_since, *_ACTIVE, finished_since),
                tx=snap,
            )
        return {int(row[0]) for row in ids}, {str(row[0]) for row in refs}

    async def prune_reference_images(self, before: float, keep: set[str]) -> int:
        """Delete stored starting images made before ``before`` whose name is not in ``keep``."""
        async with self.transaction() as tx:
            rows = await self.fetchall(
                "SELECT name FROM reference_images WHERE created_at < ?", (before,), tx=tx
            )
            names = [str(row[0]) for row in rows if str(row[0]) not in keep]
            for start in range(0, len(names), 500):
                chunk = names[start : start + 500]
                await self.execute(
                    f"DELETE FROM reference_images WHERE name IN ({marks(chunk)})", chunk, tx=tx
                )
        return len(names)


def _shard_clause(shards: Sequence[int], shard_count: int) -> str:
    """SQL true for jobs whose guild is on one of ``shards`` (Discord's ``(guild_id >> 22) %
    shard_count``; jobs outside guilds belong to shard 0). Only integers are inlined."""
    ids = ", ".join(str(int(shard)) for shard in shards) or "-1"
    return f"((COALESCE(guild_id, 0) >> 22) % {int(shard_count)}) IN ({ids})"


def split_sql(script: str) -> list[str]:
    """Split a migration into statements (they contain no semicolons inside strings or triggers)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]


def migration_files(package: str) -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of the numbered ``.sql`` files in ``package``'s ``migrations/``."""
    found = []
    for entry in resources.files(package).joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)
