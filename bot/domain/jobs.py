"""Jobs as the core sees them: plain data, no Discord and no SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
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
ACTIVE_STATUSES = tuple(s for s in JobStatus if s not in FINAL_STATUSES)
# Once the provider has finished, the video exists and is paid for: it is delivered, not cancelled.
CANCELLABLE_STATUSES = (JobStatus.PENDING, JobStatus.SUBMITTING, JobStatus.QUEUED, JobStatus.IN_PROGRESS)

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

    def token_usable(self, now: float, margin: float = 30.0) -> bool:
        return bool(self.interaction_token and self.token_expires_at and now < self.token_expires_at - margin)
