"""The composition root: settings → store (SQLite or PostgreSQL), provider client, catalog, services, tracker, Bot.

Everything is built here and handed over through constructors (discord.py's
``examples/advanced_startup.py``); nothing is filled in after construction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from bot.adapters.clips import ClipGate
from bot.adapters.http.links import MediaLinks
from bot.adapters.http.server import REPLAY_WINDOW_SECONDS, BotHTTPServer, HealthChecks, serve_http
from bot.adapters.media import MediaError, make_thumbnail, reencode_to_fit, release_cached_pages
from bot.adapters.reference_images import AttachmentImages
from bot.adapters.sql.credits import SqlCreditsRepository
from bot.adapters.sql.history import SqlHistoryRepository
from bot.adapters.sql.store import SqlStore
from bot.adapters.sql.webhook_events import WebhookEventLog
from bot.adapters.sqlite.store import Store
from bot.adapters.videoapi.client import VideoAPIClient
from bot.discord.bot import VideoBot
from bot.domain.catalog import Catalog, default_catalog
from bot.services.clips import EditClips
from bot.services.credits import CreditsService
from bot.services.delivery import DeliveryPlanner
from bot.services.history import HistoryService
from bot.services.jobs import JobService
from bot.services.leases import LeasedJobs, lease_owner_id
from bot.services.lifecycle import JobLifecycle
from bot.services.ports import (
    JobPresenter,
    JobRepository,
    ProviderSupport,
    ProviderVideos,
    VideoProvider,
    WakeupBus,
)
from bot.services.references import ReferenceImages
from bot.services.retention import RetentionPolicy, RetentionService
from bot.services.tracker import JobTracker
from bot.services.wakeups import FleetWakeups
from bot.settings import Settings


def open_store(settings: Settings) -> AbstractAsyncContextManager[SqlStore]:
    """The store ``DATABASE_URL`` names: PostgreSQL for ``postgresql://…``, else the SQLite file."""
    if settings.uses_postgres:
        from bot.adapters.postgres.store import PostgresStore  # asyncpg only when it is used

        return PostgresStore.open(settings.database_url)
    return Store.open(settings.database_path)


def fleet_bus(store: SqlStore) -> WakeupBus | None:
    """How the processes sharing ``store`` wake each other: PostgreSQL's ``LISTEN/NOTIFY``; none on
    SQLite (one process)."""
    if store.backend != "postgresql":
        return None
    from bot.adapters.postgres.notify import PostgresWakeupBus
    from bot.adapters.postgres.store import PostgresStore

    assert isinstance(store, PostgresStore)
    return PostgresWakeupBus(store)


def job_lifecycle(
    store: SqlStore, provider: ProviderVideos | None = None, *, clock: Callable[[], float] = time.time
) -> JobLifecycle:
    credits = SqlCreditsRepository(store)
    return JobLifecycle(store, credits, credits, provider, clock=clock)


def credits_service(
    store: SqlStore, *, catalog: Catalog | None = None, clock: Callable[[], float] = time.time
) -> CreditsService:
    return CreditsService(
        SqlCreditsRepository(store),
        SqlHistoryRepository(store),
        catalog=catalog or default_catalog(),
        clock=clock,
    )


def job_service(
    store: SqlStore,
    *,
    lifecycle: JobLifecycle | None = None,
    credits: CreditsService | None = None,
    catalog: Catalog | None = None,
    on_new_job: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.time,
    provider: ProviderSupport | None = None,
) -> JobService:
    return JobService(
        store,
        credits=credits or credits_service(store, catalog=catalog, clock=clock),
        lifecycle=lifecycle or job_lifecycle(store, clock=clock),
        catalog=catalog,
        on_new_job=on_new_job,
        clock=clock,
        provider=provider,
    )


def job_tracker(
    store: SqlStore,
    api: VideoProvider,
    presenter: JobPresenter,
    data_dir: Path,
    *,
    lifecycle: JobLifecycle | None = None,
    jobs: JobRepository | None = None,
    **options: Any,
) -> JobTracker:
    """``jobs``: what the tracker sweeps, when not every job in ``store`` (``LeasedJobs``: the jobs
    this process holds the lease of)."""
    return JobTracker(
        jobs or store, api, presenter, data_dir, lifecycle=lifecycle or job_lifecycle(store, api), **options
    )


def retention_service(store: SqlStore, settings: Settings) -> RetentionService:
    """Hourly pruning of expired tokens, old files, prompts and audit records (``bot.services.retention``)."""
    policy = RetentionPolicy(
        media_days=settings.media_retention_days,
        job_details_days=settings.job_details_retention_days,
        audit_days=settings.audit_retention_days,
    )
    return RetentionService(store, settings.data_dir, policy)


