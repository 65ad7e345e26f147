"""What the services need from the outside world, as protocols: the adapters (SQLite, the Videos
API client) and the Discord layer implement them, and the services never import those."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bot.domain.credits import GuildPolicy, RoleOverride, Usage, UsageReport
from bot.domain.jobs import Job, JobChanges, JobRequest, JobStatus, QueuePlace
from bot.domain.provider import Character, Video, VideoList

# ==================================================================================================
# Jobs
# ==================================================================================================


class Transaction(Protocol):
    """An open unit of work from a repository's ``transaction()`` (or a read-only ``snapshot()``).

    Opaque on purpose: a service only passes it back, as ``conn``, to repositories on the same
    store, so their reads and writes happen in it; the adapter refuses anything else."""


class JobRepository(Protocol):
    """Where jobs are kept (``bot.adapters.sql.store.SqlStore``: SQLite or PostgreSQL)."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def insert_job(self, request: JobRequest, conn: Transaction | None = None) -> int: ...

    async def get_job(self, job_id: int) -> Job | None: ...

    async def active_jobs(self) -> list[Job]: ...

    async def known_provider_ids(self, video_ids: Iterable[str]) -> set[str]:
        """Which of these provider video ids already belong to a job (never adopt those)."""
        ...

    async def transition(
        self,
        job_id: int,
        *,
        expect: Iterable[JobStatus],
        changes: JobChanges,
        conn: Transaction | None = None,
    ) -> Job | None:
        """Compare-and-set on the status; None when the job was not in ``expect``. With ``conn``
        it runs inside that transaction (so the audit record of a settlement commits with it)."""
        ...

    async def update_job(self, job_id: int, changes: JobChanges | None = None, /) -> Job: ...

    async def reference_image(self, name: str) -> bytes | None:
        """A stored starting image by file name (any process's), None when it is gone."""
        ...


class ReferenceImageRepository(Protocol):
    """Where fitted starting images are shared between processes (the database)."""

    async def save_reference_image(self, name: str, data: bytes) -> None: ...


class JobLeases(Protocol):
    """Who works which unfinished job (``bot.services.leases``): a lease per job, taken and renewed
    atomically across processes."""

    async def lease_jobs(
        self,
        owner: str,
        *,
        now: float,
        until: float,
        renew_before: float,
        shards: Sequence[int] = (0,),
        shard_count: int = 1,
        others_after: float = 0.0,
    ) -> list[Job]:
        """Take the free and lapsed leases, renew ``owner``'s that expire before ``renew_before``
        (all to ``until``), and return every unfinished job ``owner`` holds. A new job goes first
        to a process with its guild's shard (``shards`` of ``shard_count``), to any other after
        ``others_after`` seconds."""
        ...

    async def release_leases(self, owner: str) -> int: ...


class WakeupBus(Protocol):
    """Messages between the processes of a fleet (``bot.services.wakeups``): PostgreSQL
    ``LISTEN/NOTIFY``."""

    async def publish(self, message: str) -> None: ...

    async def listen(self, on_message: Callable[[str], None]) -> None:
        """Hand every message (this process's own too) to ``on_message`` until cancelled,
        reconnecting when the connection drops."""
        ...


class AuditLog(Protocol):
    """The moderators' audit trail (``SqlCreditsRepository.audit``)."""

    async def audit(
        self,
        action: str,
        *,
        guild_id: int | None,
        actor_id: int | None,
        target_user_id: int | None = None,
        job_id: int | None = None,
        details: Mapping[str, Any] | None = None,
        conn: Transaction | None = None,
    ) -> None: ...


class GuildPolicies(Protocol):
    """A guild's settings (``SqlCreditsRepository.policy``)."""

    async def policy(self, guild_id: int, conn: Transaction | None = None) -> GuildPolicy: ...


@dataclass(frozen=True)
class Receipt:
    """Where the presenter showed a job: the message now carrying it, and how it got there.

    ``reposted``: the reply was gone (or never recorded) and a new channel message was posted, so
    the job's reply is that message from now on. ``token_refused``: the interaction webhook refused
    the token, so only channel routes are used from now on."""

    message_id: int
    route: str = "channel"  # "webhook" | "channel" | "dm" | "new_message" | "terminal"
    reposted: bool = False
    token_refused: bool = False


class ReplyRecorder(Protocol):
    """How a presenter reports where a job's card now lives (the lifecycle records it)."""

    async def record_reply(self, job: Job, receipt: Receipt) -> Job | None: ...


