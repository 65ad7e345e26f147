"""Jobs leased, not owned by whoever created them: with several bot processes on one database, an
unfinished job is worked by one process at a time, the holder of its lease (owner, expiry).

``LeasedJobs`` is the job repository the tracker sees: its ``active_jobs`` takes the free and lapsed
leases and renews this process's own, then answers with the jobs this process holds, so the
tracker's sweep moves only those. ``renew_forever`` runs beside the tracker (its housekeeping) and
renews every third of the lease, however long the tracker waits between sweeps; when it takes a job
over (another process died and its lease lapsed) it wakes the tracker. Reads go to the store; job
state is still written only by the lifecycle, on the store itself (this view refuses writes), and
its status compare-and-set still decides every change, so a process that lost a lease while a
step was in flight cannot deliver or refund twice.

A clean shutdown releases the leases, so another process takes the jobs at once. The owner id is
kept in ``DATA_DIR`` (one per process): a restarted process takes its own leases back at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from bot.domain.jobs import Job, JobChanges, JobRequest, JobStatus
from bot.services.ports import JobLeases, JobRepository, Transaction

log = logging.getLogger(__name__)

OWNER_FILE = "lease-owner"


class LeasedRepository(JobRepository, JobLeases, Protocol):
    """A job store that also keeps leases (the SQLite and PostgreSQL stores)."""


def lease_owner_id(data_dir: Path) -> str:
    """This process's lease owner: made once and kept in ``DATA_DIR`` (each process has its own)."""
    path = data_dir / OWNER_FILE
    try:
        owner = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        owner = ""
    if not owner:
        owner = f"{os.uname().nodename[:40]}-{uuid.uuid4().hex[:12]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(owner + "\n", encoding="utf-8")
    return owner


class LeasedJobs:
    def __init__(
        self,
        store: LeasedRepository,
        owner: str,
        *,
        lease_seconds: float = 30.0,
        shards: Sequence[int] = (0,),
        shard_count: int = 1,
        on_taken: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.shards = tuple(shards)
        self.shard_count = shard_count
        self._on_taken = on_taken
        self._clock = clock
        self._held: set[int] = set()

    # -- what the tracker reads ------------------------------------------------------------------

    async def active_jobs(self) -> list[Job]:
        """The unfinished jobs this process holds a lease on (taking free and lapsed ones)."""
        now = self._clock()
        jobs = await self.store.lease_jobs(
            self.owner,
            now=now,
            until=now + self.lease_seconds,
            renew_before=now + self.lease_seconds * 2 / 3,
            shards=self.shards,
            shard_count=self.shard_count,
            # A new job is the process's of its guild's shard (it was woken by the submit); the
            # others take it only if that one does not (it died between the submit and its sweep).
            others_after=self.lease_seconds,
        )
        held = {job.id for job in jobs}
        new = held - self._held
        self._held = held
        if new and self._on_taken is not None:
            self._on_taken()
        return jobs

    @property
    def held(self) -> set[int]:
        """Job ids this process held at its last look."""
        return set(self._held)

    async def renew_forever(self) -> None:
        """Renew (and take) leases every third of the lease, whatever the tracker is doing."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.active_jobs()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("renewing the job leases failed; trying again")

    async def release(self) -> None:
        """Give the leases back (a clean shutdown)."""
        released = await self.store.release_leases(self.owner)
        self._held = set()
        if released:
            log.info("released the leases of %d unfinished job(s) for other processes", released)

    # -- the rest of the job repository: reads go to the store; writes are the lifecycle's --------

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        return self.store.transaction()

    async def get_job(self, job_id: int) -> Job | None:
        return await self.store.get_job(job_id)

    async def known_provider_ids(self, video_ids: Iterable[str]) -> set[str]:
        return await self.store.known_provider_ids(video_ids)

    async def reference_image(self, name: str) -> bytes | None:
        return await self.store.reference_image(name)

    async def insert_job(self, request: JobRequest, conn: Transaction | None = None) -> int:
        raise _lifecycle_only()

    async def transition(
        self,
        job_id: int,
        *,
        expect: Iterable[JobStatus],
        changes: JobChanges,
        conn: Transaction | None = None,
    ) -> Job | None:
        raise _lifecycle_only()

    async def update_job(self, job_id: int, changes: JobChanges | None = None, /) -> Job:
        raise _lifecycle_only()


def _lifecycle_only() -> TypeError:
    return TypeError("job state is written by JobLifecycle on the store, not through the leased view")
