"""``/remix`` and ``/videos``, and what the buttons on job messages do.

A remix starts like ``/video`` (``VideoCog.start_job``): the same limits, the same public card.
It keeps the source's model, size and duration (the provider's remix takes only a prompt), is
priced from the catalog as it is now, and records where it came from: ``source_job_id`` for the
"Remix of" link and ``remixed_from_video_id`` for the provider, which the tracker sends to
``POST /videos/{id}/remix``.

Who may press what is decided by ``job_action_refusal`` (the owner of the job, or a moderator as
``check_moderator`` defines it), checked on every press and every form submission.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.cogs.credits import check_moderator
from bot.discord.cogs.video import job_request
from bot.discord.common import guild_id_of
from bot.discord.presenter import NO_MENTIONS
from bot.discord.views import (
    DETAILS_PROMPT_LIMIT,
    HISTORY_COG,
    JobAction,
    RemixForm,
    details_embed,
    job_action_refusal,
    videos_embed,
    videos_page_view,
)
from bot.domain.errors import UserError
from bot.domain.jobs import Job
from bot.services.jobs import MAX_PROMPT_CHARS, clean_prompt

if TYPE_CHECKING:
    from bot.discord.bot import VideoBot
    from bot.discord.cogs.video import VideoCog

_CHOICE_NAME_MAX = 100  # Discord's limit for an autocomplete choice's name


def choice_name(job: Job) -> str:
    """``#12 · 4 s · a red fox running through…``, within Discord's 100 characters."""
    prefix = f"#{job.id} · {job.seconds} s · "
    prompt = " ".join(job.prompt.split())
    room = _CHOICE_NAME_MAX - len(prefix)
    return prefix + (prompt if len(prompt) <= room else prompt[: room - 1] + "…")