class JobPresenter(Protocol):
    """How the services show jobs to people. The Discord layer implements it (so do ``videobot
    generate``'s terminal and the tests' recorders)."""

    async def job_changed(self, job: Job) -> None:
        """Progress, status or queue state changed; show it (throttling is the presenter's job)."""

    async def deliver(self, job: Job, media: Path) -> Receipt | int | None:
        """Post the finished video; return where it was posted (a plain message id from presenters
        without routes); None: not delivered, try again later. ``UndeliverableError``: never."""

    async def job_failed(self, job: Job) -> None:
        """Tell the member the job failed and why (``job.error_message``)."""

    async def find_delivery(self, job: Job) -> int | None:
        """If the video of this job is already posted (by a run that crashed before recording it),
        the id of the message carrying it."""


@runtime_checkable
class QueueView(Protocol):
    """A presenter that shows a job's place in the provider queue (the Discord one does)."""

    async def queue_changed(self, job: Job, place: QueuePlace) -> None:
        """The job's place in line changed (the tracker calls this at most every 30 s per job)."""


class CancelPresenter(Protocol):
    async def job_cancelled(self, job: Job) -> None:
        """Show the cancelled card (the member who pressed Cancel was answered already)."""


class ProviderVideos(Protocol):
    """The provider calls the lifecycle makes itself (``VideoAPIClient`` implements them)."""

    async def retrieve(self, video_id: str) -> Video:
        """The video's status now (the check before a cancel refunds)."""
        ...

    async def delete(self, video_id: str) -> bool: ...


# ==================================================================================================
# Credits and history
# ==================================================================================================


class CreditsRepository(AuditLog, GuildPolicies, Protocol):
    """Policy, per-member quotas, grants and the audit log of each guild.

    Methods with an optional ``conn`` read the last committed state without one (never another
    coroutine's unfinished transaction); methods that write require it, so a change and its audit
    record commit together."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Read-modify-write: the reads inside see what will be changed (SQLite serialises writers;
        PostgreSQL locks what the reads decide on: the guild, for a reservation or a settings change)."""
        ...

    def snapshot(self) -> AbstractAsyncContextManager[Transaction]:
        """Several reads that must agree (a balance): one consistent committed state. Read-only."""
        ...

    async def set_policy(self, guild_id: int, policy: GuildPolicy, conn: Transaction) -> None: ...

    async def role_overrides(self, guild_id: int, conn: Transaction | None = None) -> list[RoleOverride]: ...

    async def set_role_override(self, guild_id: int, override: RoleOverride, conn: Transaction) -> None:
        """Both limits None removes the role's override."""
        ...

    async def member_quota(
        self, guild_id: int, user_id: int, conn: Transaction | None = None
    ) -> tuple[int | None, float | None]:
        """(allowance set by a moderator, time of the last manual reset)."""
        ...

    async def set_member_allowance(
        self, guild_id: int, user_id: int, allowance: int | None, conn: Transaction
    ) -> None: ...

    async def reset_member(self, guild_id: int, user_id: int, conn: Transaction) -> None: ...

    async def add_grant(
        self, guild_id: int, user_id: int, credits: int, granted_by: int, conn: Transaction
    ) -> None: ...

    async def usage(
        self,
        guild_id: int,
        user_id: int,
        *,
        since: float,
        guild_since: float,
        conn: Transaction | None = None,
    ) -> Usage: ...

    async def audit_entries(self, guild_id: int, *, limit: int = 50) -> list[dict[str, Any]]: ...

    async def usage_report(self, guild_id: int, *, since: float, until: float) -> UsageReport: ...


