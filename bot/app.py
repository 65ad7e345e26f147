"""The composition root: settings → store, provider client, catalog, services, tracker, Bot.

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

from bot.adapters.http.links import MediaLinks
from bot.adapters.http.server import REPLAY_WINDOW_SECONDS, BotHTTPServer, HealthChecks, serve_http
from bot.adapters.media import MediaError, make_thumbnail, reencode_to_fit
from bot.adapters.reference_images import AttachmentImages
from bot.adapters.sqlite.credits import SqliteCreditsRepository
from bot.adapters.sqlite.history import SqliteHistoryRepository
from bot.adapters.sqlite.store import Store
from bot.adapters.sqlite.webhook_events import WebhookEventLog
from bot.adapters.videoapi.client import VideoAPIClient
from bot.discord.bot import VideoBot
from bot.domain.catalog import Catalog, default_catalog
from bot.services.credits import CreditsService
from bot.services.delivery import DeliveryPlanner
from bot.services.history import HistoryService
from bot.services.jobs import JobService
from bot.services.lifecycle import JobLifecycle
from bot.services.ports import JobPresenter, ProviderVideos, VideoProvider
from bot.services.references import ReferenceImages
from bot.services.retention import RetentionPolicy, RetentionService
from bot.services.tracker import JobTracker
from bot.settings import Settings


def job_lifecycle(
    store: Store, provider: ProviderVideos | None = None, *, clock: Callable[[], float] = time.time
) -> JobLifecycle:
    credits = SqliteCreditsRepository(store)
    return JobLifecycle(store, credits, credits, provider, clock=clock)


def credits_service(
    store: Store, *, catalog: Catalog | None = None, clock: Callable[[], float] = time.time
) -> CreditsService:
    return CreditsService(
        SqliteCreditsRepository(store),
        SqliteHistoryRepository(store),
        catalog=catalog or default_catalog(),
        clock=clock,
    )


def job_service(
    store: Store,
    *,
    lifecycle: JobLifecycle | None = None,
    credits: CreditsService | None = None,
    catalog: Catalog | None = None,
    on_new_job: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> JobService:
    return JobService(
        store,
        credits=credits or credits_service(store, catalog=catalog, clock=clock),
        lifecycle=lifecycle or job_lifecycle(store, clock=clock),
        catalog=catalog,
        on_new_job=on_new_job,
        clock=clock,
    )


def job_tracker(
    store: Store,
    api: VideoProvider,
    presenter: JobPresenter,
    data_dir: Path,
    *,
    lifecycle: JobLifecycle | None = None,
    **options: Any,
) -> JobTracker:
    return JobTracker(
        store, api, presenter, data_dir, lifecycle=lifecycle or job_lifecycle(store, api), **options
    )


def retention_service(store: Store, settings: Settings) -> RetentionService:
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
    """``/healthz``: the database answers, the gateway is connected now, the tracker runs."""

    def gateway_connected() -> bool:
        # is_ready stays set across reconnects, so also require an open websocket right now.
        ws = bot.ws
        return bot.is_ready() and not bot.is_closed() and ws is not None and ws.open

    return HealthChecks(database=bot.store.ping, gateway=gateway_connected, tracker=lambda: bot.tracker.alive)


def serve_bot_http(
    settings: Settings, bot: VideoBot, store: Store, *, links: MediaLinks | None
) -> AbstractAsyncContextManager[BotHTTPServer | None]:
    """The bot's HTTP server (``/healthz``, provider webhooks, media links) when ``HTTP_PORT`` is set."""
    return serve_http(
        settings,
        health=health_checks_for(bot),
        on_video_event=bot.tracker.notify_video_event,
        event_log=WebhookEventLog(store, window_seconds=REPLAY_WINDOW_SECONDS),
        extra_routes=links.routes() if links else (),
    )


def build_bot(
    settings: Settings,
    *,
    store: Store,
    api: VideoAPIClient,
    catalog: Catalog,
    media_links: MediaLinks | None = None,
) -> VideoBot:
    lifecycle = job_lifecycle(store, api)
    credits = credits_service(store, catalog=catalog)
    wake = asyncio.Event()  # a new job or a cancel wakes the tracker
    jobs = job_service(store, lifecycle=lifecycle, credits=credits, catalog=catalog, on_new_job=wake.set)
    retention = retention_service(store, settings)

    def tracker_for(presenter: JobPresenter) -> JobTracker:
        return job_tracker(
            store,
            api,
            presenter,
            settings.data_dir,
            lifecycle=lifecycle,
            wake_event=wake,
            poll_interval=settings.poll_interval_seconds,
            expected_seconds=catalog.expected_seconds,
            submission_rate=api.budget.recent_submission_rate if api.budget else None,
            push_mode=settings.webhooks_enabled,
            safety_interval=settings.webhook_safety_sweep_seconds,
            max_concurrent_submissions=settings.max_concurrent_submissions,
            max_concurrent_deliveries=settings.max_concurrent_deliveries,
            deadline_seconds=settings.job_deadline_minutes * 60,
            housekeeping=[retention.run_forever],  # runs while the tracker does
        )

    # One gate and one download session for the process; the fake Discord (and self-hosted
    # stand-ins) serve attachments from the API base's origin, so that origin is allowed too.
    images = AttachmentImages(extra_origin=settings.discord_api_base_url)
    references = ReferenceImages(images, images, settings.data_dir / "references")

    return VideoBot(
        settings=settings,
        catalog=catalog,
        store=store,
        jobs=jobs,
        credits=credits,
        history=HistoryService(SqliteHistoryRepository(store)),
        lifecycle=lifecycle,
        delivery=delivery_planner(media_links),
        tracker_for=tracker_for,
        references=references,
        close_with=[images.close],
    )
