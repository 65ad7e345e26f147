"""The Discord side of the tracker: progress edits and final delivery.

Edits are throttled per message (at most one per ``edit_interval``), coalesced (a burst of changes
becomes one edit showing the latest state) and skipped when the rendered card has not changed.

Interaction tokens expire after 15 minutes and generations can take longer, so edits go through
the interaction webhook only while the token is fresh, and through the bot's own channel-message
route after that (or when the webhook refuses the token).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import discord

from bot.discord.embeds import job_embed
from bot.discord.mentions import NO_MENTIONS
from bot.domain.catalog import Catalog
from bot.domain.delivery import MIB, Link, Undeliverable, thumbnail_filename, video_filename
from bot.domain.errors import UndeliverableError
from bot.domain.jobs import Job, JobStatus, QueuePlace
from bot.services.delivery import DeliveryPlanner
from bot.services.ports import Receipt, ReplyRecorder
from bot.services.ratelimit import TokenBucket

log = logging.getLogger(__name__)

_INVALID_WEBHOOK_TOKEN = 50027
_UNKNOWN_MESSAGE = 10008
_UNKNOWN_CHANNEL = 10003
_FILE_TOO_LARGE = 40005


@dataclass
class _EditState:
    latest: Job
    last_key: str | None = None
    last_edit_at: float = float("-inf")
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class JobReader(Protocol):
    async def get_job(self, job_id: int) -> Job | None: ...


class JobViews(Protocol):
    """Buttons shown on a job's message (provided by the history/remix feature)."""

    def progress_view(self, job: Job) -> discord.ui.View | None: ...

    def result_view(self, job: Job) -> discord.ui.View | None: ...