class HistoryRepository(Protocol):
    """The jobs of a guild as lists: a member's own videos, the moderators' job list, remix sources."""

    async def jobs_page(
        self,
        guild_id: int,
        *,
        user_id: int | None = None,
        statuses: Iterable[str] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """One page of a guild's jobs, newest first, and the total count (taken together)."""
        ...

    async def remixable_videos(
        self, guild_id: int, user_id: int, *, typed: str = "", limit: int = 25
    ) -> list[Job]:
        """The member's finished videos the provider can remix, newest first, narrowed by ``typed``."""
        ...


# ==================================================================================================
# Reference images (a member's starting image for /video)
# ==================================================================================================


class AttachmentUnavailable(Exception):
    """The attachment was not downloaded. ``user_message`` is one line for the member; ``reason`` a
    short tag for the log (``origin``, ``redirect``, ``status``, ``too-large``, ``network``). Neither
    carries the URL, whose signed query string is nobody's business."""

    def __init__(self, reason: str, user_message: str) -> None:
        super().__init__(f"{reason}: {user_message}")
        self.reason = reason
        self.user_message = user_message


class ImageUnusable(Exception):
    """The downloaded bytes can't become a reference image (not a usable picture, too costly to
    decode, or the member already has one being fitted: ``busy``)."""

    def __init__(self, user_message: str, *, busy: bool = False) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.busy = busy


class AttachmentFetcher(Protocol):
    """Downloads a member's attachment, from Discord's CDN (or the one configured origin) only."""

    async def fetch(self, url: str, *, max_bytes: int) -> bytes:
        """The body, at most ``max_bytes``; ``AttachmentUnavailable`` otherwise (before connecting
        when the URL points anywhere else)."""
        ...


class ImageFitter(Protocol):
    """Checks and fits an image to a video's frame, bounded in memory and concurrency."""

    async def fit(self, member_id: int, data: bytes, width: int, height: int, *, max_bytes: int) -> bytes:
        """PNG bytes of exactly ``width`` x ``height``; ``ImageUnusable`` otherwise."""
        ...


class ClipUnusable(Exception):
    """An uploaded clip can't be edited (not a video the bot accepts, too long, too large, or the
    member already has one being converted: ``busy``); ``user_message`` says why."""

    def __init__(self, user_message: str, *, busy: bool = False) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.busy = busy


@dataclass(frozen=True)
class ConvertedClip:
    """A member's clip as the provider gets it: H.264 MP4 at one of the model's sizes."""

    path: Path
    size: str
    duration: float


class ClipConverter(Protocol):
    """Checks an uploaded clip by its content and converts it, bounded in memory and concurrency."""

    async def convert(
        self, member_id: int, data: bytes, dest: Path, *, sizes: Iterable[str], max_seconds: float
    ) -> ConvertedClip:
        """``dest`` written as H.264 at the size of ``sizes`` nearest the clip's; ``ClipUnusable``
        otherwise (nothing is left at ``dest`` then)."""
        ...


class ProviderSupport(Protocol):
    """What the provider answered about its optional endpoints (``VideoAPIClient``): None until it
    was asked, False once it answered that it lacks one (404/405)."""

    supports_extend: bool | None
    supports_edit: bool | None


# ==================================================================================================
# The provider, the disk and retention
# ==================================================================================================


class VideoProvider(Protocol):
    """The Videos API as the tracker uses it (``bot.adapters.videoapi.client.VideoAPIClient``)."""

    last_poll_after: float | None
    supports_list: bool | None

    async def create(
        self,
        *,
        prompt: str,
        model: str,
        size: str,
        seconds: int,
        input_reference: bytes | None = None,
        input_reference_type: str = "image/png",
    ) -> Video: ...

    async def remix(self, video_id: str, prompt: str) -> Video: ...

    async def retrieve(self, video_id: str) -> Video: ...

    async def list(self, *, limit: int = 100, after: str | None = None, order: str = "desc") -> VideoList: ...

    async def download(
        self, video_id: str, dest: Path, *, check_room: Callable[[int | None], None] | None = None
    ) -> int:
        """``check_room`` gets the announced size before anything is written; raising refuses it.
        A file over the client's limit raises ``DownloadTooLarge``."""
        ...

    async def delete(self, video_id: str) -> bool: ...

    # Optional endpoints, discovered at run time: None = not tried yet, False = the provider lacks
    # it (a call raised ``UnsupportedEndpoint``), so the features they carry are not offered.
    supports_extend: bool | None
    supports_edit: bool | None
    supports_characters: bool | None

    async def extend(self, video_id: str, prompt: str, seconds: int) -> Video:
        """The completed video followed by ``seconds`` more; the answer's ``seconds`` is the total."""
        ...

    async def edit(
        self,
        prompt: str,
        *,
        video_id: str | None = None,
        clip: Path | bytes | None = None,
        clip_type: str = "video/mp4",
    ) -> Video:
        """A new video editing a completed video (``video_id``) or an uploaded ``clip``; exactly one."""
        ...

    async def create_character(
        self, name: str, video: Path | bytes, video_type: str = "video/mp4"
    ) -> Character: ...

    async def get_character(self, character_id: str) -> Character: ...


class DiskSpace(Protocol):
    """What ``shutil.disk_usage`` answers, as far as the download check reads it."""

    @property
    def free(self) -> int: ...


class RetentionRepository(Protocol):
    """The store's side of retention (``bot.adapters.sql.store.SqlStore``)."""

    async def clear_expired_tokens(self, now: float) -> int: ...

    async def prune_job_details(self, finished_before: float, placeholder: str) -> int: ...

    async def prune_records(self, before: float) -> tuple[int, int]: ...

    async def jobs_keeping_files(self, finished_since: float) -> tuple[set[int], set[str]]: ...

    async def prune_reference_images(self, before: float, keep: set[str]) -> int:
        """Delete stored starting images made before ``before`` whose name is not in ``keep``."""
        ...
