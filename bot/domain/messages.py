"""Plain-words explanations of provider outcomes, shown to members."""

from __future__ import annotations

from bot.domain.jobs import Job, JobStatus
from bot.domain.provider_errors import (
    AuthenticationError,
    BadRequest,
    ConnectionFailed,
    NotFound,
    RateLimited,
    ServerError,
    SubmitUncertain,
    VideoAPIError,
)

_BY_CODE = {
    "moderation_blocked": (
        "The video provider's safety system declined this prompt. Try describing the scene differently."
    ),
    "content_policy_violation": (
        "The video provider's content policy declined this prompt. Try describing the scene differently."
    ),
    "deadline_exceeded": "The provider took too long to make this video, so the bot gave up.",
    "expired": "The provider deleted the video before the bot could fetch it.",
    "video_expired": "The provider deleted the video before the bot could fetch it.",
    "cancelled": "The provider cancelled this video.",
    "canceled": "The provider cancelled this video.",
}


def credits_text(amount: int) -> str:
    """``1 credit``, ``4 credits``."""
    return "1 credit" if amount == 1 else f"{amount} credits"


REMIX_SOURCE_GONE_CODE = "remix_source_gone"
REMIX_SOURCE_GONE = "The provider no longer has the source video, so it can't be remixed."
# What providers answer when a remix's source is gone: the local renderer and OpenAI say 404 for a
# deleted video and 400 for expired assets or a video that is no longer completed.
_SOURCE_GONE_CODES = frozenset(
    {"not_found", "video_not_found", "video_expired", "expired", "invalid_video_status"}
)


def source_gone_message(kind: str) -> str:
    """What a member reads when the provider no longer has the video their remix, extension or edit
    started from (the job is refunded)."""
    verb = {"extension": "extended", "edit": "edited"}.get(kind, "remixed")
    return f"The provider no longer has the source video, so it can't be {verb}."


def unsupported_message(kind: str) -> str:
    """The provider answered that it lacks the endpoint (404/405) for this kind of job."""
    what = {"extension": "extensions", "edit": "edits"}.get(kind, "this")
    return f"This bot's video provider doesn't offer {what}, so this video couldn't be made."


def remix_source_gone(exc: VideoAPIError) -> bool:
    """Did the provider refuse a remix because its source video expired or was deleted?"""
    if isinstance(exc, NotFound) or exc.code in _SOURCE_GONE_CODES:
        return True
    return isinstance(exc, BadRequest) and "expired" in exc.message.lower()


def explain_code(code: str | None, provider_message: str | None = None) -> str:
    """The member-facing sentence for a failed job, with the provider's own words when it gave some."""
    text = _BY_CODE.get(code or "")
    if text is None:
        text = "The video provider couldn't make this video"
        text += f": {clip(provider_message)}" if provider_message else "."
    return text


def explain_provider_error(exc: VideoAPIError) -> str:
    if exc.code in _BY_CODE:
        return _BY_CODE[exc.code or ""]
    if isinstance(exc, SubmitUncertain):
        return (
            "The provider didn't confirm the request and the bot could not check, so it was not sent again."
        )
    if isinstance(exc, AuthenticationError):
        return "The bot's video provider key was refused. A server admin needs to check VIDEO_API_KEY."
    if isinstance(exc, RateLimited):
        return (
            "The video provider is busy (rate limited) and kept refusing. Please try again in a few minutes."
        )
    if isinstance(exc, ServerError | ConnectionFailed):
        return "The video provider is not responding right now. Please try again later."
    if isinstance(exc, NotFound):
        return f"The video provider no longer has this video: {clip(exc.message)}"
    if isinstance(exc, BadRequest):
        return f"The video provider refused the request: {clip(exc.message)}"
    return f"The video provider reported an error: {clip(exc.message)}"


def clip(text: str | None, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters (ending in … when cut)."""
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def cancel_refusal(job: Job) -> str:
    """Why this job can't be cancelled (it is past the point where cancelling means anything)."""
    if job.status in (JobStatus.DOWNLOADING, JobStatus.UPLOADING):
        return already_finished(job)
    return f"Job #{job.id} has already finished ({job.status.label.lower()}); nothing to cancel."


def already_finished(job: Job) -> str:
    """Cancel was pressed on a video the provider has made: it is posted and charged instead."""
    credits = credits_text(job.cost)
    return (
        f"Job #{job.id} was already finished by the provider, so it can't be cancelled: "
        f"it is being posted now and will be charged ({credits})."
    )


def cancel_unverified(job: Job) -> str:
    """The provider could not be asked whether the video is made, so it was not cancelled."""
    return (
        f"Job #{job.id} was not cancelled: the bot couldn't reach the video provider to check whether "
        "the video is already finished. Try again in a minute."
    )
