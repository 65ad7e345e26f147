"""Pure rendering: a job (and the time) in, an embed out. No network, no state."""

from __future__ import annotations

import discord

from bot.discord.text import inert, inert_inline
from bot.domain.jobs import UNSENT_STATUSES, ChargeState, Job, JobStatus, QueuePlace
from bot.domain.messages import REMIX_SOURCE_GONE_CODE, clip

BAR_WIDTH = 20
_PROMPT_LIMIT = 1000  # embed descriptions allow 4096; keep progress cards compact

DEMO_NOTE = " · Demo render by the built-in renderer: set VIDEO_API_BASE_URL to connect a real provider"

COLOURS = {
    JobStatus.COMPLETED: discord.Colour.green(),
    JobStatus.FAILED: discord.Colour.red(),
    JobStatus.CANCELLED: discord.Colour.light_grey(),
}


def progress_bar(percent: int, width: int = BAR_WIDTH) -> str:
    """``▰▰▰▱▱…`` with the percentage: 20 cells, each 5 %."""
    percent = max(0, min(100, percent))
    filled = percent * width // 100
    return "▰" * filled + "▱" * (width - filled) + f" {percent}%"


def estimate_finish(job: Job, now: float, expected_seconds: float) -> int | None:
    """When the video should be ready, as a Unix time rounded to 5 s so that jitter in the estimate
    doesn't cause an edit. From the provider's progress once it reports some, else from the model's
    typical generation time."""
    if job.is_final:
        return None
    remaining = job.seconds_left(now)
    if remaining is None:
        elapsed = max(0.0, now - (job.started_at or job.submitted_at or job.created_at))
        remaining = max(5.0, expected_seconds - elapsed)
    eta = now + remaining
    return int(eta // 5 * 5)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st…"""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def queue_text(queue: QueuePlace) -> str:
    """The card's "Place in line" value: the place and, when known, when the job should be sent."""
    text = f"{ordinal(queue.place)} in line for the provider (first come, first served)"
    if queue.starts_at is not None:
        text += f" · sent <t:{int(queue.starts_at // 5 * 5)}:R> (estimate)"
    return text


def display_prompt(prompt: str, limit: int) -> str:
    """A member's prompt as shown on the bot's public card: inert (no masked link, live URL,
    mention, heading or spoiler smuggled onto the bot's message; see ``bot.discord.text``),
    clipped to ``limit``."""
    return inert(prompt, limit)


def message_link(job: Job) -> str | None:
    """A jump link to the message showing the job (the video once delivered, else the reply)."""
    message_id = job.delivered_message_id or job.reply_message_id
    if job.guild_id is None or message_id is None:
        return None
    return f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/{message_id}"


def remix_source_gone(job: Job) -> bool:
    """The provider refused this remix because its source video is gone (so Again would too)."""
    return job.status is JobStatus.FAILED and job.error_code == REMIX_SOURCE_GONE_CODE


def lineage_text(job: Job, source: Job | None) -> str:
    """The "Remix of" value: a link to the source's message when it can be found."""
    if source is not None:
        snippet = inert_inline(source.prompt, 100)
        link = message_link(source)
        name = f"[Job #{source.id}]({link})" if link else f"Job #{source.id}"
        return f"{name}: {snippet}"
    if job.source_job_id is not None:
        return f"Job #{job.source_job_id}"
    return f"`{clip(job.remixed_from_video_id, 60)}`"


def job_embed(
    job: Job,
    *,
    now: float,
    expected_seconds: float = 60.0,
    source: Job | None = None,
    demo: bool = False,
    queue: QueuePlace | None = None,
) -> discord.Embed:
    """The card a job's reply shows, from submission to the result.

    Elapsed time and ETA are Discord timestamps (``<t:…:R>``), which every client counts live, so
    the bot edits only when the status, the progress or the estimate really changes. ``source`` is
    the job a remix was made from (``job.source_job_id``), for the "Remix of" link. ``demo``: the
    built-in renderer made it, which the card says so nobody mistakes it for the real thing.
    ``queue``: the job's place in line while it waits for the provider budget (shown until it is sent).
    """
    colour = COLOURS.get(job.status, discord.Colour.blurple())
    embed = discord.Embed(
        title=_title(job),
        description=display_prompt(job.prompt, _PROMPT_LIMIT),
        colour=colour,
    )
    embed.add_field(name="Model", value=f"`{job.model}`", inline=True)
    embed.add_field(name="Size", value=job.size, inline=True)
    embed.add_field(name="Duration", value=f"{job.seconds} s", inline=True)
    embed.add_field(name="Requested by", value=f"<@{job.user_id}>", inline=True)
    embed.add_field(name="Cost", value=f"{job.cost} credit{'s' if job.cost != 1 else ''}", inline=True)
    embed.add_field(name="Status", value=job.status.label, inline=True)
    if job.remixed_from_video_id or job.source_job_id is not None:
        embed.add_field(name="Remix of", value=lineage_text(job, source), inline=False)
    if queue is not None and job.status not in UNSENT_STATUSES:
        queue = None  # sent: the place no longer applies
    if not job.is_final:
        if queue is not None:
            embed.add_field(name="Place in line", value=queue_text(queue), inline=False)
        embed.add_field(name="Progress", value=progress_bar(job.progress), inline=False)
        started = int(job.created_at)
        eta = estimate_finish(job, now, expected_seconds)
        if queue is not None and queue.starts_at is not None:
            eta = int((queue.starts_at + expected_seconds) // 5 * 5)
        timing = f"Started <t:{started}:R>"
        if eta is not None and job.status in (JobStatus.QUEUED, JobStatus.IN_PROGRESS, JobStatus.PENDING):
            timing += f" · ready <t:{eta}:R> (estimate)"
        embed.add_field(name="Time", value=timing, inline=False)
    elif job.status is JobStatus.COMPLETED:
        took = (job.finished_at or now) - job.created_at
        embed.add_field(name="Time", value=f"Took {_duration(took)}", inline=False)
    elif job.status is JobStatus.FAILED:
        embed.add_field(
            # The provider's words, which may quote the prompt back.
            name="What happened",
            value=inert(job.error_message or "Unknown error.", 1000),
            inline=False,
        )
        embed.add_field(name="Credits", value=_failure_charge_text(job), inline=False)
    elif job.status is JobStatus.CANCELLED:
        embed.add_field(name="Credits", value="Nothing was charged for this video.", inline=False)
    embed.set_footer(text=f"Job #{job.id}" + (DEMO_NOTE if demo else ""))
    return embed


def _failure_charge_text(job: Job) -> str:
    """What the failure cost, from the job's charge state: a guild may charge for prompts the
    provider's moderation blocked (a failed job is otherwise refunded in the same write)."""
    if job.charge_state is ChargeState.CHARGED:
        credits = f"{job.cost} credit{'s' if job.cost != 1 else ''}"
        return f"{credits} charged: this server charges for prompts the provider's safety system declines."
    return "Nothing was charged for this video."


def _title(job: Job) -> str:
    if job.status is JobStatus.COMPLETED:
        return "🎬 Your video is ready"
    if job.status is JobStatus.FAILED:
        return "❌ The video could not be made"
    if job.status is JobStatus.CANCELLED:
        return "⏹️ Cancelled"
    return "⏳ Making your video…"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
