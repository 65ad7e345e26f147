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

from bot.catalog import Catalog
from bot.core.errors import UndeliverableError
from bot.core.jobs import Job, JobStatus
from bot.store.sqlite import Store
from bot.ui.embeds import job_embed

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
_INVALID_WEBHOOK_TOKEN = 50027
_UNKNOWN_MESSAGE = 10008


@dataclass
class _EditState:
    latest: Job
    last_key: str | None = None
    last_edit_at: float = float("-inf")
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class JobViews(Protocol):
    """Buttons shown on a job's message (provided by the history/remix feature)."""

    def progress_view(self, job: Job) -> discord.ui.View | None: ...

    def result_view(self, job: Job) -> discord.ui.View | None: ...


class DiscordPresenter:
    def __init__(
        self,
        client: discord.Client,
        store: Store,
        catalog: Catalog,
        *,
        edit_interval: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.store = store
        self.catalog = catalog
        self.edit_interval = edit_interval
        self._clock = clock
        self._states: dict[int, _EditState] = {}
        self.edits_sent = 0
        self.views: JobViews | None = None

    def render(self, job: Job) -> discord.Embed:
        spec = self.catalog.get(job.model)
        expected = (spec.seconds_per_video_second if spec else 10.0) * job.seconds
        return job_embed(job, now=self._clock(), expected_seconds=expected)

    # -- JobPresenter ----------------------------------------------------------------------------

    async def job_changed(self, job: Job) -> None:
        state = self._states.get(job.id)
        if state is None:
            state = self._states[job.id] = _EditState(latest=job)
        else:
            state.latest = job
        if state.task is None or state.task.done():
            state.task = asyncio.create_task(self._flush(state), name=f"progress-edit-{job.id}")

    async def _flush(self, state: _EditState) -> None:
        wait = state.last_edit_at + self.edit_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)  # rate shaping: one edit per interval per message
        job = state.latest
        embed = self.render(job)
        key = json.dumps(embed.to_dict(), sort_keys=True)
        if key == state.last_key:
            return
        try:
            await self._edit_reply(job, embed=embed, view=self.view_for(job))
        except discord.HTTPException as exc:
            log.warning("job %s: progress edit failed: %s", job.id, exc)
            return
        state.last_key = key
        state.last_edit_at = time.monotonic()

    async def _settle(self, job_id: int) -> None:
        """Stop progress edits of a job whose final state is about to be shown."""
        state = self._states.pop(job_id, None)
        if state and state.task and not state.task.done():
            state.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.task

    async def deliver(self, job: Job, media: Path) -> int | None:
        await self._settle(job.id)
        final = await self.store.get_job(job.id) or job
        delivered = _as_delivered(final, self._clock())
        size = media.stat().st_size
        limit = final.upload_limit or 10 * 1024 * 1024
        if size > limit:
            raise UndeliverableError(
                f"The video is {size / 1048576:.1f} MiB, over this server's {limit / 1048576:.0f} MiB upload limit."
            )
        file = discord.File(media, filename=video_filename(final))
        return await self._edit_reply(
            delivered, embed=self.render(delivered), attachments=[file], view=self.view_for(delivered)
        )

    async def job_failed(self, job: Job) -> None:
        await self._settle(job.id)
        try:
            await self._edit_reply(job, embed=self.render(job), view=self.view_for(job))
        except discord.HTTPException as exc:
            log.warning("job %s: could not show the failure: %s", job.id, exc)

    async def find_delivery(self, job: Job) -> int | None:
        if job.reply_message_id is None:
            return None
        channel = self.client.get_partial_messageable(job.channel_id)
        try:
            message = await channel.fetch_message(job.reply_message_id)
        except discord.HTTPException:
            return None
        if any(a.filename == video_filename(job) for a in message.attachments):
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
        attachments: list[discord.File] | None = None,
        view: discord.ui.View | None = None,
    ) -> int:
        """Edit the job's reply (webhook while the token is fresh, else the channel route); post a new
        message when the reply is gone. Returns the id of the message now showing the job."""
        kwargs: dict[str, Any] = {"embed": embed, "allowed_mentions": NO_MENTIONS}
        if attachments is not None:
            kwargs["attachments"] = attachments
        if view is not None:
            kwargs["view"] = view
        if job.reply_message_id is None:
            return await self._post_new(job, kwargs)
        if job.token_usable(self._clock()) and job.application_id:
            webhook = discord.Webhook.partial(
                job.application_id, job.interaction_token or "", client=self.client
            )
            try:
                await webhook.edit_message(job.reply_message_id, **kwargs)
                self.edits_sent += 1
                return job.reply_message_id
            except discord.HTTPException as exc:
                if exc.status != 401 and exc.code != _INVALID_WEBHOOK_TOKEN:
                    if exc.code == _UNKNOWN_MESSAGE:
                        return await self._post_new(job, kwargs)
                    raise
                log.info("job %s: interaction token refused; switching to the channel route", job.id)
                await self.store.update_job(job.id, token_expires_at=0.0)
                _rewind(attachments)
        message = self.client.get_partial_messageable(job.channel_id).get_partial_message(
            job.reply_message_id
        )
        try:
            await message.edit(**kwargs)
        except discord.NotFound as exc:
            if exc.code != _UNKNOWN_MESSAGE:
                raise
            _rewind(attachments)
            return await self._post_new(job, kwargs)
        self.edits_sent += 1
        return job.reply_message_id

    async def _post_new(self, job: Job, kwargs: dict[str, Any]) -> int:
        """The reply is gone (deleted by a moderator) or was never recorded: post a fresh message."""
        kwargs = dict(kwargs)
        files = kwargs.pop("attachments", None)
        if files:
            kwargs["files"] = files
        channel = self.client.get_partial_messageable(job.channel_id)
        message = await channel.send(**kwargs)
        self.edits_sent += 1
        await self.store.update_job(job.id, reply_message_id=message.id)
        return message.id


def video_filename(job: Job) -> str:
    return f"video-{job.id}.mp4"


def _rewind(files: list[discord.File] | None) -> None:
    for file in files or []:
        file.reset()


def _as_delivered(job: Job, now: float) -> Job:
    """The job as it will look once delivered, for the final card."""
    return replace(job, status=JobStatus.COMPLETED, progress=100, finished_at=now)
