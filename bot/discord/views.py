"""Buttons on job messages, the ``/videos`` pager and the remix, extend and edit forms.

Every button is a ``DynamicItem``: its state (the job number, or the owner and page of a list) lives
in its ``custom_id``, and the classes are registered once with ``bot.add_dynamic_items``, so buttons
on messages posted before a restart keep working. Button callbacks only parse the ``custom_id`` and
hand over to the job buttons cog (``JobButtonHandler``; the ``/videos`` pager to the history cog,
``VideosPager``), which loads the job and checks who is asking:
nothing here trusts that the person pressing a button is the person it was shown to.

Views that carry dynamic items are made with ``timeout=None``: when a view times out, discord.py
removes its items' templates from the dispatcher, which would silently unregister the buttons of
every other message too.

The rendering helpers (``details_embed``, ``videos_embed``) and the ownership rule
(``job_action_refusal``) are pure, for unit tests.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import discord

from bot.discord.embeds import duration_text, lineage_text, message_link, remix_source_gone
from bot.discord.errors import answer_error
from bot.discord.text import inert, inert_inline
from bot.domain.errors import UserError
from bot.domain.jobs import ChargeState, Job, JobKind, JobStatus
from bot.domain.messages import cancel_refusal

log = logging.getLogger(__name__)

HISTORY_COG = "History"
"""The name the cog implementing ``VideosPager`` is registered under."""
JOB_BUTTONS_COG = "JobButtons"
"""The name the cog implementing ``JobButtonHandler`` is registered under."""

REMIX_FORM_PREFIX = "videobot:remix-form:"
EXTEND_FORM_PREFIX = "videobot:extend-form:"
EDIT_FORM_PREFIX = "videobot:edit-form:"
PROMPT_INPUT_MAX = 4000  # Discord's limit for a text input in a modal
DETAILS_PROMPT_LIMIT = 4000  # longer prompts are attached as a text file (embeds hold 6,000 chars)
_LINE_PROMPT = 60


class JobAction(StrEnum):
    REMIX = "remix"
    EXTEND = "extend"
    EDIT = "edit"
    AGAIN = "again"
    DETAILS = "details"
    CANCEL = "cancel"


# The provider's video is complete from DOWNLOADING on; the card shows the result a moment before
# the job is recorded as COMPLETED, and a quick press must not be refused.
_PROVIDER_FINISHED = frozenset({JobStatus.DOWNLOADING, JobStatus.UPLOADING, JobStatus.COMPLETED})

_WHAT_OTHERS_CANNOT = {
    JobAction.REMIX: "remix it. Use `/remix` on one of your own videos.",
    JobAction.EXTEND: "extend it. Use `/extend` on one of your own videos.",
    JobAction.EDIT: "edit it. Use `/edit` on one of your own videos.",
    JobAction.AGAIN: "make it again. Use `/video` to make your own.",
    JobAction.DETAILS: "see its details.",
    JobAction.CANCEL: "cancel it.",
}


# The actions that start from a finished video, and their verb.
_FROM_FINISHED = {JobAction.REMIX: "remix", JobAction.EXTEND: "extend", JobAction.EDIT: "edit"}
LINEAGE_ACTIONS = {
    JobAction.REMIX: JobKind.REMIX,
    JobAction.EXTEND: JobKind.EXTENSION,
    JobAction.EDIT: JobKind.EDIT,
}


def job_action_refusal(action: JobAction, job: Job, *, actor_id: int, is_moderator: bool) -> str | None:
    """Why ``actor_id`` may not do ``action`` to ``job`` right now, or None when they may.

    Every job button belongs to the member who asked for the video; a moderator may use them too
    (to cancel a runaway job, or look into one). The job's state is checked after ownership, so a
    stranger is told the job isn't theirs rather than something about its state."""
    if actor_id != job.user_id and not is_moderator:
        return f"This is <@{job.user_id}>'s video: only they or a moderator can {_WHAT_OTHERS_CANNOT[action]}"
    if action in _FROM_FINISHED:
        verb = _FROM_FINISHED[action]
        if job.status not in _PROVIDER_FINISHED:
            return f"Only finished videos can be {verb}ed; job #{job.id} is {job.status.label.lower()}."
        if not job.provider_video_id:
            return f"Job #{job.id} has no video at the provider to {verb}."
    elif action is JobAction.AGAIN:
        if remix_source_gone(job):
            return "The provider no longer has the source video, so this remix can't be made again."
    elif action is JobAction.CANCEL and not job.cancellable:
        return cancel_refusal(job)
    return None


