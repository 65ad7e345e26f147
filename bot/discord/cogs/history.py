"""``/remix`` and ``/videos`` (and the ``/videos`` pager).

A remix starts like ``/video`` (``JobStarter``): the same limits, the same public card. It keeps
the source's model, size and duration (``JobService.remix_request``), and records where it came
from: ``source_job_id`` for the "Remix of" link and ``remixed_from_video_id`` for the provider,
which the tracker sends to ``POST /videos/{id}/remix``. The command does what the Remix form
does (the ``JobButtonHandler`` cog's ``start_remix``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.common import guild_id_of
from bot.discord.mentions import NO_MENTIONS
from bot.discord.text import plain_inline
from bot.discord.views import HISTORY_COG, JOB_BUTTONS_COG, JobButtonHandler, videos_embed, videos_page_view
from bot.domain.bounds import check
from bot.domain.errors import UserError
from bot.domain.jobs import Job
from bot.services.jobs import MAX_PROMPT_CHARS

if TYPE_CHECKING:
    from bot.discord.bot import VideoBot

_CHOICE_NAME_MAX = 100  # Discord's limit for an autocomplete choice's name


def choice_name(job: Job) -> str:
    """``#12 · 4 s · a red fox running through…``, within Discord's 100 characters. Choice names
    render no Markdown, so the prompt is only made harmless there (``plain_inline``)."""
    prefix = f"#{job.id} · {job.length} s · "
    return prefix + plain_inline(job.prompt, _CHOICE_NAME_MAX - len(prefix))


class HistoryCog(commands.Cog, name=HISTORY_COG):
    """Implements ``bot.discord.views.VideosPager``."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
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
        buttons = self.bot.get_cog(JOB_BUTTONS_COG)
        if not isinstance(buttons, JobButtonHandler):
            raise UserError("The bot is still starting up. Try again in a moment.")
        await buttons.start_remix(interaction, video, prompt)

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

    # -- VideosPager ---------------------------------------------------------------------------

    async def show_videos_page(self, interaction: discord.Interaction[Any], owner_id: int, page: int) -> None:
        check("videos.page", page)  # the page comes from the button's custom_id, which can be forged
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

    async def _videos_page(
        self, guild_id: int, owner_id: int, page: int
    ) -> tuple[discord.Embed, discord.ui.View] | None:
        found = await self.history.videos_page(guild_id, owner_id, page)
        if found is None:
            return None
        return videos_embed(
            found.jobs, page=found.page, pages=found.pages, total=found.total
        ), videos_page_view(owner_id, found.page, found.pages)
