"""How a job starts from an interaction (``/video``, ``/remix``, ``/extend``, ``/edit``, the Remix,
Extend, Edit and Again buttons).

The use case (limits, reservation, recording where the card is) is ``JobService``'s; this is only
the Discord choreography around it: an ephemeral refusal before anything is public, the public
"thinking…" acknowledgement, the first card.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import discord

from bot.discord.common import role_ids
from bot.discord.errors import DMS_REFUSED, describe
from bot.discord.mentions import NO_MENTIONS
from bot.discord.presenter import DiscordPresenter
from bot.domain.errors import UserError
from bot.domain.jobs import Job, JobRequest, Requester
from bot.services.jobs import JobService

log = logging.getLogger(__name__)

INTERACTION_TOKEN_TTL = 15 * 60


def requester_of(interaction: discord.Interaction[Any]) -> Requester:
    """Who asks and where the job's reply goes: this interaction's response."""
    if interaction.channel_id is None:
        raise UserError("Use this command in a server channel.")
    return Requester(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        user_id=interaction.user.id,
        user_name=interaction.user.display_name,
        application_id=interaction.application_id,
        interaction_token=interaction.token,
        token_expires_at=interaction.created_at.timestamp() + INTERACTION_TOKEN_TTL,
        upload_limit=interaction.filesize_limit,
    )


class JobStarter:
    def __init__(self, jobs: JobService, presenter: DiscordPresenter) -> None:
        self.jobs = jobs
        self.presenter = presenter

    async def start(
        self,
        interaction: discord.Interaction[Any],
        request: JobRequest,
        *,
        prepare: Callable[[JobRequest], Awaitable[JobRequest]] | None = None,
    ) -> Job | None:
        """Precheck the limits (an ephemeral refusal, nothing spent), acknowledge publicly, run
        ``prepare`` (slow work such as fitting an image), reserve and record, show the card.

        Raises ``UserError`` for a refusal before the acknowledgement; after it, a refusal replaces
        the public "thinking…" placeholder with an ephemeral message and returns None."""
        if request.guild_id is None:
            # guild_only() only hides the command in DMs; a client can still send it, so check here.
            raise UserError(DMS_REFUSED)
        roles = role_ids(interaction.user)
        await self.jobs.precheck(request, member_roles=roles)

        acknowledged = await interaction.response.defer(thinking=True)
        placeholder_id = acknowledged.message_id if acknowledged is not None else None
        prepared = request
        created: list[Path] = []  # the files this attempt made (an image, a clip), and may remove
        try:
            if prepare is not None:
                prepared = await prepare(request)
                for made, given in (
                    (prepared.reference_image_path, request.reference_image_path),
                    (prepared.clip_path, request.clip_path),
                ):
                    if made is not None and made != given:
                        created.append(Path(made))
            # Recording the reply with the job (one transaction) means the tracker, which may pick
            # the job up at once, always edits this message rather than posting another.
            job = await self.jobs.submit(
                replace(prepared, reply_message_id=placeholder_id), member_roles=roles
            )
        except Exception as exc:
            # Nothing was reserved: take down the public "thinking…" placeholder and the image or
            # clip ``prepare`` made; a refusal is then shown to the member only (other errors by
            # the one error handler). A file the request came with (Again reuses its source job's)
            # belongs to that other job: removing it would break the job that owns it.
            for path in created:
                path.unlink(missing_ok=True)
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
            if not isinstance(exc, UserError):
                raise
            await interaction.followup.send(describe(exc), ephemeral=True, allowed_mentions=NO_MENTIONS)
            return None
        if placeholder_id is not None:
            # Letting the presenter show the first card puts it in the same per-job queue as the
            # tracker's edits, so it can't land after (and hide) a quick failure.
            await self.presenter.job_changed(job)
            return await self.jobs.shown(job)
        embed = await self.presenter.render(job)
        view = self.presenter.view_for(job)
        if view is None:
            message = await interaction.edit_original_response(embed=embed, allowed_mentions=NO_MENTIONS)
        else:
            message = await interaction.edit_original_response(
                embed=embed, allowed_mentions=NO_MENTIONS, view=view
            )
        return await self.jobs.shown(job, message.id)