@runtime_checkable
class JobButtonHandler(Protocol):
    """What the job buttons and the remix form do; implemented by ``cogs.jobs.JobButtonsCog``. Each
    method answers the interaction, and raises ``UserError`` for a refusal it hasn't answered yet."""

    async def open_remix_form(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...

    async def start_remix(self, interaction: discord.Interaction[Any], job_id: int, prompt: str) -> None: ...

    async def open_extend_form(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...

    async def start_extension(
        self, interaction: discord.Interaction[Any], job_id: int, prompt: str, seconds: int | None
    ) -> None: ...

    async def open_edit_form(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...

    async def start_edit(self, interaction: discord.Interaction[Any], job_id: int, prompt: str) -> None: ...

    async def make_again(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...

    async def show_details(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...

    async def cancel_job(self, interaction: discord.Interaction[Any], job_id: int) -> None: ...


@runtime_checkable
class VideosPager(Protocol):
    """Previous / Next on a ``/videos`` list; implemented by the history cog."""

    async def show_videos_page(
        self, interaction: discord.Interaction[Any], owner_id: int, page: int
    ) -> None: ...


async def _answer(
    interaction: discord.Interaction[Any],
    what: str,
    action: Callable[[JobButtonHandler], Awaitable[None]],
) -> None:
    """Run a job button's action; errors go to the one error handler (a refusal shown
    ephemerally, anything unexpected an apology with a reference for the log). discord.py would
    only log them, leaving the member with "This interaction failed"."""
    try:
        handler = interaction.client.get_cog(JOB_BUTTONS_COG)
        if not isinstance(handler, JobButtonHandler):
            raise UserError("The bot is still starting up. Try again in a moment.")
        await action(handler)
    except Exception as exc:
        await answer_error(interaction, exc, what=what)


async def _answer_pager(
    interaction: discord.Interaction[Any], action: Callable[[VideosPager], Awaitable[None]]
) -> None:
    try:
        pager = interaction.client.get_cog(HISTORY_COG)
        if not isinstance(pager, VideosPager):
            raise UserError("The bot is still starting up. Try again in a moment.")
        await action(pager)
    except Exception as exc:
        await answer_error(interaction, exc, what="videos page")


# -- job buttons ---------------------------------------------------------------------------------


class _JobButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"videobot:job:(?P<job_id>[0-9]+)"
):
    """A button that acts on one job; its ``custom_id`` carries the job id, so it keeps working
    after a restart. Subclasses name the action, the look and the handler method."""

    ACTION: ClassVar[str]
    LABEL: ClassVar[str]
    EMOJI: ClassVar[str | None] = None
    STYLE: ClassVar[discord.ButtonStyle] = discord.ButtonStyle.secondary

    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=self.LABEL,
                emoji=self.EMOJI,
                style=self.STYLE,
                custom_id=f"videobot:{self.ACTION}:{job_id}",
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _answer(interaction, f"{self.ACTION} button", lambda h: self.act(h, interaction))

    async def act(self, handler: JobButtonHandler, interaction: discord.Interaction[Any]) -> None:
        raise NotImplementedError


class RemixButton(_JobButton, template=r"videobot:remix:(?P<job_id>[0-9]+)"):
    ACTION, LABEL, EMOJI, STYLE = "remix", "Remix", "🎨", discord.ButtonStyle.primary

    async def act(self, handler: JobButtonHandler, interaction: discord.Interaction[Any]) -> None:
        await handler.open_remix_form(interaction, self.job_id)


class ExtendButton(_JobButton, template=r"videobot:extend:(?P<job_id>[0-9]+)"):
    ACTION, LABEL, EMOJI = "extend", "Extend", "⏩"

    async def act(self, handler: JobButtonHandler, interaction: discord.Interaction[Any]) -> None:
        await handler.open_extend_form(interaction, self.job_id)


class EditButton(_JobButton, template=r"videobot:edit:(?P<job_id>[0-9]+)"):
    ACTION, LABEL, EMOJI = "edit", "Edit", "✏️"

    async def act(self, handler: JobButtonHandler, interaction: discord.Interaction[Any]) -> None:
        await handler.open_edit_form(interaction, self.job_id)


class AgainButton(_JobButton, template=r"videobot:again:(?P<job_id>[0-9]+)"):
    ACTION, LABEL, EMOJI = "again", "Again", "🔁"

    async def act(self, handler: JobButtonHandler, interaction: discord.Interaction[Any]) -> None:
        await handler.make_again(interaction, self.job_id)


class DetailsButton(_JobButton, template=r"videobot:details:(?P<job_id>[0-9]+)"):
    ACTION, LABEL, EMOJI = "details", "Details", "ℹ️"

    async def act(self, handler: JobButtonHandler, interaction: discord.Interaction[Any]) -> None:
        await handler.show_details(interaction, self.job_id)


class CancelButton(_JobButton, template=r"videobot:cancel:(?P<job_id>[0-9]+)"):
    ACTION, LABEL, STYLE = "cancel", "Cancel", discord.ButtonStyle.danger

    async def act(self, handler: JobButtonHandler, interaction: discord.Interaction[Any]) -> None:
        await handler.cancel_job(interaction, self.job_id)


class JobButtons:
    """The buttons a job's message shows (``JobViews`` for the presenter): Cancel while it runs;
    Remix, Extend, Edit (those its model and the provider offer: ``offers``), Again and Details once
    it is ready; Again and Details after a failure; none once cancelled."""

    def __init__(self, offers: Callable[[Job], frozenset[JobKind]] | None = None) -> None:
        self.offers = offers

    def progress_view(self, job: Job) -> discord.ui.View | None:
        if not job.cancellable:
            return None  # the video is being posted: nothing left to cancel
        view = discord.ui.View(timeout=None)
        view.add_item(CancelButton(job.id))
        return view

    def result_view(self, job: Job) -> discord.ui.View | None:
        items: list[discord.ui.Item[Any]] = []
        if job.status is JobStatus.COMPLETED:
            offered = self.offers(job) if self.offers is not None else frozenset({JobKind.REMIX})
            if job.provider_video_id:
                if JobKind.REMIX in offered:
                    items.append(RemixButton(job.id))
                if JobKind.EXTENSION in offered:
                    items.append(ExtendButton(job.id))
                if JobKind.EDIT in offered:
                    items.append(EditButton(job.id))
            items.append(AgainButton(job.id))
        elif job.status is JobStatus.FAILED:
            if not remix_source_gone(job):  # it would only fail the same way
                items.append(AgainButton(job.id))
        else:
            return None
        items.append(DetailsButton(job.id))
        view = discord.ui.View(timeout=None)
        for item in items:
            view.add_item(item)
        return view


# -- the remix, extend and edit forms ------------------------------------------------------------


def _prompt_input(label: str, placeholder: str) -> discord.ui.TextInput[Any]:
    return discord.ui.TextInput(
        label=label,
        style=discord.TextStyle.paragraph,
        placeholder=placeholder,
        min_length=1,
        max_length=PROMPT_INPUT_MAX,
        custom_id="prompt",
    )


class _JobForm(discord.ui.Modal):
    """A form about one job (Remix, Extend, Edit). Its ``custom_id`` is unique per opening
    (discord.py keys open forms by it), and the job is checked again on submit: the form proves
    nothing about who sent it.

    A form that is open while the bot restarts can't be submitted (discord.py keeps open forms in
    memory only); the member presses the button again."""

    PREFIX: ClassVar[str]
    VERB: ClassVar[str]
    prompt: discord.ui.TextInput[Any]

    def __init__(self, job_id: int, opened_by_interaction: int) -> None:
        super().__init__(
            title=f"{self.VERB} video #{job_id}"[:45],
            custom_id=f"{self.PREFIX}{job_id}:{opened_by_interaction}",
            timeout=30 * 60,  # forget forms nobody submits
        )
        self.job_id = job_id


class RemixForm(_JobForm):
    """Asks for the remix's prompt."""

    PREFIX, VERB = REMIX_FORM_PREFIX, "Remix"
    prompt = _prompt_input(
        "New prompt", "What the remix should show, e.g. “the same scene at night, in heavy rain”"
    )

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        prompt = self.prompt.value
        await _answer(interaction, "remix form", lambda h: h.start_remix(interaction, self.job_id, prompt))


class ExtendForm(_JobForm):
    """Asks for the extension's prompt and the new segment's length (checked in code on submit:
    the text is whatever the client sent)."""

    PREFIX, VERB = EXTEND_FORM_PREFIX, "Extend"
    prompt = _prompt_input(
        "What happens next", "How the video continues, e.g. “the fox leaps over a frozen stream”"
    )

    def __init__(self, job_id: int, opened_by_interaction: int, seconds: Sequence[int]) -> None:
        super().__init__(job_id, opened_by_interaction)
        choices = ", ".join(str(s) for s in seconds)
        self.seconds: discord.ui.TextInput[ExtendForm] = discord.ui.TextInput(
            label="Seconds to add",
            placeholder=f"One of {choices}"[:100],
            default=str(seconds[0]) if seconds else None,
            min_length=1,
            max_length=4,
            custom_id="seconds",
        )
        self.add_item(self.seconds)

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        prompt, typed = self.prompt.value, self.seconds.value.strip()
        seconds = int(typed) if typed.isdigit() and len(typed) <= 4 else -1  # -1: refused as a length
        await _answer(
            interaction,
            "extend form",
            lambda h: h.start_extension(interaction, self.job_id, prompt, seconds),
        )


class EditForm(_JobForm):
    """Asks for the edit's prompt."""

    PREFIX, VERB = EDIT_FORM_PREFIX, "Edit"
    prompt = _prompt_input(
        "How to change it", "What the edit should change, e.g. “make it snow, keep everything else”"
    )

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        prompt = self.prompt.value
        await _answer(interaction, "edit form", lambda h: h.start_edit(interaction, self.job_id, prompt))


# -- /videos -------------------------------------------------------------------------------------


class VideosPageButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"videobot:videos:(?P<owner_id>[0-9]+):(?P<page>[0-9]+)",
):
    """Previous / Next on a ``/videos`` list. The owner is in the ``custom_id`` so that only the
    member who asked can page, even after a restart."""

    def __init__(self, owner_id: int, page: int, *, label: str = "Page", disabled: bool = False) -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"videobot:videos:{owner_id}:{page}",
                disabled=disabled,
            )
        )
        self.owner_id = owner_id
        self.page = page

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(int(match["owner_id"]), int(match["page"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _answer_pager(interaction, lambda h: h.show_videos_page(interaction, self.owner_id, self.page))


def videos_page_view(owner_id: int, page: int, pages: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(VideosPageButton(owner_id, page - 1, label="◀ Previous", disabled=page <= 1))
    view.add_item(VideosPageButton(owner_id, page + 1, label="Next ▶", disabled=page >= pages))
    return view


DYNAMIC_ITEMS = (
    RemixButton,
    ExtendButton,
    EditButton,
    AgainButton,
    DetailsButton,
    CancelButton,
    VideosPageButton,
)
"""Register with ``bot.add_dynamic_items(*DYNAMIC_ITEMS)`` at start-up."""


# -- pure rendering ------------------------------------------------------------------------------


def cost_text(job: Job) -> str:
    credits = f"{job.cost} credit{'s' if job.cost != 1 else ''}"
    if job.charge_state is ChargeState.REFUNDED:
        return f"{credits}, not charged"
    if job.charge_state is ChargeState.RESERVED:
        return f"{credits} reserved"
    return credits


def videos_line(job: Job) -> str:
    prompt = inert_inline(job.prompt, _LINE_PROMPT)
    parts = [f"`#{job.id}` {job.status.label}", cost_text(job), prompt]
    if job.source_job_id is not None:
        parts.append(f"{job.kind.lineage_label.lower()} #{job.source_job_id}")
    elif job.clip_path is not None:
        parts.append("edit of an uploaded clip")
    link = message_link(job)
    if link:
        parts.append(f"[open]({link})")
    return " · ".join(parts)


def videos_embed(jobs: Sequence[Job], *, page: int, pages: int, total: int) -> discord.Embed:
    embed = discord.Embed(
        title=f"Your videos · page {page} of {pages} · {total} in all", colour=discord.Colour.blurple()
    )
    embed.description = "\n".join(videos_line(job) for job in jobs)
    embed.set_footer(text="Remix one with /remix or the Remix button under the video.")
    return embed


def details_embed(job: Job, source: Job | None = None) -> discord.Embed:
    """Everything known about a job, for its owner or a moderator: the full prompt (attach it as a
    file when it exceeds ``DETAILS_PROMPT_LIMIT``), settings, provider id, cost and timings."""
    if len(job.prompt) > DETAILS_PROMPT_LIMIT:
        prompt = inert(job.prompt, DETAILS_PROMPT_LIMIT - 40) + " (the full prompt is attached)"
    else:
        # Escaping can make a prompt up to twice as long; the embed's 4,096 still hold it clipped.
        prompt = inert(job.prompt, DETAILS_PROMPT_LIMIT)
    embed = discord.Embed(title=f"Job #{job.id}", description=prompt, url=message_link(job))
    embed.add_field(name="Status", value=job.status.label, inline=True)
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>", inline=True)
    embed.add_field(name="Cost", value=f"{cost_text(job)} (~${job.usd:.2f})", inline=True)
    embed.add_field(name="Model", value=f"`{job.model}`", inline=True)
    embed.add_field(name="Size", value=job.size, inline=True)
    embed.add_field(name="Duration", value=duration_text(job), inline=True)
    embed.add_field(
        name="Provider video id",
        value=f"`{job.provider_video_id}`" if job.provider_video_id else "not sent to the provider",
        inline=False,
    )
    if job.has_lineage:
        from_video = job.remixed_from_video_id or job.source_video_id
        embed.add_field(
            name=job.kind.lineage_label,
            value=lineage_text(job, source) + (f"\nProvider video `{from_video}`" if from_video else ""),
            inline=False,
        )
    if job.reference_image_path:
        embed.add_field(name="Starting image", value="yes, fitted to the size", inline=True)
    embed.add_field(name="Timings", value="\n".join(_timings(job)), inline=False)
    if job.status is JobStatus.FAILED:
        embed.add_field(
            name="What happened", value=inert(job.error_message or "Unknown error.", 1000), inline=False
        )
    return embed


def _timings(job: Job) -> list[str]:
    steps = [
        ("Requested", job.created_at),
        ("Sent to the provider", job.submitted_at),
        ("Generating from", job.started_at),
        ("Generated", job.generated_at),
        ("Finished", job.finished_at),
    ]
    lines = [f"{name}: <t:{int(at)}:f>" for name, at in steps if at is not None]
    if job.finished_at is not None:
        took = max(0, int(job.finished_at - job.created_at))
        minutes, secs = divmod(took, 60)
        lines.append(f"Took {minutes} min {secs} s" if minutes else f"Took {secs} s")
    return lines