class HistoryCog(commands.Cog, name=HISTORY_COG):
    """Implements ``bot.discord.views.JobButtonHandler``."""

    def __init__(self, bot: VideoBot, videos: VideoCog) -> None:
        self.bot = bot
        self.videos = videos
        self.history = bot.history

    # -- commands ------------------------------------------------------------------------------

    @app_commands.command(name="remix", description="Make a new video from one of your finished videos")
    @app_commands.describe(
        video="One of your finished videos (start typing a word of its prompt or its job number)",
        prompt="What the remix should show",
    )
    @app_commands.guild_only()
    async def remix(
        self,
        interaction: discord.Interaction[Any],
        video: int,
        prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
    ) -> None:
        await self.start_remix(interaction, video, prompt)

    @remix.autocomplete("video")
    async def remix_video_choices(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[int]]:
        """The member's own finished videos in this server, newest first, narrowed by what they typed."""
        if interaction.guild_id is None:
            return []
        found = await self.history.remix_choices(
            interaction.guild_id, interaction.user.id, str(current or "")
        )
        return [app_commands.Choice(name=choice_name(job), value=job.id) for job in found]

    @app_commands.command(name="videos", description="Your recent videos, with status, cost and links")
    @app_commands.guild_only()
    async def videos_command(self, interaction: discord.Interaction[Any]) -> None:
        owner_id = interaction.user.id
        page = await self._videos_page(guild_id_of(interaction), owner_id, 1)
        if page is None:
            await interaction.response.send_message(
                "You haven't asked for any videos in this server yet. Try `/video`.",
                ephemeral=True,
                allowed_mentions=NO_MENTIONS,
            )
            return
        embed, view = page
        await interaction.response.send_message(
            embed=embed, view=view, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    # -- JobButtonHandler ------------------------------------------------------------------------

    async def open_remix_form(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        source = await self._job_for(interaction, job_id, JobAction.REMIX)
        await interaction.response.send_modal(RemixForm(source.id, interaction.id))

    async def start_remix(self, interaction: discord.Interaction[Any], job_id: int, prompt: str) -> None:
        text = clean_prompt(prompt)
        source = await self._job_for(interaction, job_id, JobAction.REMIX)
        quote = self.bot.catalog.quote(source.model, source.size, source.seconds)
        request = job_request(
            interaction,
            prompt=text,
            quote=quote,
            source_job_id=source.id,
            remixed_from_video_id=source.provider_video_id,
        )
        await self.videos.start_job(interaction, request)

    async def make_again(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """The same request once more (prompt, settings, starting image, remix source), as a new job
        charged to whoever pressed the button."""
        source = await self._job_for(interaction, job_id, JobAction.AGAIN)
        quote = self.bot.catalog.quote(source.model, source.size, source.seconds)
        if source.reference_image_path and not Path(source.reference_image_path).exists():
            raise UserError(
                f"The starting image of job #{source.id} is no longer stored, so it can't be made again. "
                "Use `/video` with the image."
            )
        request = job_request(
            interaction,
            prompt=source.prompt,
            quote=quote,
            reference_image_path=source.reference_image_path,
            source_job_id=source.source_job_id,
            remixed_from_video_id=source.remixed_from_video_id,
        )
        await self.videos.start_job(interaction, request)

    async def show_details(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        job = await self._job_for(interaction, job_id, JobAction.DETAILS)
        source = await self.bot.store.get_job(job.source_job_id) if job.source_job_id is not None else None
        files = []
        if len(job.prompt) > DETAILS_PROMPT_LIMIT:
            files.append(discord.File(io.BytesIO(job.prompt.encode()), filename=f"prompt-{job.id}.txt"))
        await interaction.response.send_message(
            embed=details_embed(job, source), files=files, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """Like ``/videomod cancel``: stop and refund, delete at the provider, show the final card."""
        job = await self._job_for(interaction, job_id, JobAction.CANCEL)
        cancelled = await self.bot.cancel_job(job, actor_id=interaction.user.id)
        whose = "" if cancelled.user_id == interaction.user.id else f" of <@{cancelled.user_id}>"
        await interaction.response.send_message(
            f"Cancelled job #{cancelled.id}{whose}; {cancelled.cost} credits refunded.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    async def show_videos_page(self, interaction: discord.Interaction[Any], owner_id: int, page: int) -> None:
        if interaction.user.id != owner_id:
            raise UserError(
                "Only the member who opened this list can page through it. `/videos` shows yours."
            )
        found = await self._videos_page(guild_id_of(interaction), owner_id, page)
        if found is None:
            raise UserError("You have no videos in this server any more.")
        embed, view = found
        await interaction.response.edit_message(embed=embed, view=view, allowed_mentions=NO_MENTIONS)

    # -- helpers -------------------------------------------------------------------------------

    async def _job_for(self, interaction: discord.Interaction[Any], job_id: int, action: JobAction) -> Job:
        """The job, if the member may do ``action`` to it; else a ``UserError`` saying why not."""
        guild_id = guild_id_of(interaction)
        job = await self.bot.store.get_job(job_id)
        if job is None or job.guild_id != guild_id:
            hint = (
                " Pick one of yours from the list `/remix` shows as you type."
                if action is JobAction.REMIX
                else ""
            )
            raise UserError(f"There is no video #{job_id} in this server.{hint}")
        is_moderator = False
        if job.user_id != interaction.user.id:  # only strangers cost a policy lookup
            is_moderator = (await check_moderator(self.bot, interaction)).allowed
        refusal = job_action_refusal(action, job, actor_id=interaction.user.id, is_moderator=is_moderator)
        if refusal is not None:
            raise UserError(refusal)
        return job

    async def _videos_page(
        self, guild_id: int, owner_id: int, page: int
    ) -> tuple[discord.Embed, discord.ui.View] | None:
        found = await self.history.videos_page(guild_id, owner_id, page)
        if found is None:
            return None
        return videos_embed(
            found.jobs, page=found.page, pages=found.pages, total=found.total
        ), videos_page_view(owner_id, found.page, found.pages)
