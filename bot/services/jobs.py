"""Accepting and cancelling jobs, and reading balances: the core operations the Discord layer calls."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from bot.adapters.sqlite.credits import SqliteCreditsRepository
from bot.adapters.sqlite.history import SqliteHistoryRepository
from bot.adapters.sqlite.store import Store
from bot.domain.catalog import default_catalog
from bot.domain.credits import Balance, GuildPolicy
from bot.domain.errors import UserError
from bot.domain.jobs import CANCELLABLE_STATUSES, ChargeState, Job, JobRequest, JobStatus
from bot.services.credits import CreditsService
from bot.services.ports_credits import Transaction

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 6000  # Discord's limit for one string option; providers take up to 32,000


def clean_prompt(prompt: str) -> str:
    """Normalise a member's prompt or explain why it can't be used."""
    text = prompt.strip()
    if not text:
        raise UserError(
            "The prompt is empty. Describe the video you want, e.g. `a red fox running through snow`."
        )
    if len(text) > MAX_PROMPT_CHARS:
        raise UserError(
            f"The prompt is {len(text):,} characters; the limit is {MAX_PROMPT_CHARS:,}. Shorten it and try again."
        )
    return text


class JobService:
    def __init__(
        self,
        store: Store,
        *,
        on_new_job: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        credits_service: CreditsService | None = None,
    ) -> None:
        self.store = store
        self.credits = SqliteCreditsRepository(store)
        # Only balance and check_request are used here, so the catalog (settings validation) is moot.
        self.credits_service = credits_service or CreditsService(
            self.credits, SqliteHistoryRepository(store), catalog=default_catalog(), clock=clock
        )
        self._on_new_job = on_new_job
        self._clock = clock

    def wake_tracker(self) -> None:
        if self._on_new_job is not None:
            self._on_new_job()

    async def balance(
        self,
        guild_id: int,
        user_id: int,
        member_roles: Iterable[int] = (),
        conn: Transaction | None = None,
    ) -> tuple[Balance, GuildPolicy]:
        return await self.credits_service.balance(guild_id, user_id, member_roles, conn)

    async def _enforce_limits(
        self, request: JobRequest, member_roles: Iterable[int], conn: Transaction | None
    ) -> None:
        await self.credits_service.check_request(request, member_roles, conn)

    async def precheck(self, request: JobRequest, *, member_roles: Iterable[int] = ()) -> None:
        """The same checks as ``submit`` without reserving anything: lets the Discord layer refuse
        ephemerally before it acknowledges publicly. ``submit`` checks again, atomically."""
        await self._enforce_limits(request, member_roles, None)

    async def submit(self, request: JobRequest, *, member_roles: Iterable[int] = ()) -> Job:
        """Check the member's limits, reserve the credits and record the job, in ONE transaction
        (``BEGIN IMMEDIATE``), so concurrent requests can't both spend the same credits."""
        async with self.store.transaction() as conn:
            await self._enforce_limits(request, member_roles, conn)
            job_id = await self.store.insert_job(request, conn)
            await self.credits.audit(
                "job.submitted",
                guild_id=request.guild_id,
                actor_id=request.user_id,
                target_user_id=request.user_id,
                job_id=job_id,
                details={
                    "prompt": request.prompt,
                    "model": request.model,
                    "size": request.size,
                    "seconds": request.seconds,
                    "cost": request.cost,
                },
                conn=conn,
            )
        job = await self.store.get_job(job_id)
        if job is None:  # pragma: no cover - the row was just written
            raise RuntimeError("job vanished after insert")
        log.info("job %s accepted: %s %s %ss", job.id, job.model, job.size, job.seconds)
        return job

    async def cancel(self, job_id: int, *, actor_id: int) -> Job | None:
        """Cancel a job that the provider has not finished, and refund it. Returns None when it is
        past that point (finished, or its video is already being posted).

        Cancelling always refunds: the tracker deletes the job at the provider, and a member should
        not pay for a video they never receive.
        """
        job = await self.store.transition(
            job_id,
            expect=CANCELLABLE_STATUSES,
            status=JobStatus.CANCELLED,
            charge_state=ChargeState.REFUNDED,
            finished_at=self._clock(),
        )
        if job is not None:
            await self.credits.audit(
                "job.cancelled",
                guild_id=job.guild_id,
                actor_id=actor_id,
                target_user_id=job.user_id,
                job_id=job.id,
            )
        self.wake_tracker()
        return job
