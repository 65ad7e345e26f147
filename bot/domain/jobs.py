"""Jobs as the core sees them: plain data, no Discord and no SQL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.domain.catalog import Quote


class JobStatus(StrEnum):
    PENDING = "pending"  # credits reserved, intent recorded, not sent to the provider yet
    SUBMITTING = "submitting"  # POST /videos is (or was, before a crash) in flight
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    DOWNLOADING = "downloading"  # the provider finished; fetching the MP4
    UPLOADING = "uploading"  # the MP4 is on disk; posting it to Discord
    COMPLETED = "completed"  # delivered to Discord
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    @property
    def label(self) -> str:
        return _LABELS[self]


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
WITH_PROVIDER = frozenset({JobStatus.QUEUED, JobStatus.IN_PROGRESS})
# The one definition of "still going" (the store's SQL takes its values from here too).
ACTIVE_STATUSES = tuple(s for s in JobStatus if s not in FINAL_STATUSES)
# Once the provider has finished, the video exists and is paid for: it is delivered, not cancelled.
CANCELLABLE_STATUSES = (JobStatus.PENDING, JobStatus.SUBMITTING, JobStatus.QUEUED, JobStatus.IN_PROGRESS)


class Trigger(StrEnum):
    """What moves a job from one status to another (``services.lifecycle`` has one method each)."""

    SUBMIT = "submit"  # the create request is about to be sent
    ACCEPTED = "accepted"  # the provider answered with its video id
    PROGRESS = "progress"  # the provider's status or progress changed
    COMPLETED = "completed"  # the provider finished the video
    DOWNLOADED = "download"  # the MP4 is on our disk
    DELIVERED = "delivered"  # the video is posted on Discord
    BACK_TO_WAITING = "back_to_waiting"  # a completion event ran ahead of the provider's own state
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Move:
    sources: frozenset[JobStatus]
    targets: frozenset[JobStatus]


def _move(sources: Any, *targets: JobStatus) -> Move:
    return Move(frozenset(sources), frozenset(targets))


TRANSITIONS: Mapping[Trigger, Move] = {
    Trigger.SUBMIT: _move({JobStatus.PENDING, JobStatus.SUBMITTING}, JobStatus.SUBMITTING),
    Trigger.ACCEPTED: _move({JobStatus.SUBMITTING}, JobStatus.QUEUED),
    Trigger.PROGRESS: _move(WITH_PROVIDER, *WITH_PROVIDER),
    Trigger.COMPLETED: _move(WITH_PROVIDER, JobStatus.DOWNLOADING),
    Trigger.DOWNLOADED: _move({JobStatus.DOWNLOADING, JobStatus.UPLOADING}, JobStatus.UPLOADING),
    Trigger.DELIVERED: _move({JobStatus.UPLOADING}, JobStatus.COMPLETED),
    Trigger.BACK_TO_WAITING: _move({JobStatus.DOWNLOADING}, *WITH_PROVIDER),
    Trigger.FAILED: _move(ACTIVE_STATUSES, JobStatus.FAILED),
    Trigger.CANCELLED: _move(CANCELLABLE_STATUSES, JobStatus.CANCELLED),
}
"""Every status change a job can make, by trigger. A trigger applies only to a job in one of its
``sources`` (the store checks that atomically) and lands in one of its ``targets``."""


def allowed_targets(status: JobStatus) -> dict[Trigger, frozenset[JobStatus]]:
    """From ``status``: which trigger may move the job where."""
    return {trigger: move.targets for trigger, move in TRANSITIONS.items() if status in move.sources}


_LABELS = {
    JobStatus.PENDING: "Waiting to start",
    JobStatus.SUBMITTING: "Sending to the provider",
    JobStatus.QUEUED: "Queued at the provider",
    JobStatus.IN_PROGRESS: "Generating",
    JobStatus.DOWNLOADING: "Downloading",
    JobStatus.UPLOADING: "Uploading",
    JobStatus.COMPLETED: "Done",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELLED: "Cancelled",
}


# Not yet accepted by the provider: these wait for the provider budget, in one queue.
UNSENT_STATUSES = frozenset({JobStatus.PENDING, JobStatus.SUBMITTING})


@dataclass(frozen=True)
class QueuePlace:
    """Where a job waits for the provider budget: ``place`` in line (1 = next), first come first
    served across members and channels; ``starts_at``: when it should be sent (Unix time, an
    estimate from recent throughput; None: unknown)."""

    place: int
    starts_at: float | None = None


def submission_queue(jobs: Iterable[Job]) -> list[Job]:
    """The jobs waiting to be sent, first come first served: by creation as stored (``created_at``,
    then ``id``), so every process reading the store sees the same order."""
    return sorted((job for job in jobs if job.status in UNSENT_STATUSES), key=lambda j: (j.created_at, j.id))


class ChargeState(StrEnum):
    RESERVED = "reserved"
    CHARGED = "charged"
    REFUNDED = "refunded"


@dataclass(frozen=True)
class JobRequest:
    """What a member asked for, validated and priced."""

    guild_id: int | None
    channel_id: int
    user_id: int
    user_name: str
    prompt: str
    model: str
    size: str
    seconds: int
    cost: int
    usd: float
    reference_image_path: str | None = None
    source_job_id: int | None = None
    remixed_from_video_id: str | None = None
    application_id: int | None = None
    interaction_token: str | None = field(default=None, repr=False)  # a credential
    token_expires_at: float | None = None
    upload_limit: int | None = None
    reply_message_id: int | None = None  # known at insert when Discord returned it with the ack

    @classmethod
    def priced(cls, quote: Quote, *, prompt: str, **fields: Any) -> JobRequest:
        """A request for what ``quote`` validated and priced; ``fields`` say who and where."""
        return cls(
            prompt=prompt,
            model=quote.model,
            size=quote.size,
            seconds=quote.seconds,
            cost=quote.credits,
            usd=quote.usd,
            **fields,
        )


@dataclass(frozen=True)
class Requester:
    """Who asks for a job and where its reply goes (read from a Discord interaction)."""

    guild_id: int | None
    channel_id: int
    user_id: int
    user_name: str
    application_id: int | None = None
    interaction_token: str | None = field(default=None, repr=False)  # a credential
    token_expires_at: float | None = None
    upload_limit: int | None = None

    def request(self, quote: Quote, *, prompt: str, **fields: Any) -> JobRequest:
        """A request for what ``quote`` priced, by this member, here."""
        return JobRequest.priced(
            quote,
            prompt=prompt,
            guild_id=self.guild_id,
            channel_id=self.channel_id,
            user_id=self.user_id,
            user_name=self.user_name,
            application_id=self.application_id,
            interaction_token=self.interaction_token,
            token_expires_at=self.token_expires_at,
            upload_limit=self.upload_limit,
            **fields,
        )


@dataclass(frozen=True)
class Job:
    id: int
    guild_id: int | None
    channel_id: int
    user_id: int
    user_name: str
    prompt: str
    model: str
    size: str
    seconds: int
    cost: int
    usd: float
    status: JobStatus
    charge_state: ChargeState
    progress: int
    provider_video_id: str | None
    provider_status: str | None
    source_job_id: int | None
    remixed_from_video_id: str | None
    reference_image_path: str | None
    media_path: str | None
    error_code: str | None
    error_message: str | None
    application_id: int | None
    interaction_token: str | None
    token_expires_at: float | None
    reply_message_id: int | None
    delivered_message_id: int | None
    upload_limit: int | None
    created_at: float
    submitted_at: float | None
    started_at: float | None
    generated_at: float | None
    finished_at: float | None
    updated_at: float

    def __repr__(self) -> str:  # the interaction token is a credential: keep it out of logs
        return f"Job(id={self.id}, status={self.status.value}, provider_video_id={self.provider_video_id!r})"

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def cancellable(self) -> bool:
        return self.status in CANCELLABLE_STATUSES

    @property
    def width(self) -> int:
        return int(self.size.split("x")[0])

    @property
    def height(self) -> int:
        return int(self.size.split("x")[1])

    def seconds_left(self, now: float) -> float | None:
        """How long until the provider should finish, from its progress so far (None until it has
        reported enough progress to extrapolate)."""
        if self.status is not JobStatus.IN_PROGRESS or self.started_at is None or self.progress < 3:
            return None
        return max(0.0, now - self.started_at) * (100 - self.progress) / self.progress

    def deadline_at(self, deadline_seconds: float, grace_seconds: float) -> float:
        """The one deadline rule: the provider gets ``deadline_seconds`` from submission; a job not
        at the provider (waiting to be sent, or being downloaded and posted) also gets
        ``grace_seconds``, counted from submission, or from acceptance when it was never sent."""
        if self.status in WITH_PROVIDER and self.submitted_at is not None:
            return self.submitted_at + deadline_seconds
        return (self.submitted_at or self.created_at) + deadline_seconds + grace_seconds

    def token_usable(self, now: float, margin: float = 30.0) -> bool:
        return bool(self.interaction_token and self.token_expires_at and now < self.token_expires_at - margin)


@dataclass(frozen=True)
class JobChanges:
    """The columns of a job a write sets; ``None`` leaves a column as it is (``token_expires_at=0``
    marks a token dead). Only the lifecycle builds these for real jobs."""

    status: JobStatus | None = None
    charge_state: ChargeState | None = None
    progress: int | None = None
    provider_video_id: str | None = None
    provider_status: str | None = None
    media_path: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    token_expires_at: float | None = None
    reply_message_id: int | None = None
    delivered_message_id: int | None = None
    submitted_at: float | None = None
    started_at: float | None = None
    generated_at: float | None = None
    finished_at: float | None = None

    def columns(self) -> dict[str, Any]:
        """The set columns by name (values as stored: enums by value)."""
        values: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                values[f.name] = value.value if isinstance(value, StrEnum) else value
        return values
