"""Accepting and cancelling jobs, and reading balances: the core operations the Discord layer calls."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import aiosqlite

from bot.adapters.sqlite.store import CreditsStore, Store
from bot.domain.credits import Balance, GuildPolicy, check_request, effective_limits, period_bounds
from bot.domain.errors import UserError
from bot.domain.jobs import CANCELLABLE_STATUSES, ChargeState, Job, JobRequest, JobStatus

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
    ) -> None:
        self.store = store
        self.credits = CreditsStore(store)
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
        conn: aiosqlite.Connection | None = None,
    ) -> tuple[Balance, GuildPolicy]:
        now = self._clock()
        policy = await self.credits.policy(guild_id, conn)
        start, end = period_bounds(policy.period, policy.timezone, now)
        member_allowance, reset_at = await self.credits.member_quota(guild_id, user_id, conn)
        roles = await self.credits.role_overrides(guild_id, conn)
        limits = effective_limits(policy, roles, set(member_roles), member_allowance)
        since = max(start, reset_at or 0.0)
        usage = await self.credits.usage(guild_id, user_id, since=since, guild_since=start, conn=conn)
        return Balance(limits=limits, usage=usage, period_start=start, resets_at=end), policy

    async def _enforce_limits(
        self, request: JobRequest, member_roles: Iterable[int], conn: aiosqlite.Connection | None
    ) -> None:
        if request.guild_id is None:
            return
        balance, policy = await self.balance(request.guild_id, request.user_id, member_roles, conn)
        refusal = check_request(
            policy,
            balance,
            cost=request.cost,
            channel_id=request.channel_id,
            model=request.model,
            size=request.size,
            seconds=request.seconds,
            now=self._clock(),
        )
        if refusal is not None:
            raise UserError(refusal.message)

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
