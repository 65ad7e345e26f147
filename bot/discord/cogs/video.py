"""``/video``: what members type.

The command is built from the catalog at start-up (its choices are configuration), so it is made by
a factory and registered on the tree by the cog rather than declared at class level.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.starter import requester_of
from bot.discord.text import inert
from bot.domain.bounds import check_optional
from bot.domain.errors import UserError
from bot.domain.jobs import JobRequest
from bot.services.jobs import MAX_PROMPT_CHARS, clean_prompt
from bot.services.references import MAX_IMAGE_BYTES

if TYPE_CHECKING:
    from bot.discord.bot import VideoBot

log = logging.getLogger(__name__)


class VideoCog(commands.Cog):
    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot
        self.video_command = self._build_video_command()

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.video_command)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.video_command.name)

    def _build_video_command(self) -> app_commands.Command[Any, ..., None]:
        catalog = self.bot.catalog
        model_choices = [
            app_commands.Choice(name=f"{m.label} ({m.name})", value=m.name) for m in catalog.models
        ]
        size_choices = [app_commands.Choice(name=size, value=size) for size in catalog.all_sizes]
        seconds_choices = [app_commands.Choice(name=f"{s} seconds", value=s) for s in catalog.all_seconds]
        cog = self

        @app_commands.command(name="video", description="Generate a video from a text prompt")
        @app_commands.describe(
            prompt="What the video should show. Detailed prompts give better videos.",
            model=f"The model to use (default: {catalog.default_model})",
            seconds="How long the video is",
            size="Width x height in pixels",
            image="A still image (JPEG, PNG or WebP) to start the video from; it is fitted to the size",
        )
        @app_commands.choices(model=model_choices)
        @app_commands.choices(size=size_choices)
        @app_commands.choices(seconds=seconds_choices)
        @app_commands.guild_only()
        async def video(
            interaction: discord.Interaction,
            prompt: app_commands.Range[str, 1, MAX_PROMPT_CHARS],
            model: str | None = None,
            seconds: int | None = None,
            size: str | None = None,
            image: discord.Attachment | None = None,
        ) -> None:
            await cog.create_video(interaction, prompt, model=model, seconds=seconds, size=size, image=image)

        return video

    async def create_video(
        self,
        interaction: discord.Interaction,
        prompt: str,
        *,
        model: str | None,
        seconds: int | None,
        size: str | None,
        image: discord.Attachment | None,
    ) -> None:
        # Cheap checks first, so refusals can be ephemeral and nothing is spent on them. The
        # seconds choices are enforced by Discord's client only: a forged 0 would mean "default".
        seconds = check_optional("video.seconds", seconds)
        quote = self.bot.catalog.quote(model, size, seconds)
        text = clean_prompt(prompt)
        if image is not None:
            spec = self.bot.catalog.get(quote.model)
            if spec is not None and not spec.image_input:
                raise UserError(
                    f"`{spec.name}` can't start from an image. Leave out `image`, or pick another model."
                )
            _precheck_attachment(image)
        request = requester_of(interaction).request(quote, prompt=text)

        async def attach_reference(request: JobRequest) -> JobRequest:
            if image is None:
                return request
            reference = await self.bot.references.prepare(
                image.url, interaction.user.id, quote.width, quote.height
            )
            return replace(request, reference_image_path=str(reference))

        await self.bot.starter.start(interaction, request, prepare=attach_reference)


def _precheck_attachment(image: discord.Attachment) -> None:
    """Refuse what is certainly not usable before downloading anything. The bytes are checked for
    real after the download; the claimed content type is only used to fail fast."""
    if image.size > MAX_IMAGE_BYTES:
        raise UserError(
            f"That image is {image.size / 1048576:.1f} MiB; the limit is {MAX_IMAGE_BYTES // 1048576} MiB. "
            "Upload a smaller JPEG, PNG or WebP."
        )
    claimed = (image.content_type or "").split(";")[0].strip().lower()
    if claimed and not claimed.startswith("image/"):
        raise UserError(
            # No backticks: a filename with one would close the code span and run as Markdown.
            f"{inert(image.filename, 100)} isn't an image. Attach a JPEG, PNG or WebP."
        )