class DiscordPresenter:
    def __init__(
        self,
        client: discord.Client,
        jobs: JobReader,
        replies: ReplyRecorder,
        catalog: Catalog,
        *,
        delivery: DeliveryPlanner,
        views: JobViews | None = None,
        demo_render: bool = False,
        edit_interval: float = 3.0,
        channel_edits_per_minute: int = 36,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.jobs = jobs
        self.replies = replies
        self.catalog = catalog
        self.edit_interval = edit_interval
        self._clock = clock
        self._states: dict[int, _EditState] = {}
        self.edits_sent = 0
        self.views = views
        self.delivery = delivery
        self.demo_render = demo_render  # the built-in renderer makes the videos: say so on the card
        # Discord allows about 5 message writes per 5 s per channel. Progress edits share a smaller
        # budget (3 per 5 s by default) so that final deliveries, which skip the queue, always fit.
        self.channel_edits_per_minute = channel_edits_per_minute
        self._channel_budgets: dict[int, TokenBucket] = {}
        # Jobs waiting for the provider budget: their place in line, shown on the card (budget helper).
        self._queue_places: dict[int, QueuePlace] = {}

    async def render(self, job: Job) -> discord.Embed:
        """The job's card. Async because a remix's card links to its source job's message."""
        spec = self.catalog.get(job.model)
        expected = (spec.seconds_per_video_second if spec else 10.0) * job.seconds
        source = await self.jobs.get_job(job.source_job_id) if job.source_job_id is not None else None
        return job_embed(
            job,
            now=self._clock(),
            expected_seconds=expected,
            source=source,
            demo=self.demo_render,
            queue=self._queue_places.get(job.id),
        )

    # -- JobPresenter ----------------------------------------------------------------------------

    async def job_changed(self, job: Job) -> None:
        state = self._states.get(job.id)
        if state is None:
            state = self._states[job.id] = _EditState(latest=job)
        else:
            state.latest = job
        if state.task is None or state.task.done():
            state.task = asyncio.create_task(self._flush(state), name=f"progress-edit-{job.id}")

    async def queue_changed(self, job: Job, place: QueuePlace) -> None:
        """``QueueView``: the job's place in the provider queue changed; its card shows it (through
        the same throttled, coalesced progress edit)."""
        self._queue_places[job.id] = place
        await self.job_changed(job)

    def _channel_budget(self, channel_id: int) -> TokenBucket:
        budget = self._channel_budgets.get(channel_id)
        if budget is None:
            budget = self._channel_budgets[channel_id] = TokenBucket(
                self.channel_edits_per_minute, burst=max(1, self.channel_edits_per_minute // 12)
            )
        return budget

    async def _flush(self, state: _EditState) -> None:
        """Show the latest state of one job, at most once per ``edit_interval``, until no newer
        state arrived during the edit. The store is the truth: a final state is shown by its own
        path (delivery, failure, cancel), never by a progress edit that was waiting its turn."""
        try:
            while True:
                wait = state.last_edit_at + self.edit_interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # rate shaping: one edit per interval per message
                await self._channel_budget(state.latest.channel_id).acquire()
                seen = state.latest
                job = await self.jobs.get_job(seen.id)
                # No reply recorded yet: /video shows the first card itself.
                if job is None or job.is_final or job.reply_message_id is None:
                    return
                embed = await self.render(job)
                key = json.dumps(embed.to_dict(), sort_keys=True)
                if key != state.last_key:
                    await self._show(job, embed=embed, view=self.view_for(job))
                    state.last_key = key
                    state.last_edit_at = time.monotonic()
                if state.latest is seen:
                    return
        except discord.HTTPException as exc:
            log.warning("job %s: progress edit failed: %s", state.latest.id, exc)
        except Exception:
            log.exception("job %s: progress edit failed", state.latest.id)

    async def close(self) -> None:
        """Stop pending progress edits (the bot is shutting down; the tracker resumes them)."""
        tasks = [state.task for state in self._states.values() if state.task and not state.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _settle(self, job_id: int) -> None:
        """Stop progress edits of a job whose final state is about to be shown."""
        self._queue_places.pop(job_id, None)
        state = self._states.pop(job_id, None)
        if state and state.task and not state.task.done():
            state.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.task

    async def deliver(self, job: Job, media: Path) -> Receipt | None:
        """Post what the delivery planner decided for the finished video of ``job`` (the tracker
        checked it is still being posted)."""
        await self._settle(job.id)
        delivered = _as_delivered(job, self._clock())
        self._channel_budget(job.channel_id).take_if_available()  # deliveries never wait for progress
        limit: int | None = None
        for _attempt in range(2):
            plan = await self.delivery.plan(job, media, limit)
            if isinstance(plan, Undeliverable):
                raise UndeliverableError(plan.reason)
            if isinstance(plan, Link):
                return await self._post_link(delivered, plan)
            embed = await self.render(delivered)
            if plan.note:
                embed.add_field(name="Note", value=plan.note, inline=False)
            try:
                receipt = await self._edit_reply(
                    delivered,
                    embed=embed,
                    upload=Upload(plan.path, video_filename(job)),
                    view=self.view_for(delivered),
                    dm_fallback=True,
                )
            except discord.HTTPException as exc:
                if exc.status != 413 and exc.code != _FILE_TOO_LARGE:
                    raise
                # Discord's limit was lower than the one the interaction announced: aim lower.
                size = plan.path.stat().st_size
                log.info("job %s: upload of %d bytes refused as too large", job.id, size)
                limit = int(size * 0.9)
                if plan.temporary:
                    plan.path.unlink(missing_ok=True)  # the next plan makes its own copy
                continue
            if plan.temporary:
                plan.path.unlink(missing_ok=True)  # the original stays in DATA_DIR for re-delivery
            return receipt
        raise UndeliverableError("Discord kept refusing the video as too large for this server.")

    async def _post_link(self, job: Job, link: Link) -> Receipt:
        """The video can't be made to fit: post its thumbnail and a signed, expiring link."""
        embed = await self.render(job)
        embed.add_field(
            name="Watch",
            value=f"[Download the video]({link.url}) (link expires <t:{link.expires_at}:R>). It is "
            f"{link.size / MIB:.1f} MiB, too large for this server's {link.limit / MIB:.0f} MiB uploads.",
            inline=False,
        )
        embed.set_image(url=f"attachment://{link.thumbnail.name}")
        return await self._edit_reply(
            job,
            embed=embed,
            upload=Upload(link.thumbnail, link.thumbnail.name),
            view=self.view_for(job),
            dm_fallback=True,
        )

    async def job_failed(self, job: Job) -> None:
        await self._show_outcome(job)

    async def job_cancelled(self, job: Job) -> None:
        await self._show_outcome(job)

    async def _show_outcome(self, job: Job) -> None:
        await self._settle(job.id)
        try:
            await self._show(job, embed=await self.render(job), view=self.view_for(job), dm_fallback=True)
        except (discord.HTTPException, UndeliverableError) as exc:
            log.warning("job %s: could not show the outcome to the member: %s", job.id, exc)

    async def _show(
        self,
        job: Job,
        *,
        embed: discord.Embed,
        view: discord.ui.View | None,
        dm_fallback: bool = False,
    ) -> None:
        """Edit the card (no file) and have the lifecycle record where it now lives."""
        receipt = await self._edit_reply(job, embed=embed, view=view, dm_fallback=dm_fallback)
        if receipt.reposted or receipt.token_refused:
            await self.replies.record_reply(job, receipt)

    async def find_delivery(self, job: Job) -> int | None:
        if job.reply_message_id is None:
            return None
        channel = self.client.get_partial_messageable(job.channel_id)
        try:
            message = await channel.fetch_message(job.reply_message_id)
        except discord.HTTPException:
            return None
        posted = {video_filename(job), thumbnail_filename(job)}  # the video, or its link's thumbnail
        if any(a.filename in posted for a in message.attachments):
            return message.id
        return None

    def view_for(self, job: Job) -> discord.ui.View | None:
        """The buttons for the job's current state; an empty view clears buttons of a past state."""
        if self.views is None:
            return None
        view = self.views.result_view(job) if job.is_final else self.views.progress_view(job)
        return view if view is not None else discord.ui.View()

    # -- editing ---------------------------------------------------------------------------------

    async def _edit_reply(
        self,
        job: Job,
        *,
        embed: discord.Embed,
        upload: Upload | None = None,
        view: discord.ui.View | None = None,
        dm_fallback: bool = False,
    ) -> Receipt:
        """Edit the job's reply (webhook while the token is fresh, else the channel route); post a new
        message when the reply is gone; with ``dm_fallback``, send it to the member directly when the
        bot can no longer post in the channel. Returns where the job is now shown."""
        try:
            return await self._edit_or_repost(job, embed=embed, upload=upload, view=view)
        except (discord.Forbidden, discord.NotFound) as exc:
            if not dm_fallback or (isinstance(exc, discord.NotFound) and exc.code != _UNKNOWN_CHANNEL):
                raise
            log.info(
                "job %s: cannot post in channel %s (%s); sending by DM", job.id, job.channel_id, exc.code
            )
            return await self._send_by_dm(job, embed=embed, upload=upload)

    async def _send_by_dm(self, job: Job, *, embed: discord.Embed, upload: Upload | None) -> Receipt:
        try:
            channel = await self.client.create_dm(discord.Object(id=job.user_id))
            message = await channel.send(
                f"I couldn't post in <#{job.channel_id}>, so here is your video.",
                embed=embed,
                files=[upload.file()] if upload else [],
                allowed_mentions=NO_MENTIONS,
            )
        except discord.HTTPException as exc:
            raise UndeliverableError(
                "The bot can't post in the channel any more and couldn't send a direct message "
                f"(Discord code {exc.code})."
            ) from exc
        self.edits_sent += 1
        return Receipt(message.id, route="dm")

    async def _edit_or_repost(
        self,
        job: Job,
        *,
        embed: discord.Embed,
        upload: Upload | None,
        view: discord.ui.View | None,
    ) -> Receipt:
        def kwargs() -> dict[str, Any]:
            # Fresh File objects for every attempt: discord.py closes them after each request.
            values: dict[str, Any] = {"embed": embed, "allowed_mentions": NO_MENTIONS}
            if upload is not None:
                values["attachments"] = [upload.file()]
            if view is not None:
                values["view"] = view
            return values

        if job.reply_message_id is None:
            return await self._post_new(job, kwargs())
        token_refused = False
        if job.token_usable(self._clock()) and job.application_id:
            webhook = discord.Webhook.partial(
                job.application_id, job.interaction_token or "", client=self.client
            )
            try:
                await webhook.edit_message(job.reply_message_id, **kwargs())
                self.edits_sent += 1
                return Receipt(job.reply_message_id, route="webhook")
            except discord.HTTPException as exc:
                if exc.status != 401 and exc.code != _INVALID_WEBHOOK_TOKEN:
                    if exc.code == _UNKNOWN_MESSAGE:
                        return await self._post_new(job, kwargs())
                    raise
                log.info("job %s: interaction token refused; switching to the channel route", job.id)
                token_refused = True
        message = self.client.get_partial_messageable(job.channel_id).get_partial_message(
            job.reply_message_id
        )
        try:
            await message.edit(**kwargs())
        except discord.NotFound as exc:
            if exc.code != _UNKNOWN_MESSAGE:
                raise
            return await self._post_new(job, kwargs())
        self.edits_sent += 1
        return Receipt(job.reply_message_id, route="channel", token_refused=token_refused)

    async def _post_new(self, job: Job, kwargs: dict[str, Any]) -> Receipt:
        """The reply is gone (deleted by a moderator) or was never recorded: post a fresh message."""
        kwargs = dict(kwargs)
        files = kwargs.pop("attachments", None)
        if files:
            kwargs["files"] = files
        channel = self.client.get_partial_messageable(job.channel_id)
        message = await channel.send(**kwargs)
        self.edits_sent += 1
        # The interaction webhook can only edit the interaction's own messages: this one is edited
        # through the channel route from now on (the lifecycle records that from the receipt).
        return Receipt(message.id, route="new_message", reposted=True)


@dataclass(frozen=True)
class Upload:
    path: Path
    filename: str

    def file(self) -> discord.File:
        return discord.File(self.path, filename=self.filename)


def _as_delivered(job: Job, now: float) -> Job:
    """The job as it will look once delivered, for the final card."""
    return replace(job, status=JobStatus.COMPLETED, progress=100, finished_at=now)
