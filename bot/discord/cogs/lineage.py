"""``/extend`` and ``/edit``: what the Extend and Edit buttons do, as commands.

Both start like ``/remix`` (``JobStarter``: the same limits, the same public card) from one of the
member's finished videos, picked from an autocomplete of their own. ``/edit`` may take an uploaded
clip instead (MP4, MOV or WebM): it is downloaded from Discord only after the limits pass,
checked by its content, converted to H.264 at the nearest of the model's sizes
(``EditClips.prepare``), and priced by its length. The commands exist only when a model in the
catalog offers the operation; their choices are configuration, so they are built at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.cogs.history import choice_name
from bot.discord.starter import requester_of
from bot.discord.text import inert
from bot.discord.views import JOB_BUTTONS_COG, JobButtonHandler
from bot.domain.bounds import check_optional
from bot.domain.errors import UserError
from bot.domain.jobs import JobRequest
from bot.services.clips import CLIP_TYPES, MAX_CLIP_BYTES
from bot.services.jobs import MAX_PROMPT_CHARS, clean_prompt

if TYPE_CHECKING:
    from bot.discord.bot import VideoBot


class LineageCog(commands.Cog, name="Lineage"):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        catalog = bot.catalog
        self.commands: list[app_commands.Command[Any, ..., None]] = []
        if catalog.can_extend:
            self.commands.append(self._build_extend())
        if catalog.can_edit:
            self.commands.append(self._build_edit())

    async def cog_load(self) -> None:
        for command in self.commands:
            self.bot.tree.add_command(command)

    async def cog_unload(self) -> None:
        for command in self.commands:
            self.bot.tree.remove_command(command.name)

    def _buttons(self) -> JobButtonHandler:
        buttons = self.bot.get_cog(JOB_BUTTONS_COG)
        if not isinstance(buttons, JobButtonHandler):
            raise UserError("The bot is still starting up. Try again in a moment.")
        return buttons

    async def own_videos(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[int]]:
        """The member's own finished videos in this server, newest first, narrowed by what they typed."""
        if interaction.guild_id is None:
            return []
        found = await self.bot.history.remix_choices(
            interaction.guild_id, interaction.user.id, str(current or "")
        )
        return [app_commands.Choice(name=choice_name(job), value=job.id) for job in found]

    def _build_extend(self) -> app_commands.Command[Any, ..., None]:
        choices = [
            app_commands.Choice(name=f"{s} seconds", value=s) for s in self.bot.catalog.extension_seconds
        ]
        cog = self

        @app_commands.command(
            name="extend", description="Continue one of your finished videos with a new prompt"
        )
        @app_commands.describe(
            video="One of your finished videos (start typing a word of its prompt or its job number)",
            prompt="What happens next: the new part continues the video as this says",
            seconds="How many seconds to add (default: the shortest)",
        )
        @app_commands.choices(seconds=choices)
        @app_commands.guild_only()
        async def extend(
            interaction: discord.Interaction,
            video: int,
            prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
            seconds: int | None = None,
        ) -> None:
            # The choices are enforced by Discord's client only; the catalog checks the value.
            checked = check_optional("video.seconds", seconds)
            await cog._buttons().start_extension(interaction, video, prompt, checked)

        extend.autocomplete("video")(self.own_videos)
        return extend

    def _build_edit(self) -> app_commands.Command[Any, ..., None]:
        cog = self

        @app_commands.command(
            name="edit", description="Change one of your finished videos, or a clip, as a prompt says"
        )
        @app_commands.describe(
            prompt="How the video should change",
            video="One of your finished videos (start typing a word of its prompt or its job number)",
            clip="Or a clip of your own (MP4, MOV or WebM, at most 20 seconds)",
        )
        @app_commands.guild_only()
        async def edit(
            interaction: discord.Interaction,
            prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
            video: int | None = None,
            clip: discord.Attachment | None = None,
        ) -> None:
            await cog.start_edit(interaction, prompt, video=video, clip=clip)

        edit.autocomplete("video")(self.own_videos)
        return edit

    async def start_edit(
        self,
        interaction: discord.Interaction[Any],
        prompt: str,
        *,
        video: int | None,
        clip: discord.Attachment | None,
    ) -> None:
        if (video is None) == (clip is None):
            raise UserError(
                "Pick one of your videos (`video`) or attach a clip (`clip`) to edit, not both."
                if clip is not None
                else "Pick one of your videos (`video`) or attach a clip (`clip`) to edit."
            )
        if video is not None:
            await self._buttons().start_edit(interaction, video, prompt)
            return
        assert clip is not None
        clips = self.bot.clips
        if clips is None:
            raise UserError("This bot can't edit uploaded clips. Pick one of your videos instead.")
        limit = min(MAX_CLIP_BYTES, interaction.filesize_limit or MAX_CLIP_BYTES)
        _precheck_clip(clip, limit)
        text = clean_prompt(prompt)
        jobs = self.bot.jobs
        request = jobs.clip_edit_request(requester_of(interaction), text)
        spec = self.bot.catalog.get(request.model)
        sizes = spec.sizes if spec is not None else (request.size,)

        async def convert(request: JobRequest) -> JobRequest:
            converted = await clips.prepare(clip.url, interaction.user.id, sizes=sizes, max_bytes=limit)
            try:
                return jobs.priced_clip(request, converted)
            except UserError:
                converted.path.unlink(missing_ok=True)
                raise

        await self.bot.starter.start(interaction, request, prepare=convert)


def _precheck_clip(clip: discord.Attachment, limit: int) -> None:
    """Refuse what is certainly not usable before downloading anything; the content is checked for
    real after the download (the claimed type and name only fail fast)."""
    if clip.size > limit:
        raise UserError(
            f"That clip is {clip.size / 1048576:.1f} MiB; the limit here is {limit / 1048576:.0f} MiB. "
            "Upload a shorter or smaller MP4, MOV or WebM."
        )
    claimed = (clip.content_type or "").split(";")[0].strip().lower()
    if claimed and claimed not in CLIP_TYPES:
        raise UserError(f"{inert(clip.filename, 100)} isn't an MP4, MOV or WebM video. Attach one of those.")
