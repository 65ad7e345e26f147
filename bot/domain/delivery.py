"""How a finished video reaches the member, decided from the facts alone (pure: no I/O).

A file within the destination's upload limit is uploaded as it is; a larger one is uploaded as a
copy re-encoded to fit, when re-encoding can fit it above the watchable floor; otherwise it is
linked (a signed, expiring URL with a thumbnail) when links are configured, and is undeliverable
when they are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.domain.jobs import Job

MIB = 1024 * 1024
DEFAULT_UPLOAD_LIMIT = 10 * MIB  # Discord's limit for servers without boosts


def video_filename(job: Job) -> str:
    return f"video-{job.id}.mp4"


def thumbnail_filename(job: Job) -> str:
    return f"video-{job.id}.thumb.webp"


@dataclass(frozen=True)
class FileFacts:
    """What is known about a finished file and where it goes."""

    size: int
    limit: int
    fitted_size: int | None = None  # the re-encoded copy, when one fits
    fit_problem: str | None = None  # why re-encoding could not fit it (plain words)
    links_configured: bool = False


@dataclass(frozen=True)
class Upload:
    path: Path
    note: str | None = None  # shown on the card (the file was re-encoded)
    temporary: bool = False  # a copy made to fit: remove it after the upload


@dataclass(frozen=True)
class Link:
    url: str
    expires_at: int
    thumbnail: Path
    size: int
    limit: int


@dataclass(frozen=True)
class Undeliverable:
    reason: str


@dataclass(frozen=True)
class UseOriginal:
    pass


@dataclass(frozen=True)
class UseFitted:
    note: str


@dataclass(frozen=True)
class UseLink:
    pass


Decision = UseOriginal | UseFitted | UseLink | Undeliverable
Delivery = Upload | Link | Undeliverable


def needs_fitting(size: int, limit: int) -> bool:
    return size > limit


def decide(facts: FileFacts) -> Decision:
    if not needs_fitting(facts.size, facts.limit):
        return UseOriginal()
    if facts.fitted_size is not None and facts.fitted_size <= facts.limit:
        return UseFitted(
            f"Re-encoded from {facts.size / MIB:.1f} MiB to {facts.fitted_size / MIB:.1f} MiB "
            f"to fit this server's {facts.limit / MIB:.0f} MiB upload limit."
        )
    if facts.links_configured:
        return UseLink()
    reason = (
        f"The video is {facts.size / MIB:.1f} MiB, over this server's {facts.limit / MIB:.0f} MiB upload "
        "limit, and could not be shrunk to fit."
    )
    if facts.fit_problem:
        reason += f" {facts.fit_problem}"
    return Undeliverable(reason)
