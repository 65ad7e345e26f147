"""What the buttons on job messages and the remix, extend and edit forms do (``JobButtonHandler``),
and the starts of ``/remix``, ``/extend`` and ``/edit`` (with a video), which are the forms'.

Who may press what is decided by ``job_action_refusal`` (the owner of the job, or a moderator as
``check_moderator`` defines it), checked on every press and every form submission. Every limit that
would refuse a Remix, Extend, Edit or Again is checked when the button is pressed, before a form
opens.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.discord.cogs.credits import check_moderator
from bot.discord.common import guild_id_of, role_ids
from bot.discord.mentions import NO_MENTIONS
from bot.discord.starter import requester_of
from bot.discord.views import (
    DETAILS_PROMPT_LIMIT,
    JOB_BUTTONS_COG,
    LINEAGE_ACTIONS,
    EditForm,
    ExtendForm,
    JobAction,
    RemixForm,
    details_embed,
    job_action_refusal,
)
from bot.domain.bounds import check
from bot.domain.errors import JobActionRefused, JobNotFound
from bot.domain.jobs import Job, JobKind
from bot.domain.messages import credits_text

if TYPE_CHECKING:
    from bot.discord.bot import VideoBot


class JobButtonsCog(commands.Cog, name=JOB_BUTTONS_COG):
    """Implements ``bot.discord.views.JobButtonHandler``: parse, call one service method, render."""

    def __init__(self, bot: VideoBot) -> None:
        self.bot = bot

    async def open_remix_form(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        source = await self.job_for(interaction, job_id, JobAction.REMIX)
        await self.bot.jobs.precheck_remix(
            source, requester_of(interaction), member_roles=role_ids(interaction.user)
        )
        await interaction.response.send_modal(RemixForm(source.id, interaction.id))

    async def start_remix(self, interaction: discord.Interaction[Any], job_id: int, prompt: str) -> None:
        source = await self.job_for(interaction, job_id, JobAction.REMIX)
        request = self.bot.jobs.remix_request(source, requester_of(interaction), prompt)
        await self.bot.starter.start(interaction, request)

    async def open_extend_form(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        source = await self.lineage_source(interaction, job_id, JobAction.EXTEND)
        spec = self.bot.catalog.get(source.model)
        seconds = spec.extend.seconds if spec is not None and spec.extend is not None else ()
        await interaction.response.send_modal(ExtendForm(source.id, interaction.id, seconds))

    async def start_extension(
        self, interaction: discord.Interaction[Any], job_id: int, prompt: str, seconds: int | None
    ) -> None:
        """The Extend form's submission and ``/extend``: the source followed by a new segment."""
        source = await self.job_for(interaction, job_id, JobAction.EXTEND)
        request = self.bot.jobs.extension_request(source, requester_of(interaction), prompt, seconds)
        await self.bot.starter.start(interaction, request)

    async def open_edit_form(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        source = await self.lineage_source(interaction, job_id, JobAction.EDIT)
        await interaction.response.send_modal(EditForm(source.id, interaction.id))

    async def start_edit(self, interaction: discord.Interaction[Any], job_id: int, prompt: str) -> None:
        """The Edit form's submission and ``/edit`` with one of the member's videos."""
        source = await self.job_for(interaction, job_id, JobAction.EDIT)
        request = self.bot.jobs.edit_request(source, requester_of(interaction), prompt)
        await self.bot.starter.start(interaction, request)

    async def lineage_source(
        self, interaction: discord.Interaction[Any], job_id: int, action: JobAction
    ) -> Job:
        """The job an Extend or Edit press starts from, once every limit that would refuse the
        result has passed (before the form opens, like Remix)."""
        source = await self.job_for(interaction, job_id, action)
        kind = LINEAGE_ACTIONS.get(action, JobKind.REMIX)
        await self.bot.jobs.precheck_lineage(
            source, kind, requester_of(interaction), member_roles=role_ids(interaction.user)
        )
        return source

    async def make_again(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """The same request once more, as a new job charged to whoever pressed the button."""
        source = await self.job_for(interaction, job_id, JobAction.AGAIN)
        request = await self.bot.jobs.again_request(source, requester_of(interaction))
        await self.bot.starter.start(interaction, request)

    async def show_details(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        job = await self.job_for(interaction, job_id, JobAction.DETAILS)
        source = await self.bot.jobs.get(job.source_job_id) if job.source_job_id is not None else None
        files = []
        if len(job.prompt) > DETAILS_PROMPT_LIMIT:
            files.append(discord.File(io.BytesIO(job.prompt.encode()), filename=f"prompt-{job.id}.txt"))
        await interaction.response.send_message(
            embed=details_embed(job, source), files=files, ephemeral=True, allowed_mentions=NO_MENTIONS
        )

    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """Like ``/videomod cancel``: stop and refund, delete at the provider, show the final card."""
        job = await self.job_for(interaction, job_id, JobAction.CANCEL)
        cancelled = await self.bot.jobs.cancel(
            job.id, actor_id=interaction.user.id, presenter=self.bot.presenter
        )
        whose = "" if cancelled.user_id == interaction.user.id else f" of <@{cancelled.user_id}>"
        await interaction.response.send_message(
            f"Cancelled job #{cancelled.id}{whose}; {credits_text(cancelled.cost)} refunded.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )

    async def job_for(self, interaction: discord.Interaction[Any], job_id: int, action: JobAction) -> Job:
        """The job, if the member may do ``action`` to it; else a ``UserError`` saying why not."""
        # A button's custom_id and /remix's option are whatever the client sent: a number SQLite
        # can't hold would fail the query rather than be refused.
        check("job", job_id)
        guild_id = guild_id_of(interaction)
        job = await self.bot.jobs.get(job_id)
        if job is None or job.guild_id != guild_id:
            hint = (
                f" Pick one of yours from the list `/{action.value}` shows as you type."
                if action in LINEAGE_ACTIONS
                else ""
            )
            raise JobNotFound(job_id, hint)
        is_moderator = False
        if job.user_id != interaction.user.id:  # only strangers cost a policy lookup
            is_moderator = (await check_moderator(self.bot, interaction)).allowed
        refusal = job_action_refusal(action, job, actor_id=interaction.user.id, is_moderator=is_moderator)
        if refusal is not None:
            raise JobActionRefused(job.id, action.value, refusal, owner_id=job.user_id)
        return job