def fit_video(src: Path, dst: Path, limit: int) -> str | None:
    """The media adapter's re-encode, as the delivery planner's ``Fit``: the reason when it can't."""
    try:
        reencode_to_fit(src, dst, limit)
    except MediaError as exc:
        return exc.user_message
    return None


def delivery_planner(links: MediaLinks | None = None) -> DeliveryPlanner:
    return DeliveryPlanner(fit=fit_video, thumbnail=make_thumbnail, links=links)


def health_checks_for(bot: VideoBot) -> HealthChecks:
    """``/healthz``: the database answers, every shard of this process is connected now (each one
    is reported), the tracker runs."""

    def gateway_connected() -> bool:
        # is_ready stays set across reconnects, so also require every shard's websocket open now.
        return bot.is_ready() and all(shard["connected"] for shard in bot.shard_health())

    return HealthChecks(
        database=bot.store.ping,
        gateway=gateway_connected,
        tracker=lambda: bot.tracker.alive,
        shards=bot.shard_health,
    )


def serve_bot_http(
    settings: Settings, bot: VideoBot, store: SqlStore, *, links: MediaLinks | None
) -> AbstractAsyncContextManager[BotHTTPServer | None]:
    """The bot's HTTP server (``/healthz``, provider webhooks, media links) when ``HTTP_PORT`` is set."""
    return serve_http(
        settings,
        health=health_checks_for(bot),
        on_video_event=bot.wakeups.video_event,  # here, and where the job is worked
        event_log=WebhookEventLog(store, window_seconds=REPLAY_WINDOW_SECONDS),
        extra_routes=links.routes() if links else (),
    )


def build_bot(
    settings: Settings,
    *,
    store: SqlStore,
    api: VideoAPIClient,
    catalog: Catalog,
    media_links: MediaLinks | None = None,
) -> VideoBot:
    lifecycle = job_lifecycle(store, api)
    credits = credits_service(store, catalog=catalog)
    wake = asyncio.Event()  # a new job or a cancel wakes the tracker
    # A submit or cancel here (and a webhook, below) wakes this tracker and the other processes'.
    wakeups = FleetWakeups(fleet_bus(store))
    jobs = job_service(
        store,
        lifecycle=lifecycle,
        credits=credits,
        catalog=catalog,
        on_new_job=wakeups.job_changed,
        provider=api,
    )
    retention = retention_service(store, settings)
    # Several processes may share the database: each works the jobs it holds the lease of.
    leases = LeasedJobs(
        store,
        lease_owner_id(settings.data_dir),
        lease_seconds=settings.job_lease_seconds,
        shards=settings.shards,
        shard_count=settings.shard_count,
        on_taken=wake.set,
    )

    def tracker_for(presenter: JobPresenter) -> JobTracker:
        tracker = job_tracker(
            store,
            api,
            presenter,
            settings.data_dir,
            lifecycle=lifecycle,
            jobs=leases,
            wake_event=wake,
            poll_interval=settings.poll_interval_seconds,
            expected_seconds=catalog.expected_seconds,
            submission_rate=api.budget.recent_submission_rate if api.budget else None,
            push_mode=settings.webhooks_enabled,
            safety_interval=settings.webhook_safety_sweep_seconds,
            max_concurrent_submissions=settings.max_concurrent_submissions,
            max_concurrent_deliveries=settings.max_concurrent_deliveries,
            deadline_seconds=settings.job_deadline_minutes * 60,
            set_aside=release_cached_pages,
            # Run while the tracker does: retention, renewing this process's job leases, and
            # hearing the other processes' wake-ups.
            housekeeping=[retention.run_forever, leases.renew_forever, wakeups.listen_forever],
        )
        wakeups.deliver_to(tracker.wake, tracker.notify_video_event)
        return tracker

    # One gate and one download session for the process; the fake Discord (and self-hosted
    # stand-ins) serve attachments from the API base's origin, so that origin is allowed too.
    images = AttachmentImages(extra_origin=settings.discord_api_base_url)
    references = ReferenceImages(images, images, settings.data_dir / "references", shared=store)
    clip_gate = ClipGate()
    clips = EditClips(images, clip_gate, settings.data_dir / "references")

    async def close_clip_gate() -> None:
        clip_gate.close()

    return VideoBot(
        settings=settings,
        catalog=catalog,
        store=store,
        jobs=jobs,
        credits=credits,
        history=HistoryService(SqlHistoryRepository(store)),
        lifecycle=lifecycle,
        delivery=delivery_planner(media_links),
        tracker_for=tracker_for,
        references=references,
        clips=clips,
        wakeups=wakeups,
        close_with=[leases.release, images.close, close_clip_gate],
    )
