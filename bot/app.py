"""The composition root: settings → store, provider client, catalog, services, tracker, Bot.

Everything is built here and handed over through constructors (discord.py's
``examples/advanced_startup.py``); nothing is filled in after construction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.adapters.http.links import MediaLinks
from bot.adapters.media import MediaError, make_thumbnail, reencode_to_fit
from bot.adapters.sqlite.store import CreditsStore, Store
from bot.adapters.videoapi.client import VideoAPIClient
from bot.discord.bot import VideoBot
from bot.domain.catalog import Catalog
from bot.services.delivery import DeliveryPlanner
from bot.services.jobs import JobService
from bot.services.lifecycle import JobLifecycle
from bot.services.ports import JobPresenter, VideoDeleter
from bot.services.tracker import JobTracker, VideoProvider
from bot.settings import Settings


def job_lifecycle(
    store: Store, provider: VideoDeleter | None = None, *, clock: Callable[[], float] = time.time
) -> JobLifecycle:
    credits = CreditsStore(store)
    return JobLifecycle(store, credits, credits, provider, clock=clock)


def job_service(
    store: Store,
    *,
    lifecycle: JobLifecycle | None = None,
    catalog: Catalog | None = None,
    on_new_job: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> JobService:
    return JobService(
        store,
        credits=CreditsStore(store),
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


def fit_video(src: Path, dst: Path, limit: int) -> str | None:
    """The media adapter's re-encode, as the delivery planner's ``Fit``: the reason when it can't."""
    try:
        reencode_to_fit(src, dst, limit)
    except MediaError as exc:
        return exc.user_message
    return None


def delivery_planner(links: MediaLinks | None = None) -> DeliveryPlanner:
    return DeliveryPlanner(fit=fit_video, thumbnail=make_thumbnail, links=links)


def build_bot(
    settings: Settings,
    *,
    store: Store,
    api: VideoAPIClient,
    catalog: Catalog,
    media_links: MediaLinks | None = None,
) -> VideoBot:
    lifecycle = job_lifecycle(store, api)
    wake = asyncio.Event()  # a new job or a cancel wakes the tracker
    jobs = job_service(store, lifecycle=lifecycle, catalog=catalog, on_new_job=wake.set)

    def tracker_for(presenter: JobPresenter) -> JobTracker:
        return JobTracker(
            store,
            api,
            presenter,
            settings.data_dir,
            lifecycle=lifecycle,
            wake_event=wake,
            poll_interval=settings.poll_interval_seconds,
            push_mode=settings.webhooks_enabled,
            safety_interval=settings.webhook_safety_sweep_seconds,
            max_concurrent_submissions=settings.max_concurrent_submissions,
            max_concurrent_deliveries=settings.max_concurrent_deliveries,
            deadline_seconds=settings.job_deadline_minutes * 60,
        )

    return VideoBot(
        settings=settings,
        catalog=catalog,
        store=store,
        jobs=jobs,
        lifecycle=lifecycle,
        delivery=delivery_planner(media_links),
        tracker_for=tracker_for,
    )
