"""The job use cases the Discord layer calls: submit (``/video``), remix, extend, edit, again,
cancel, and the checks that let a button refuse before a form opens. Each owns its transaction;
state changes go through ``JobLifecycle``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from bot.domain.catalog import Catalog, Quote
from bot.domain.credits import Balance, GuildPolicy
from bot.domain.errors import JobAlreadyFinished, UserError
from bot.domain.jobs import Job, JobKind, JobRequest, Requester
from bot.services.credits import CreditsService
from bot.services.lifecycle import JobLifecycle
from bot.services.ports import (
    CancelPresenter,
    ConvertedClip,
    JobRepository,
    ProviderSupport,
    Receipt,
    Transaction,
)
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
        provider: ProviderSupport | None = None,
    ) -> None:
        self.store = store
        self.provider = provider  # which optional endpoints the provider turned out to lack
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
        await self.credits.precheck(request, member_roles)

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

    # -- remix, extend, edit and again -----------------------------------------------------------

    @property
    def _catalog(self) -> Catalog:
        if self.catalog is None:
            raise RuntimeError("JobService needs the catalog for remixes, extensions and edits")
        return self.catalog

    def _quote_like(self, source: Job) -> Quote:
        """The price of ``source``'s request made again, from the catalog as it is now."""
        if source.kind is JobKind.EXTENSION:
            return self._catalog.quote_extension(source.model, source.size, source.seconds)
        if source.kind is JobKind.EDIT:
            return self._catalog.quote_edit(source.model, source.size, source.seconds)
        return self._catalog.quote(source.model, source.size, source.seconds)

    def lineage_refusal(self, source: Job, kind: JobKind) -> str | None:
        """Why ``source``'s model can't be remixed, extended or edited here (the catalog says what
        the model offers; the provider may have answered that it lacks the endpoint; an edit has a
        longest source), or None."""
        spec = self._catalog.get(source.model)
        if spec is None:
            return (
                f"`{source.model}` is no longer one of this bot's models, so job #{source.id} can't be "
                "changed. Use `/video` to make a new one."
            )
        instead = " Use `/video` to make a new one."
        if kind is JobKind.REMIX and not spec.remix:
            return f"`{spec.name}` videos can't be remixed with this bot's video provider.{instead}"
        if kind is JobKind.EXTENSION:
            if spec.extend is None:
                return f"`{spec.name}` videos can't be extended with this bot's video provider.{instead}"
            if self.provider is not None and self.provider.supports_extend is False:
                return f"This bot's video provider doesn't offer extensions, so videos can't be extended.{instead}"
        if kind is JobKind.EDIT:
            if spec.edit is None:
                return f"`{spec.name}` videos can't be edited with this bot's video provider.{instead}"
            if self.provider is not None and self.provider.supports_edit is False:
                return f"This bot's video provider doesn't offer edits, so videos can't be edited.{instead}"
            longest = max(spec.edit.seconds)
            if source.length > longest:
                return (
                    f"Job #{source.id} is {source.length} s long; `{spec.name}` edits videos of at most "
                    f"{longest} seconds. Edit a shorter one, or a clip with `/edit`."
                )
        return None

    def offers(self, job: Job) -> frozenset[JobKind]:
        """What a finished video's card offers: remix, extend, edit (as far as its model and the
        provider can)."""
        if not job.provider_video_id:
            return frozenset()
        kinds = (JobKind.REMIX, JobKind.EXTENSION, JobKind.EDIT)
        return frozenset(k for k in kinds if self.lineage_refusal(job, k) is None)

    def _refuse_unless_offered(self, source: Job, kind: JobKind) -> None:
        refusal = self.lineage_refusal(source, kind)
        if refusal is not None:
            raise UserError(refusal)

    def remix_request(self, source: Job, requester: Requester, prompt: str) -> JobRequest:
        """A remix of ``source``: its model, size and duration (the provider's remix takes only a
        prompt), priced from the catalog as it is now."""
        self._refuse_unless_offered(source, JobKind.REMIX)
        return requester.request(
            self._catalog.quote(source.model, source.size, source.seconds),
            prompt=clean_prompt(prompt),
            kind=JobKind.REMIX.value,
            source_job_id=source.id,
            remixed_from_video_id=source.provider_video_id,
        )

    def extension_request(
        self, source: Job, requester: Requester, prompt: str, seconds: int | None = None
    ) -> JobRequest:
        """``source`` followed by a new segment of ``seconds`` (default: the shortest the model
        allows) that the prompt directs. Priced like a new video of the segment's length; the
        provider's answer says the total."""
        self._refuse_unless_offered(source, JobKind.EXTENSION)
        quote = self._catalog.quote_extension(source.model, source.size, seconds)
        return self._made_from(source, requester, prompt, JobKind.EXTENSION, quote)

    def edit_request(self, source: Job, requester: Requester, prompt: str) -> JobRequest:
        """A new video that edits ``source`` as the prompt says, priced like a video of its length."""
        self._refuse_unless_offered(source, JobKind.EDIT)
        quote = self._catalog.quote_edit(source.model, source.size, source.length)
        return self._made_from(source, requester, prompt, JobKind.EDIT, quote)

    def _made_from(
        self, source: Job, requester: Requester, prompt: str, kind: JobKind, quote: Quote
    ) -> JobRequest:
        return requester.request(
            quote,
            prompt=clean_prompt(prompt),
            kind=kind.value,
            source_job_id=source.id,
            source_video_id=source.provider_video_id,
        )

    def clip_edit_model(self) -> str:
        """The model an uploaded clip is edited with: the default one, or the first that edits."""
        catalog = self._catalog
        default = catalog.get(catalog.default_model)
        if default is not None and default.edit is not None:
            name = default.name
        else:
            name = next((m.name for m in catalog.models if m.edit is not None), catalog.default_model)
        if self.provider is not None and self.provider.supports_edit is False:
            raise UserError(
                "This bot's video provider doesn't offer edits, so clips can't be edited. "
                "Use `/video` to make a new video."
            )
        return name

    def clip_edit_request(self, requester: Requester, prompt: str) -> JobRequest:
        """An edit of a clip the member uploads, priced for now at the shortest length the model
        edits (the limits are checked with that before anything is downloaded); ``priced_clip``
        prices it by the clip's real length once it is converted."""
        model = self.clip_edit_model()
        spec = self._catalog.get(model)
        shortest = min(spec.edit.seconds) if spec is not None and spec.edit is not None else 0
        return requester.request(
            self._catalog.quote_edit(model, None, shortest),
            prompt=clean_prompt(prompt),
            kind=JobKind.EDIT.value,
        )

    def priced_clip(self, request: JobRequest, clip: ConvertedClip) -> JobRequest:
        """``request`` for the converted clip: its size, and the price of a video of its length
        rounded up to the next length the model allows."""
        quote = self._catalog.quote_edit(request.model, clip.size, clip.duration)
        return replace(
            request,
            size=quote.size,
            seconds=quote.seconds,
            cost=quote.credits,
            usd=quote.usd,
            clip_path=str(clip.path),
        )

    async def again_request(self, source: Job, requester: Requester) -> JobRequest:
        """The same request once more (prompt, settings, starting image, remix, extension or edit
        source), as a new job charged to ``requester``."""
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
        if source.clip_path and not Path(source.clip_path).exists():
            raise UserError(
                f"The clip job #{source.id} edited is no longer stored, so it can't be made again. "
                "Use `/edit` with the clip."
            )
        return requester.request(
            self._quote_like(source),
            prompt=source.prompt,
            reference_image_path=source.reference_image_path,
            kind=source.kind.value,
            source_job_id=source.source_job_id,
            remixed_from_video_id=source.remixed_from_video_id,
            source_video_id=source.source_video_id,
            clip_path=source.clip_path,
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

    async def precheck_lineage(
        self, source: Job, kind: JobKind, requester: Requester, *, member_roles: Iterable[int] = ()
    ) -> None:
        """As ``precheck_remix``, for Extend (priced at its shortest segment: the form asks for the
        length, and ``submit`` checks the chosen one again) and Edit."""
        if kind is JobKind.EXTENSION:
            request = self.extension_request(source, requester, "extend")
        elif kind is JobKind.EDIT:
            request = self.edit_request(source, requester, "edit")
        else:
            request = self.remix_request(source, requester, "remix")
        await self.precheck(request, member_roles=member_roles)

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
