"""The Discord side of the tracker: progress edits and final delivery.

Every write goes through the ``WriteScheduler`` (``bot/discord/scheduler.py``), which plans it within
Discord's buckets: finals (deliveries, failures, cancellations) first, progress edits from what is
left. Progress edits are merged per message (a burst of changes becomes one edit showing the latest
state), at most one per ``edit_interval`` per message, and skipped when the card has not changed.

Interaction tokens expire after 15 minutes and generations can take longer, so edits go through
the interaction webhook (its own bucket per token, outside the channel and global buckets) only while
the token is fresh, and through the bot's own channel-message route after that (or when the webhook
refuses the token).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import discord

from bot.discord.embeds import job_embed
from bot.discord.mentions import NO_MENTIONS
from bot.discord.scheduler import (
    GLOBAL,
    BucketKey,
    Ticket,
    WriteScheduler,
    channel_bucket,
    interaction_bucket,
)
from bot.domain.catalog import Catalog
from bot.domain.delivery import MIB, Link, Undeliverable, thumbnail_filename, video_filename
from bot.domain.errors import UndeliverableError
from bot.domain.jobs import Job, JobStatus, QueuePlace
from bot.services.delivery import DeliveryPlanner
from bot.services.ports import Receipt, ReplyRecorder

log = logging.getLogger(__name__)

_INVALID_WEBHOOK_TOKEN = 50027
_UNKNOWN_MESSAGE = 10008
_UNKNOWN_CHANNEL = 10003
_FILE_TOO_LARGE = 40005
# A video being downloaded shows as such on its card only after this long (see ``job_changed``).
DOWNLOADING_CARD_DELAY_SECONDS = 3.0


@dataclass
class _EditState:
    latest: Job
    last_key: str | None = None


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
        scheduler: WriteScheduler | None = None,
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
        self.scheduler = scheduler or WriteScheduler()
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
        self.scheduler.offer_progress(
            job.id,
            lambda: self._buckets(state.latest),
            lambda ticket: self._send_progress(state, ticket),
            min_interval=self.edit_interval,
            # A finished video is usually posted within a second or two: the card says
            # "Downloading" only when the download takes longer, instead of a flash and one more
            # request per video.
            delay=DOWNLOADING_CARD_DELAY_SECONDS if job.status is JobStatus.DOWNLOADING else 0.0,
        )

    async def queue_changed(self, job: Job, place: QueuePlace) -> None:
        """``QueueView``: the job's place in the provider queue changed; its card shows it (through
        the same scheduled, merged progress edit)."""
        self._queue_places[job.id] = place
        await self.job_changed(job)

    def _buckets(self, job: Job) -> tuple[BucketKey, ...]:
        """The buckets an edit of the job's reply writes to, by the route it will take."""
        if self._via_webhook(job):
            return (interaction_bucket(job.interaction_token or ""),)
        return (channel_bucket(job.channel_id), GLOBAL)

    def _via_webhook(self, job: Job) -> bool:
        return bool(job.token_usable(self._clock()) and job.application_id and job.interaction_token)

    async def _send_progress(self, state: _EditState, ticket: Ticket) -> None:
        """Show the latest state of one job (the scheduler found room for it). The store is the
        truth: a final state is shown by its own path (delivery, failure, cancel), never by a progress
        edit that was waiting its turn."""
        try:
            job = await self.jobs.get_job(state.latest.id)
            # No reply recorded yet: /video shows the first card itself.
            if job is None or job.is_final or job.reply_message_id is None:
                return
            embed = await self.render(job)
            key = json.dumps(embed.to_dict(), sort_keys=True)
            if key != state.last_key:
                await self._show(job, embed=embed, view=self.view_for(job), ticket=ticket)
                state.last_key = key
        except discord.HTTPException as exc:
            log.warning("job %s: progress edit failed: %s", state.latest.id, exc)
        except Exception:
            log.exception("job %s: progress edit failed", state.latest.id)
        finally:
            self.scheduler.refund(ticket)  # no-op when the edit spent it

    async def _slot(self, keys: tuple[BucketKey, ...], *, ticket: Ticket | None) -> None:
        """Room for one write: a progress edit's first write spends the slot the scheduler took for
        it; every other write of a progress edit waits as progress, everything else as a final."""
        if ticket is not None and not ticket.spent and ticket.buckets == keys:
            ticket.spent = True
            return
        if ticket is not None:
            self.scheduler.refund(ticket)
        await self.scheduler.acquire(keys, final=ticket is None)

    async def close(self) -> None:
        """Stop pending progress edits (the bot is shutting down; the tracker resumes them)."""
        await self.scheduler.close()

    async def _settle(self, job_id: int) -> None:
        """Stop progress edits of a job whose final state is about to be shown."""
        self._queue_places.pop(job_id, None)
        self._states.pop(job_id, None)
        await self.scheduler.settle(job_id)

    async def deliver(self, job: Job, media: Path) -> Receipt | None:
        """Post what the delivery planner decided for the finished video of ``job`` (the tracker
        checked it is still being posted)."""
        await self._settle(job.id)
        delivered = _as_delivered(job, self._clock())
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
        ticket: Ticket | None = None,
    ) -> None:
        """Edit the card (no file) and have the lifecycle record where it now lives."""
        receipt = await self._edit_reply(job, embed=embed, view=view, dm_fallback=dm_fallback, ticket=ticket)
        if receipt.reposted or receipt.token_refused:
            await self.replies.record_reply(job, receipt)

    async def find_delivery(self, job: Job) -> int | None:
        if job.reply_message_id is None:
            return None
        channel = self.client.get_partial_messageable(job.channel_id)
        await self.scheduler.acquire((GLOBAL,), final=True)
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
        ticket: Ticket | None = None,
    ) -> Receipt:
        """Edit the job's reply (webhook while the token is fresh, else the channel route); post a new
        message when the reply is gone; with ``dm_fallback``, send it to the member directly when the
        bot can no longer post in the channel. Returns where the job is now shown. ``ticket``: this is
        a progress edit, and the scheduler took its first slot."""
        try:
            return await self._edit_or_repost(job, embed=embed, upload=upload, view=view, ticket=ticket)
        except (discord.Forbidden, discord.NotFound) as exc:
            if not dm_fallback or (isinstance(exc, discord.NotFound) and exc.code != _UNKNOWN_CHANNEL):
                raise
            log.info(
                "job %s: cannot post in channel %s (%s); sending by DM", job.id, job.channel_id, exc.code
            )
            return await self._send_by_dm(job, embed=embed, upload=upload, ticket=ticket)

    async def _send_by_dm(
        self, job: Job, *, embed: discord.Embed, upload: Upload | None, ticket: Ticket | None
    ) -> Receipt:
        try:
            await self._slot((GLOBAL,), ticket=ticket)
            channel = await self.client.create_dm(discord.Object(id=job.user_id))
            await self._slot((channel_bucket(channel.id), GLOBAL), ticket=ticket)
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
        ticket: Ticket | None,
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
            return await self._post_new(job, kwargs(), ticket)
        token_refused = False
        if self._via_webhook(job) and job.application_id:
            webhook = discord.Webhook.partial(
                job.application_id, job.interaction_token or "", client=self.client
            )
            try:
                await self._slot(self._buckets(job), ticket=ticket)
                await webhook.edit_message(job.reply_message_id, **kwargs())
                self.edits_sent += 1
                return Receipt(job.reply_message_id, route="webhook")
            except discord.HTTPException as exc:
                if exc.status != 401 and exc.code != _INVALID_WEBHOOK_TOKEN:
                    if exc.code == _UNKNOWN_MESSAGE:
                        return await self._post_new(job, kwargs(), ticket)
                    raise
                log.info("job %s: interaction token refused; switching to the channel route", job.id)
                token_refused = True
        message = self.client.get_partial_messageable(job.channel_id).get_partial_message(
            job.reply_message_id
        )
        try:
            await self._slot((channel_bucket(job.channel_id), GLOBAL), ticket=ticket)
            await message.edit(**kwargs())
        except discord.NotFound as exc:
            if exc.code != _UNKNOWN_MESSAGE:
                raise
            return await self._post_new(job, kwargs(), ticket)
        self.edits_sent += 1
        return Receipt(job.reply_message_id, route="channel", token_refused=token_refused)

    async def _post_new(self, job: Job, kwargs: dict[str, Any], ticket: Ticket | None) -> Receipt:
        """The reply is gone (deleted by a moderator) or was never recorded: post a fresh message."""
        kwargs = dict(kwargs)
        files = kwargs.pop("attachments", None)
        if files:
            kwargs["files"] = files
        channel = self.client.get_partial_messageable(job.channel_id)
        await self._slot((channel_bucket(job.channel_id), GLOBAL), ticket=ticket)
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
