"""The job use cases the Discord layer calls: submit (``/video``), remix, again, cancel, and the
checks that let a button refuse before a form opens. Each owns its transaction; state changes go
through ``JobLifecycle``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bot.domain.catalog import Catalog
from bot.domain.credits import Balance, GuildPolicy
from bot.domain.errors import JobAlreadyFinished, UserError
from bot.domain.jobs import Job, JobRequest, Requester
from bot.services.credits import CreditsService
from bot.services.lifecycle import JobLifecycle
from bot.services.ports import CancelPresenter, JobRepository, Receipt, Transaction
from bot.services.retention import PROMPT_REMOVED

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
        store: JobRepository,
        *,
        credits: CreditsService,
        lifecycle: JobLifecycle,
        catalog: Catalog | None = None,
        on_new_job: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.credits = credits  # balances and the limits a request must pass
        self.lifecycle = lifecycle
        self.catalog = catalog
        self._on_new_job = on_new_job
        self._clock = clock

    async def get(self, job_id: int) -> Job | None:
        return await self.store.get_job(job_id)

    def wake_tracker(self) -> None:
        if self._on_new_job is not None:
            self._on_new_job()

    # -- limits ----------------------------------------------------------------------------------

    async def balance(
        self,
        guild_id: int,
        user_id: int,
        member_roles: Iterable[int] = (),
        conn: Transaction | None = None,
    ) -> tuple[Balance, GuildPolicy]:
        return await self.credits.balance(guild_id, user_id, member_roles, conn)

    async def _enforce_limits(
        self, request: JobRequest, member_roles: Iterable[int], conn: Transaction | None
    ) -> None:
        await self.credits.check_request(request, member_roles, conn)

    async def precheck(self, request: JobRequest, *, member_roles: Iterable[int] = ()) -> None:
        """The same checks as ``submit`` without reserving anything: lets the Discord layer refuse
        ephemerally before it acknowledges publicly (or opens a form). ``submit`` checks again,
        atomically."""
        await self._enforce_limits(request, member_roles, None)

    # -- submit ----------------------------------------------------------------------------------

    async def submit(self, request: JobRequest, *, member_roles: Iterable[int] = ()) -> Job:
        """Check the member's limits, reserve the credits and record the job, in ONE transaction
        (``BEGIN IMMEDIATE``), so concurrent requests can't both spend the same credits."""
        async with self.store.transaction() as conn:
            await self._enforce_limits(request, member_roles, conn)
            job_id = await self.lifecycle.create(request, conn)
        job = await self.store.get_job(job_id)
        if job is None:  # pragma: no cover - the row was just written
            raise RuntimeError("job vanished after insert")
        log.info("job %s accepted: %s %s %ss", job.id, job.model, job.size, job.seconds)
        return job

    async def shown(self, job: Job, message_id: int | None = None) -> Job:
        """The job's first card is on Discord (in ``message_id`` when it was not known at submit):
        record where, and let the tracker start."""
        if message_id is not None:
            job = await self.lifecycle.record_reply(job, Receipt(message_id, route="interaction")) or job
        self.wake_tracker()
        return job

    # -- remix and again -------------------------------------------------------------------------

    def _quote_like(self, source: Job) -> Any:
        if self.catalog is None:
            raise RuntimeError("JobService needs the catalog for remixes")
        return self.catalog.quote(source.model, source.size, source.seconds)

    def remix_request(self, source: Job, requester: Requester, prompt: str) -> JobRequest:
        """A remix of ``source``: its model, size and duration (the provider's remix takes only a
        prompt), priced from the catalog as it is now."""
        return requester.request(
            self._quote_like(source),
            prompt=clean_prompt(prompt),
            source_job_id=source.id,
            remixed_from_video_id=source.provider_video_id,
        )

    async def again_request(self, source: Job, requester: Requester) -> JobRequest:
        """The same request once more (prompt, settings, starting image, remix source), as a new
        job charged to ``requester``."""
        if source.prompt == PROMPT_REMOVED:
            raise UserError(
                f"The prompt of job #{source.id} is no longer stored (old job details are deleted), "
                "so it can't be made again. Use `/video` with a new prompt."
            )
        if source.reference_image_path and not await self._reference_kept(source.reference_image_path):
            raise UserError(
                f"The starting image of job #{source.id} is no longer stored, so it can't be made again. "
                "Use `/video` with the image."
            )
        return requester.request(
            self._quote_like(source),
            prompt=source.prompt,
            reference_image_path=source.reference_image_path,
            source_job_id=source.source_job_id,
            remixed_from_video_id=source.remixed_from_video_id,
        )

    async def _reference_kept(self, path: str) -> bool:
        """The starting image is here, or in the database for any process."""
        local = Path(path)
        return local.exists() or await self.store.reference_image(local.name) is not None

    async def precheck_remix(
        self, source: Job, requester: Requester, *, member_roles: Iterable[int] = ()
    ) -> None:
        """Every limit that would refuse a remix of ``source`` (credits, cooldown, videos at once,
        channel), checked when Remix is pressed, before the form opens: nobody types a prompt only
        to be refused."""
        # The prompt does not change the price or the limits; a placeholder stands in for it.
        await self.precheck(self.remix_request(source, requester, "remix"), member_roles=member_roles)

    # -- cancel ----------------------------------------------------------------------------------

    async def cancel(self, job_id: int, *, actor_id: int, presenter: CancelPresenter | None = None) -> Job:
        """Cancel and refund a job, delete it at the provider, and (with ``presenter``) show the
        final card in the background: the caller answers its interaction first, within 3 s.
        Raises ``JobNotCancellable`` when the job is past cancelling: ``JobAlreadyFinished`` when
        the provider had made the video (it is posted and charged instead; ``JobLifecycle.cancel``
        has the rule), ``CancelUnverified`` when the provider could not be asked."""
        try:
            cancelled = await self.lifecycle.cancel(job_id, actor_id=actor_id)
        except JobAlreadyFinished:
            self.wake_tracker()  # the job is waiting for its download now
            raise
        if presenter is not None:
            self.lifecycle.spawn(presenter.job_cancelled(cancelled), name=f"show-cancel-{job_id}")
        self.wake_tracker()
        return cancelled
