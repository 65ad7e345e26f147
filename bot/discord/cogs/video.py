"""``/video``: what members type.

The command is built from the catalog at start-up (its choices are configuration), so it is made by
a factory and registered on the tree by the cog rather than declared at class level.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.adapters.media import ImageError, fit_image, sniff_image
from bot.discord.common import role_ids
from bot.discord.presenter import NO_MENTIONS
from bot.domain.catalog import Quote
from bot.domain.errors import UserError
from bot.domain.jobs import Job, JobRequest
from bot.services.jobs import MAX_PROMPT_CHARS, clean_prompt

if TYPE_CHECKING:
    from bot.discord.bot import VideoBot

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 10 * 1024 * 1024
INTERACTION_TOKEN_TTL = 15 * 60


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
        # Cheap checks first, so refusals can be ephemeral and nothing is spent on them.
        quote = self.bot.catalog.quote(model, size, seconds)
        text = clean_prompt(prompt)
        if image is not None:
            _precheck_attachment(image)
        request = job_request(interaction, prompt=text, quote=quote)

        async def attach_reference(request: JobRequest) -> JobRequest:
            if image is None:
                return request
            reference = await self._prepare_reference(image, quote.width, quote.height)
            return replace(request, reference_image_path=str(reference))

        await self.start_job(interaction, request, prepare=attach_reference)

    async def start_job(
        self,
        interaction: discord.Interaction[Any],
        request: JobRequest,
        *,
        prepare: Callable[[JobRequest], Awaitable[JobRequest]] | None = None,
    ) -> Job | None:
        """The one way a job starts from an interaction (``/video``, ``/remix``, the Remix and Again
        buttons): precheck the limits (an ephemeral refusal, nothing spent), acknowledge publicly,
        run ``prepare`` (slow work such as fitting an image), reserve and record, show the card.

        Raises ``UserError`` for a refusal before the acknowledgement; after it, a refusal replaces
        the public "thinking…" placeholder with an ephemeral message and returns None."""
        if request.guild_id is None:
            # guild_only() only hides the command in DMs; a client can still send it, so check here.
            raise UserError("This command works in servers only, not in direct messages.")
        roles = role_ids(interaction.user)
        await self.bot.jobs.precheck(request, member_roles=roles)

        acknowledged = await interaction.response.defer(thinking=True)
        placeholder_id = acknowledged.message_id if acknowledged is not None else None
        prepared = request
        try:
            if prepare is not None:
                prepared = await prepare(request)
            # Recording the reply with the job (one transaction) means the tracker, which may pick
            # the job up at once, always edits this message rather than posting another.
            job = await self.bot.jobs.submit(
                replace(prepared, reply_message_id=placeholder_id), member_roles=roles
            )
        except Exception as exc:
            # Nothing was reserved: take down the public "thinking…" placeholder and the fitted
            # image; a refusal is then shown to the member only (other errors by the tree handler).
            if prepared.reference_image_path:
                Path(prepared.reference_image_path).unlink(missing_ok=True)
            with contextlib.suppress(discord.HTTPException):
                await interaction.delete_original_response()
            if not isinstance(exc, UserError):
                raise
            await interaction.followup.send(exc.user_message, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return None
        if placeholder_id is not None:
            # Letting the presenter show the first card puts it in the same per-job queue as the
            # tracker's edits, so it can't land after (and hide) a quick failure.
            await self.bot.presenter.job_changed(job)
            self.bot.jobs.wake_tracker()
            return job
        embed = await self.bot.presenter.render(job)
        view = self.bot.presenter.view_for(job)
        if view is None:
            message = await interaction.edit_original_response(embed=embed, allowed_mentions=NO_MENTIONS)
        else:
            message = await interaction.edit_original_response(
                embed=embed, allowed_mentions=NO_MENTIONS, view=view
            )
        job = await self.bot.store.update_job(job.id, reply_message_id=message.id)
        self.bot.jobs.wake_tracker()
        return job

    async def _prepare_reference(self, image: discord.Attachment, width: int, height: int) -> Path:
        try:
            data = await image.read()
        except discord.HTTPException as exc:
            raise UserError("Discord didn't let the bot download that image. Upload it again.") from exc
        try:
            await asyncio.to_thread(sniff_image, data, max_bytes=MAX_IMAGE_BYTES)
            fitted = await asyncio.to_thread(fit_image, data, width, height)
        except ImageError as exc:
            raise UserError(exc.user_message) from exc
        folder = self.bot.settings.data_dir / "references"
        path = folder / f"{int(time.time())}-{uuid.uuid4().hex}.png"
        await asyncio.to_thread(_write_file, path, fitted)
        return path


def job_request(
    interaction: discord.Interaction[Any],
    *,
    prompt: str,
    quote: Quote,
    reference_image_path: str | None = None,
    source_job_id: int | None = None,
    remixed_from_video_id: str | None = None,
) -> JobRequest:
    """A priced request from a member's interaction; the job's reply is this interaction's response."""
    if interaction.channel_id is None:
        raise UserError("Use this command in a server channel.")
    return JobRequest.priced(
        quote,
        prompt=prompt,
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        user_id=interaction.user.id,
        user_name=interaction.user.display_name,
        reference_image_path=reference_image_path,
        source_job_id=source_job_id,
        remixed_from_video_id=remixed_from_video_id,
        application_id=interaction.application_id,
        interaction_token=interaction.token,
        token_expires_at=interaction.created_at.timestamp() + INTERACTION_TOKEN_TTL,
        upload_limit=interaction.filesize_limit,
    )


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)


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
            f"`{discord.utils.escape_markdown(image.filename)}` isn't an image. Attach a JPEG, PNG or WebP."
        )
