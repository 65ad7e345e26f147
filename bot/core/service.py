"""Accepting and cancelling jobs: the core operations the Discord layer calls."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.core.errors import UserError
from bot.core.jobs import ChargeState, Job, JobRequest, JobStatus
from bot.store.sqlite import Store

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
    def __init__(self, store: Store, *, on_new_job: Callable[[], None] | None = None) -> None:
        self.store = store
        self._on_new_job = on_new_job

    async def submit(self, request: JobRequest) -> Job:
        """Reserve the credits and record the job, in one transaction. The tracker sends it."""
        async with self.store.transaction() as conn:
            job_id = await self.store.insert_job(request, conn)
        job = await self.store.get_job(job_id)
        if job is None:  # pragma: no cover - the row was just written
            raise RuntimeError("job vanished after insert")
        log.info("job %s accepted: %s %s %ss", job.id, job.model, job.size, job.seconds)
        return job

    def wake_tracker(self) -> None:
        if self._on_new_job is not None:
            self._on_new_job()

    async def cancel(self, job_id: int) -> Job | None:
        """Cancel an active job and refund it. Returns None when it had already finished."""
        active = tuple(s for s in JobStatus if not s.is_final)
        job = await self.store.transition(
            job_id, expect=active, status=JobStatus.CANCELLED, charge_state=ChargeState.REFUNDED
        )
        self.wake_tracker()
        return job
